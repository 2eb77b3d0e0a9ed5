// LoopbackTransport: ordered delivery per endpoint, codec checks on send, injected and
// shutdown-caused peer loss, and ping-pong over it.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "interconnect/loopback_transport.h"
#include "interconnect/payloads.h"
#include "interconnect/ping_pong.h"
#include "tests/unit/test_support.h"

namespace kv {
namespace {

using namespace std::chrono_literals;

class Recorder : public MessageHandler {
  public:
    std::span<const MessageSpec> messages() const override { return testing::vmm_node_messages(); }
    void on_start(Transport& t) override {
        std::lock_guard l(mu_);
        started_ = &t;
        start_before_messages_ = msgs_.empty() && lost_.empty();
    }
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override {
        std::lock_guard l(mu_);
        if (closed_) ++late_;
        msgs_.push_back({from, h, {p.begin(), p.end()}});
        cv_.notify_all();
    }
    void on_peer_lost(NodeId peer, const Error& why) override {
        std::lock_guard l(mu_);
        if (closed_) ++late_;
        lost_.push_back({peer, why.message});
        lost_after_messages_[peer] = msgs_.size();
        cv_.notify_all();
    }
    template <class Pred>
    bool wait(Pred pred) {
        std::unique_lock l(mu_);
        return cv_.wait_for(l, 10s, [&] { return pred(*this); });
    }
    struct Msg {
        NodeId from;
        MsgHeader h;
        std::vector<uint8_t> payload;
    };
    std::mutex mu_;
    std::condition_variable cv_;
    Transport* started_ = nullptr;
    bool start_before_messages_ = false;
    std::vector<Msg> msgs_;
    std::vector<std::pair<NodeId, std::string>> lost_;
    std::map<NodeId, size_t> lost_after_messages_;
    bool closed_ = false;
    int late_ = 0;
};

MsgHeader header(MsgType t, uint64_t arg = 0) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(t);
    h.arg = arg;
    return h;
}

TEST(IcLoopback, DeliversInOrderFromConcurrentSendersWithPayloads) {
    auto hub = LoopbackHub::create();
    Recorder r0, r1, r2;
    auto t0 = hub->attach(0, &r0);
    auto t1 = hub->attach(1, &r1);
    auto t2 = hub->attach(2, &r2);
    ASSERT_TRUE(t0.ok() && t1.ok() && t2.ok());
    constexpr int kEach = 1000;
    std::vector<std::thread> senders;
    for (auto* t : {&*t1, &*t2}) {
        senders.emplace_back([t] {
            std::vector<uint8_t> page(kPagePayload);
            for (int i = 0; i < kEach; ++i) {
                page[0] = static_cast<uint8_t>(i);
                page[4095] = static_cast<uint8_t>((*t)->self());
                ASSERT_TRUE((*t)->send(0, header(MsgType::Grant, i), page).ok());
            }
        });
    }
    for (auto& s : senders) s.join();
    ASSERT_TRUE(r0.wait([](Recorder& r) { return r.msgs_.size() == 2 * kEach; }));
    std::lock_guard l(r0.mu_);
    EXPECT_TRUE(r0.start_before_messages_);
    EXPECT_EQ(r0.started_, t0->get());
    std::map<NodeId, uint64_t> next;
    for (const auto& m : r0.msgs_) {
        EXPECT_EQ(m.h.src, m.from);
        EXPECT_EQ(m.h.length, kPagePayload);
        EXPECT_EQ(m.h.arg, next[m.from]++);
        EXPECT_EQ(m.payload[0], static_cast<uint8_t>(m.h.arg));
        EXPECT_EQ(m.payload[4095], m.from);
    }
}

TEST(IcLoopback, SendAppliesTheCodecRules) {
    auto hub = LoopbackHub::create();
    Recorder r0, r1;
    auto t0 = hub->attach(0, &r0);
    auto t1 = hub->attach(1, &r1);
    ASSERT_TRUE(t0.ok() && t1.ok());
    std::vector<uint8_t> twelve(12);
    auto st = (*t0)->send(1, header(MsgType::Grant), twelve);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 1: Grant payload of 12 bytes (expected 0 or 4096)");
    st = (*t0)->send(9, header(MsgType::Inv));
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 9: not a peer");
    EXPECT_FALSE(hub->attach(1, &r1).ok());
}

TEST(IcLoopback, InjectedLossIsReportedOnceAfterEarlierMessagesAndBlocksSends) {
    auto hub = LoopbackHub::create();
    Recorder r0, r1, r2;
    auto t0 = hub->attach(0, &r0);
    auto t1 = hub->attach(1, &r1);
    auto t2 = hub->attach(2, &r2);
    ASSERT_TRUE(t0.ok() && t1.ok() && t2.ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*t1)->send(0, header(MsgType::InvAck, i)).ok());
    ASSERT_TRUE(hub->inject_peer_loss(0, 1, "node 1: bad magic 0x0").ok());
    ASSERT_TRUE(hub->inject_peer_loss(1, 0, "again").ok());  // already cut: not told twice
    ASSERT_TRUE(r0.wait([](Recorder& r) { return !r.lost_.empty(); }));
    ASSERT_TRUE(r1.wait([](Recorder& r) { return !r.lost_.empty(); }));
    auto st = (*t0)->send(1, header(MsgType::Inv));
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 1: connection lost (node 1: bad magic 0x0)");
    EXPECT_FALSE((*t1)->send(0, header(MsgType::Inv)).ok());
    // Node 2 is unaffected.
    ASSERT_TRUE((*t2)->send(0, header(MsgType::ReadReq, 99)).ok());
    ASSERT_TRUE(r0.wait([](Recorder& r) { return r.msgs_.size() == 11; }));
    (*t0)->shutdown();
    (*t1)->shutdown();
    std::lock_guard l(r0.mu_);
    ASSERT_EQ(r0.lost_.size(), 1u);
    EXPECT_EQ(r0.lost_[0], (std::pair<NodeId, std::string>{1, "node 1: bad magic 0x0"}));
    EXPECT_EQ(r0.lost_after_messages_[1], 10u);  // after the 10 sent before the loss
    std::lock_guard l1(r1.mu_);
    ASSERT_EQ(r1.lost_.size(), 1u);
    EXPECT_EQ(r1.lost_[0].first, 0u);
}

