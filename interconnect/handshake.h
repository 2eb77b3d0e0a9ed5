// The connection handshake between two nodes (pure parts: building and checking Hello
// records; the socket exchange is in tcp_transport.cc).
//
// Every pair of nodes has exactly one connection: the node with the higher id connects to
// the lower one, which listens. So node 0 only listens, the highest node only connects,
// and two nodes never race to connect to each other.
//
//   higher id (connector)                         lower id (acceptor)
//        |  TCP connect ------------------------------>  | accept
//        |  Hello{node_id, version, digest, proof} --->  | check version, digest, proof,
//        |                                               |   id is a configured higher node
//        |                                               |   not yet connected
//        |  <--- HelloAck{node_id, status, digest, proof} |
//        | check status == Ok, node_id is the            |
//        |   peer dialled, digest, proof                 |
//        |  ===== messages both ways ==================  |
//
// A refused Hello gets a HelloAck with a non-zero status, then the acceptor closes that
// connection. The connector logs the reason and fails start-up (its config or key is not
// the cluster's). The acceptor logs it and keeps waiting for the real peer (the refused
// Hello may be a replay, an impostor or a node started with another config); if the peer
// is still missing at the connect deadline, the error names it and every refusal.
// A connection that sends anything but a well-formed Hello is closed with a log line and
// accepting goes on (it may be a port scanner, not a node).
#pragma once

#include <cstdint>

#include "base/result.h"
#include "interconnect/transport_options.h"

namespace kv {

enum class HelloStatus : uint16_t {
    Ok = 0,
    VersionMismatch = 1,
    DigestMismatch = 2,
    UnexpectedNode = 3,  // not a configured node, or not one that connects to this node
    DuplicateNode = 4,   // already connected
    AuthFailed = 5,
};

const char* hello_status_text(HelloStatus s);  // "config digest mismatch", ...

// This node's Hello (status Ok) or HelloAck (any status) for `peer`.
HelloPayload make_hello(const TransportOptions& opts, NodeId peer, HelloStatus status);

// Checks a peer's version, config digest and auth proof (not its identity, which needs the
// transport's view of who is connected). `why` receives the auth hook's error text.
HelloStatus check_hello(const TransportOptions& opts, const HelloPayload& theirs, std::string* why);

}  // namespace kv
