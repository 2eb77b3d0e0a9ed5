// Request/response round trips over any Transport, for benchmarks and liveness checks.
//
// Every node that should answer installs a PingResponder as its transport's handler (or
// in front of its real handler, which then receives everything else). The responder
// answers each Ping with a Pong carrying the same request_id and a payload of the same
// size and content, from the receive thread (so the answer measures the transport, not a
// thread hand-off). On the measuring node the same responder also catches the Pongs that
// measure_round_trip() waits for.
//
//   measuring node                               peer
//     measure_round_trip                           PingResponder::on_message
//       send Ping{request_id=k, n bytes} ------->    send Pong{request_id=k, same bytes}
//       wait until Pong k  <----------------------
//     (repeat `iterations` times; one outstanding Ping at a time)
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "interconnect/transport.h"

namespace kv {

class PingResponder : public MessageHandler {
  public:
    explicit PingResponder(MessageHandler* next = nullptr);

    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    std::span<const MessageSpec> messages() const override {
        return messages_;
    }  // Ping, Pong, next's
    void on_peer_lost(NodeId peer, const Error& why) override;

    // Waits for the Pong `request_id` from `peer` of `bytes` bytes (any thread but the
    // receive thread).
    Status wait_pong(NodeId peer, uint64_t request_id, size_t bytes,
                     std::chrono::steady_clock::time_point deadline);

  private:
    MessageHandler* const next_;
    std::vector<MessageSpec> messages_;
    Transport* transport_ = nullptr;  // set by on_start on the receive thread, before messages
    std::mutex mu_;
    std::condition_variable cv_;
    NodeId pong_from_ = 0;      // under mu_: the last Pong seen
    uint64_t pong_id_ = 0;      // under mu_
    size_t pong_bytes_ = 0;     // under mu_
    std::vector<NodeId> lost_;  // under mu_
};

// Mean round trip of `iterations` Ping/Pong exchanges with `peer`, each with a payload of
// `payload_bytes` (at most kMaxPayload). `responder` must be the handler of `transport`
// and the peer must run one too. `samples`, if given, receives every round trip (for
// percentiles). Fails if the peer is lost or a Pong takes more than 5 s.
Result<std::chrono::nanoseconds> measure_round_trip(
    Transport& transport, PingResponder& responder, NodeId peer, size_t payload_bytes,
    int iterations, std::vector<std::chrono::nanoseconds>* samples = nullptr);

}  // namespace kv