TEST(IcLoopback, ShutdownIsSeenAsPeerLossAndStopsHandlerCalls) {
    auto hub = LoopbackHub::create();
    Recorder r0, r1;
    auto t0 = hub->attach(0, &r0);
    auto t1 = hub->attach(1, &r1);
    ASSERT_TRUE(t0.ok() && t1.ok());
    std::atomic<bool> stop{false};
    std::thread flood([&] {
        while (!stop && (*t0)->send(1, header(MsgType::ReadReq)).ok()) {
        }
    });
    ASSERT_TRUE(r1.wait([](Recorder& r) { return r.msgs_.size() >= 100; }));
    (*t1)->shutdown();
    {
        std::lock_guard l(r1.mu_);
        r1.closed_ = true;
    }
    ASSERT_TRUE(r0.wait([](Recorder& r) { return !r.lost_.empty(); }));
    stop = true;
    flood.join();
    EXPECT_FALSE((*t0)->send(1, header(MsgType::ReadReq)).ok());
    (*t0)->shutdown();
    std::lock_guard l(r0.mu_);
    EXPECT_EQ(r0.lost_.size(), 1u);
    EXPECT_EQ(r0.lost_[0],
              (std::pair<NodeId, std::string>{1, "node 1: connection closed by peer"}));
    std::lock_guard l1(r1.mu_);
    EXPECT_EQ(r1.late_, 0);
}

TEST(IcLoopback, PingPongRoundTripAndInnerHandler) {
    auto hub = LoopbackHub::create();
    Recorder inner, inner0;
    PingResponder p0(&inner0), p1(&inner);  // both nodes speak the same layers
    auto t0 = hub->attach(0, &p0);
    auto t1 = hub->attach(1, &p1);
    ASSERT_TRUE(t0.ok() && t1.ok());
    auto rtt = measure_round_trip(**t0, p0, 1, 4096, 100);
    ASSERT_TRUE(rtt.ok()) << rtt.error().message;
    EXPECT_GT(rtt->count(), 0);
    EXPECT_LT(*rtt, 1s);
    // Non-ping traffic reaches the handler behind the responder.
    ASSERT_TRUE((*t0)->send(1, header(MsgType::Inv, 5)).ok());
    ASSERT_TRUE(inner.wait([](Recorder& r) { return r.msgs_.size() == 1; }));
    // A lost peer ends a measurement with an error instead of a hang.
    (*t1)->shutdown();
    auto after = measure_round_trip(**t0, p0, 1, 0, 1);
    EXPECT_FALSE(after.ok());
}

}  // namespace
}  // namespace kv
