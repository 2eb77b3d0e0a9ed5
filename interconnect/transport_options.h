// What a Transport implementation needs to join the cluster, and the auth hook.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "interconnect/payloads.h"
#include "interconnect/transport.h"

namespace kv {

using ConfigDigest = std::array<uint8_t, kDigestBytes>;

// TransportOptions::heartbeat unless told otherwise: a silent peer is lost within 5 s.
inline constexpr std::chrono::milliseconds kDefaultHeartbeat{4000};
// A connection idle this long (or a quarter of the deadline, if shorter) gets a heartbeat.
inline constexpr std::chrono::milliseconds kHeartbeatIdle{250};

// Proves to a peer that this node holds the cluster key, and checks a peer's proof.
// Issue 4 supplies the real one; with none installed the proof is all zeros and accepted.
// Called on start-up threads only (never concurrently for one transport).
class AuthHook {
  public:
    virtual ~AuthHook() = default;
    // Fills mine.nonce / mine.auth_proof for a Hello or HelloAck sent to `peer`.
    virtual void fill_proof(HelloPayload& mine, NodeId peer) = 0;
    // Checks the proof in a peer's Hello or HelloAck; the error text is logged.
    virtual Status verify_proof(const HelloPayload& theirs) = 0;
};

struct TransportOptions {
    NodeId self = 0;
    // Every node of the cluster, self included; ids need not be dense.
    std::vector<PeerAddress> nodes;
    // Digest of the cluster configuration; every node must present the same one.
    ConfigDigest config_digest{};
    // Start-up fails, naming the unreached peers, if the mesh is not complete by then.
    std::chrono::milliseconds connect_timeout{10000};
    // A peer from which nothing (message or heartbeat) has arrived for this long is lost:
    // its connection is dropped and reported like a close. Zero: never (TCP's own
    // retransmission limits still apply). Every node of a cluster should use the same.
    std::chrono::milliseconds heartbeat = kDefaultHeartbeat;
    // SO_SNDBUF and SO_RCVBUF of every connection in bytes (the kernel doubles them); zero
    // leaves the kernel's autotuning. Tests make them small to fill them quickly.
    int socket_buffer = 0;
    AuthHook* auth = nullptr;  // not owned; must outlive start-up
    // An already listening socket to use instead of binding self's address (tests bind
    // port 0 first and share the ports). The transport duplicates it.
    std::shared_ptr<const Fd> listener;
};

}  // namespace kv
