#include "interconnect/ping_pong.h"

#include <algorithm>
#include <atomic>

#include "base/log.h"

namespace kv {

void PingResponder::on_start(Transport& transport) {
    transport_ = &transport;
    if (next_) next_->on_start(transport);
}

void PingResponder::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) {
    if (h.type == static_cast<uint16_t>(MsgType::Ping)) {
        MsgHeader pong;
        pong.type = static_cast<uint16_t>(MsgType::Pong);
        pong.request_id = h.request_id;
        pong.arg = h.arg;
        Status st = transport_->send(from, pong, payload);
        if (!st.ok()) KV_WARN("ping responder: %s", st.error().message.c_str());
        return;
    }
    if (h.type == static_cast<uint16_t>(MsgType::Pong)) {
        {
            std::lock_guard lock(mu_);
            pong_from_ = from;
            pong_id_ = h.request_id;
            pong_bytes_ = payload.size();
        }
        cv_.notify_all();
        return;
    }
    if (next_) next_->on_message(from, h, payload);
}

void PingResponder::on_peer_lost(NodeId peer, const Error& why) {
    {
        std::lock_guard lock(mu_);
        lost_.push_back(peer);
    }
    cv_.notify_all();
    if (next_) next_->on_peer_lost(peer, why);
}

Status PingResponder::wait_pong(NodeId peer, uint64_t request_id, size_t bytes,
                                std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    const bool done = cv_.wait_until(lock, deadline, [&] {
        return (pong_from_ == peer && pong_id_ == request_id) ||
               std::find(lost_.begin(), lost_.end(), peer) != lost_.end();
    });
    if (!done) return Error{"no Pong from node " + std::to_string(peer) + " within the timeout"};
    if (pong_from_ != peer || pong_id_ != request_id) {
        return Error{"node " + std::to_string(peer) + " lost while waiting for a Pong"};
    }
    if (pong_bytes_ != bytes) {
        return Error{"Pong of " + std::to_string(pong_bytes_) + " bytes (sent " +
                     std::to_string(bytes) + ")"};
    }
    return {};
}

Result<std::chrono::nanoseconds> measure_round_trip(
    Transport& transport, PingResponder& responder, NodeId peer, size_t payload_bytes,
    int iterations, std::vector<std::chrono::nanoseconds>* samples) {
    if (iterations <= 0) return Error{"measure_round_trip: iterations must be positive"};
    if (payload_bytes > kMaxPayload) return Error{"measure_round_trip: payload too large"};
    // Request ids unique per process so that a late Pong of an earlier run never matches.
    static std::atomic<uint64_t> next_id{1};
    std::vector<uint8_t> payload(payload_bytes, 0xA5);  // once, before the timed loop
    using Clock = std::chrono::steady_clock;
    Clock::duration total{};
    if (samples) samples->reserve(samples->size() + static_cast<size_t>(iterations));
    for (int i = 0; i < iterations; ++i) {
        MsgHeader ping;
        ping.type = static_cast<uint16_t>(MsgType::Ping);
        ping.request_id = next_id.fetch_add(1, std::memory_order_relaxed);
        const auto start = Clock::now();
        KV_TRY(transport.send(peer, ping, payload));
        KV_TRY(responder.wait_pong(peer, ping.request_id, payload_bytes,
                                   start + std::chrono::seconds(5)));
        const auto rtt = Clock::now() - start;
        total += rtt;
        if (samples) samples->push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(rtt));
    }
    return std::chrono::duration_cast<std::chrono::nanoseconds>(total / iterations);
}

namespace {
constexpr MessageSpec kPingMessages[] = {
    {MsgType::Ping, {PayloadRule::Kind::UpTo, kMaxPayload}},
    {MsgType::Pong, {PayloadRule::Kind::UpTo, kMaxPayload}},
};
}  // namespace

PingResponder::PingResponder(MessageHandler* next)
    : next_(next), messages_(std::begin(kPingMessages), std::end(kPingMessages)) {
    if (next_) {
        auto more = next_->messages();
        messages_.insert(messages_.end(), more.begin(), more.end());
    }
}

}  // namespace kv
