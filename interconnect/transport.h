// Reliable, ordered messages between node pairs. Nothing above this interface knows which
// implementation (tcp, later rdma) runs.
//
// Threading: send() may be called from any thread concurrently; messages to one peer are
// delivered in the order their send() calls returned. Received messages are handed to the
// MessageHandler on the transport's receive thread(s), in order per peer; the handler must
// not block for long (it may call send()).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "interconnect/codec.h"
#include "interconnect/message.h"

namespace kv {

class Transport;

class MessageHandler {
  public:
    virtual ~MessageHandler() = default;
    virtual void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) = 0;
    // The message types this handler takes, with their payload length rules (codec.h). The
    // transport checks every received header against them before it reads the payload (a
    // message that breaks them drops the connection, reported through on_peer_lost), and
    // every sent message too. Constant for the handler's life.
    virtual std::span<const MessageSpec> messages() const = 0;
    // The connection to `peer` is gone (closed, died, or sent a malformed message: `why`
    // names it). Called once per peer.
    virtual void on_peer_lost(NodeId peer, const Error& why) = 0;
    // Called once, on the receive thread, before any other handler call: the transport is
    // built and may be used to reply. (A handler is given to the transport's factory before
    // the transport exists, and a peer may send as soon as the mesh is up.)
    virtual void on_start(Transport& transport) { (void)transport; }
};

struct PeerAddress {
    NodeId id = 0;
    std::string host;  // numeric IPv4/IPv6 address or name
    uint16_t port = 0;
};

class Transport {
  public:
    virtual ~Transport() = default;
    virtual NodeId self() const = 0;
    // Sends header + payload; the header's length and src are filled in by the transport.
    virtual Status send(NodeId to, MsgHeader h, std::span<const uint8_t> payload = {}) = 0;
    // Stops receive threads and closes every connection; no handler call after it returns.
    virtual void shutdown() = 0;
};

}  // namespace kv
