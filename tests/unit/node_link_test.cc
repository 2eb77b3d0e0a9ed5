// NodeLink (vmm/node/node_link.h): what nodes of one guest say to each other, over the
// in-process loopback transport. Node 0 is the I/O node; node 1 runs vCPUs only.
#include "vmm/node/node_link.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "interconnect/loopback_transport.h"

namespace kv {
namespace {

using namespace std::chrono_literals;

// What a node's machine saw, with a way to wait for it.
struct Recorder {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<uint32_t, InterruptMessage>> ipis;
    std::vector<uint64_t> ipi_epochs;
    std::vector<std::pair<uint32_t, Lapic::Addressing>> addressing;
    std::vector<uint8_t> eois;
    std::optional<std::pair<StopReason, std::string>> stop;
    uint8_t port_0x71 = 0x5A;  // a one-byte device at port 0x71

    NodeLink::Host host() {
        NodeLink::Host h;
        h.deliver_ipi = [this](uint32_t v, const InterruptMessage& m, uint64_t epoch) {
            std::lock_guard lk(mu);
            ipis.emplace_back(v, m);
            ipi_epochs.push_back(epoch);
            cv.notify_all();
        };
        h.apply_addressing = [this](uint32_t v, const Lapic::Addressing& a) {
            std::lock_guard lk(mu);
            addressing.emplace_back(v, a);
            cv.notify_all();
        };
        h.serve_io = [this](IoKind kind, uint64_t addr, std::span<uint8_t> data, bool write) {
            if (kind != IoKind::Pio || addr != 0x71 || data.size() != 1) return false;
            if (write)
                port_0x71 = data[0];
            else
                data[0] = port_0x71;
            return true;
        };
        h.serve_eoi = [this](uint8_t v) {
            std::lock_guard lk(mu);
            eois.push_back(v);
            cv.notify_all();
        };
        h.stop = [this](StopReason r, std::string why) {
            std::lock_guard lk(mu);
            if (!stop) stop = std::pair(r, std::move(why));
            cv.notify_all();
        };
        return h;
    }
    template <class Pred>
    bool wait(Pred p) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, 10s, p);
    }
};

struct Pair {
    Recorder rec0, rec1;
    NodeLink link0{0, 2, rec0.host()}, link1{1, 2, rec1.host()};
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    std::unique_ptr<LoopbackTransport> t0, t1;
    Pair() {
        t0 = std::move(hub->attach(0, &link0)).value();
        t1 = std::move(hub->attach(1, &link1)).value();
        // As the machine does: the transport's on_start() may come later.
        link0.attach(*t0);
        link1.attach(*t1);
    }
    ~Pair() {
        link0.close();
        link1.close();
        t0->shutdown();
        t1->shutdown();
    }
};

TEST(NodeLink, IpiReachesTheTargetNodeWithItsModeAndVector) {
    Pair p;
    InterruptMessage m;
    m.vector = 0xFB;
    m.mode = DeliveryMode::Fixed;
    p.link0.send_ipi(1, 3, m, 0);
    InterruptMessage init;
    init.mode = DeliveryMode::Init;
    init.level_triggered = true;
    init.assert = true;
    p.link0.send_ipi(1, 2, init, 7);
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.ipis.size() == 2; }));
    EXPECT_EQ(p.rec1.ipis[0].first, 3u);
    EXPECT_EQ(p.rec1.ipis[0].second.vector, 0xFB);
    EXPECT_EQ(p.rec1.ipis[0].second.mode, DeliveryMode::Fixed);
    EXPECT_EQ(p.rec1.ipis[1].first, 2u);
    EXPECT_EQ(p.rec1.ipis[1].second.mode, DeliveryMode::Init);
    EXPECT_TRUE(p.rec1.ipis[1].second.level_triggered);
    EXPECT_TRUE(p.rec1.ipis[1].second.assert);
    // The sender's placement epoch for the vCPU travels with it.
    EXPECT_EQ(p.rec1.ipi_epochs[0], 0u);
    EXPECT_EQ(p.rec1.ipi_epochs[1], 7u);
    EXPECT_EQ(p.link0.counters().ipis_sent.load(), 2u);
    EXPECT_EQ(p.link1.counters().ipis_received.load(), 2u);
}

TEST(NodeLink, AddressingIsAnnouncedToEveryOtherNode) {
    Pair p;
    p.link1.announce_addressing(1, Lapic::Addressing{0x21, 0x02, false, true});
    ASSERT_TRUE(p.rec0.wait([&] { return p.rec0.addressing.size() == 1; }));
    auto [vcpu, a] = p.rec0.addressing[0];
    EXPECT_EQ(vcpu, 1u);
    EXPECT_EQ(a.apic_id, 0x21);
    EXPECT_EQ(a.ldr, 0x02);
    EXPECT_FALSE(a.flat);
    EXPECT_TRUE(a.enabled);
}

TEST(NodeLink, ForwardedIoReadsAndWritesTheIoNodesDevice) {
    Pair p;
    uint8_t b = 0;
    ASSERT_TRUE(p.link1.forward_io(IoKind::Pio, 0x71, std::span(&b, 1), false));
    EXPECT_EQ(b, 0x5A);
    b = 0x33;
    ASSERT_TRUE(p.link1.forward_io(IoKind::Pio, 0x71, std::span(&b, 1), true));
    EXPECT_EQ(p.rec0.port_0x71, 0x33);
    // Nothing at port 0x80: the access completes, reported as unanswered.
    uint8_t none = 0;
    EXPECT_FALSE(p.link1.forward_io(IoKind::Pio, 0x80, std::span(&none, 1), false));
    EXPECT_EQ(p.link1.counters().io_forwarded.load(), 3u);
    EXPECT_EQ(p.link0.counters().io_served.load(), 3u);
}

TEST(NodeLink, EoiReachesTheIoNode) {
    Pair p;
    p.link1.forward_eoi(0x31);
    ASSERT_TRUE(p.rec0.wait([&] { return p.rec0.eois.size() == 1; }));
    EXPECT_EQ(p.rec0.eois[0], 0x31);
}

TEST(NodeLink, StopIsBroadcastOnceWithItsReason) {
    Pair p;
    p.link0.broadcast_stop(StopReason::PowerOff, "guest powered off");
    p.link0.broadcast_stop(StopReason::Crashed, "ignored: already stopped");
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.stop.has_value(); }));
    EXPECT_EQ(p.rec1.stop->first, StopReason::PowerOff);
    EXPECT_NE(p.rec1.stop->second.find("guest powered off (on node 0)"), std::string::npos);
}

// Three nodes of one guest: node 0 is the I/O node, 1 and 2 run vCPUs only.
struct Trio {
    Recorder rec[3];
    NodeLink link[3] = {{0, 3, rec[0].host()}, {1, 3, rec[1].host()}, {2, 3, rec[2].host()}};
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    std::unique_ptr<LoopbackTransport> t[3];
    Trio() {
        for (NodeId k = 0; k < 3; ++k) t[k] = std::move(hub->attach(k, &link[k])).value();
        for (NodeId k = 0; k < 3; ++k) link[k].attach(*t[k]);
    }
    ~Trio() {
        for (auto& l : link) l.close();
        for (auto& tr : t) tr->shutdown();
    }
};

MsgHeader shutdown_header(NodeId origin) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Shutdown);
    h.arg = origin;
    return h;
}

// Node 0's Shutdown reaches node 1 only (its message to node 2 still on the way when node 1
// stops and closes its connections): node 1 passes it on, and node 2 stops for the guest's
// own reason, naming node 0, not reporting node 1 lost.
TEST(NodeLink, AStopIsPassedOnToTheNodesTheOriginHasNotReachedYet) {
    Trio n;
    ShutdownPayload p = ShutdownPayload::make(int32_t(StopReason::UserQuit), "quit");
    ASSERT_TRUE(n.t[0]->send(1, shutdown_header(0), as_bytes_of(p)).ok());
    ASSERT_TRUE(n.rec[2].wait([&] { return n.rec[2].stop.has_value(); }));
    EXPECT_EQ(n.rec[2].stop->first, StopReason::UserQuit);
    EXPECT_EQ(n.rec[2].stop->second, "quit (on node 0)");
    ASSERT_TRUE(n.rec[1].wait([&] { return n.rec[1].stop.has_value(); }));
    EXPECT_EQ(n.rec[1].stop->second, "quit (on node 0)");

    // Nothing goes back to the origin: an IPI each node sends after its stop arrives after
    // any Shutdown it might have sent (one sender's messages arrive in order), and node 0
    // has been told nothing by then.
    InterruptMessage m;
    m.vector = 0x40;
    n.link[1].send_ipi(0, 0, m, 0);
    n.link[2].send_ipi(0, 0, m, 0);
    ASSERT_TRUE(n.rec[0].wait([&] { return n.rec[0].ipis.size() == 2; }));
    std::lock_guard lk(n.rec[0].mu);
    EXPECT_FALSE(n.rec[0].stop.has_value()) << n.rec[0].stop->second;
}

TEST(NodeLink, AShutdownNamingAnOriginOutsideTheClusterStopsTheGuestNamingIt) {
    Trio n;
    ShutdownPayload p = ShutdownPayload::make(int32_t(StopReason::PowerOff), "off");
    ASSERT_TRUE(n.t[0]->send(1, shutdown_header(7), as_bytes_of(p)).ok());
    ASSERT_TRUE(n.rec[1].wait([&] { return n.rec[1].stop.has_value(); }));
    EXPECT_EQ(n.rec[1].stop->first, StopReason::Failed);
    EXPECT_EQ(n.rec[1].stop->second, "node 0 sent a Shutdown naming node 7 as its origin");
}

TEST(NodeLink, ReadyBarrierWaitsForEveryNodeAndNamesTheMissing) {
    Pair p;
    Status early = p.link0.wait_ready(std::chrono::steady_clock::now() + 50ms);
    ASSERT_FALSE(early.ok());
    EXPECT_EQ(early.error().message, "node(s) 1 did not get ready in time");
    ASSERT_TRUE(p.link1.send_ready().ok());
    EXPECT_TRUE(p.link0.wait_ready(std::chrono::steady_clock::now() + 10s).ok());
}

TEST(NodeLink, TscSyncReturnsNodeZerosBase) {
    Pair p;
    p.link0.set_tsc_base(1'000'000);
    auto same = p.link1.sync_tsc(true, 1, std::chrono::steady_clock::now() + 10s);
    ASSERT_TRUE(same.ok()) << same.error().message;
    EXPECT_EQ(same->host_delta, 0);
    EXPECT_EQ(same->kvm_offset, uint64_t(0) - 1'000'000);
    // One process, one TSC: the estimated delta is within the best round trip.
    auto est = p.link1.sync_tsc(false, 8, std::chrono::steady_clock::now() + 10s);
    ASSERT_TRUE(est.ok()) << est.error().message;
    EXPECT_LE(std::abs(est->host_delta), int64_t(est->best_rtt));
}

TEST(NodeLink, TscRateReachesTheOtherNodes) {
    Pair p;
    EXPECT_EQ(p.link1.tsc_khz(), 0u);
    ASSERT_TRUE(p.link0.announce_tsc_khz(2'500'000).ok());
    // The Pong follows the TscRate on the same connection.
    ASSERT_TRUE(p.link1.sync_tsc(true, 1, std::chrono::steady_clock::now() + 10s).ok());
    EXPECT_EQ(p.link1.tsc_khz(), 2'500'000u);
}

TEST(NodeLink, HpetCounterChangesReachTheOtherNodes) {
    Pair p;
    EXPECT_EQ(p.link1.hpet_counter(), (Hpet::Counter{false, 0}));
    p.link0.announce_hpet(Hpet::Counter{false, 1234});
    p.link0.announce_hpet(Hpet::Counter{true, uint64_t(-5000)});
    // The Pong follows both on the same connection.
    ASSERT_TRUE(p.link1.sync_tsc(true, 1, std::chrono::steady_clock::now() + 10s).ok());
    EXPECT_EQ(p.link1.hpet_counter(), (Hpet::Counter{true, uint64_t(-5000)}));
    EXPECT_EQ(p.link1.hpet_counter().at(1'000), uint64_t(-5000) + 100);
}

TEST(NodeLink, AnHpetCounterWithAnUnknownStateStopsTheGuest) {
    Pair p;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::HpetCounter);
    h.arg = 2;
    uint64_t v = 7;
    ASSERT_TRUE(p.t0->send(1, h, std::span(reinterpret_cast<const uint8_t*>(&v), 8)).ok());
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.stop.has_value(); }));
    EXPECT_EQ(p.rec1.stop->second, "node 0 sent an HpetCounter with state 2");
    EXPECT_EQ(p.link1.hpet_counter(), (Hpet::Counter{false, 0}));
}

TEST(NodeLink, PeerLostStopsTheGuestNamingThePeerAndFailsWaitingIo) {
    Pair p;
    ASSERT_TRUE(p.hub->inject_peer_loss(0, 1, "connection reset").ok());
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.stop.has_value(); }));
    EXPECT_EQ(p.rec1.stop->first, StopReason::Failed);
    EXPECT_NE(p.rec1.stop->second.find("node 0 lost"), std::string::npos) << p.rec1.stop->second;
    uint8_t b = 0;
    EXPECT_FALSE(p.link1.forward_io(IoKind::Pio, 0x71, std::span(&b, 1), false));
}

TEST(NodeLink, MalformedMessagesStopTheGuestNamingTheSender) {
    Pair p;
    IpiPayload bad;
    bad.delivery_mode = 3;  // reserved
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Ipi);
    ASSERT_TRUE(p.t0->send(1, h, as_bytes_of(bad)).ok());
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.stop.has_value(); }));
    EXPECT_EQ(p.rec1.stop->second, "node 0 sent a malformed Ipi");

    // An I/O request of size 3 to the I/O node.
    IoPayload io;
    io.size = 3;
    MsgHeader r;
    r.type = static_cast<uint16_t>(MsgType::IoReq);
    ASSERT_TRUE(p.t1->send(0, r, as_bytes_of(io)).ok());
    ASSERT_TRUE(p.rec0.wait([&] { return p.rec0.stop.has_value(); }));
    EXPECT_NE(p.rec0.stop->second.find("node 1 sent a malformed IoReq"), std::string::npos)
        << p.rec0.stop->second;
}

TEST(NodeLink, ATscRateOfZeroStopsTheGuest) {
    Pair p;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::TscRate);
    ASSERT_TRUE(p.t0->send(1, h).ok());
    ASSERT_TRUE(p.rec1.wait([&] { return p.rec1.stop.has_value(); }));
    EXPECT_EQ(p.rec1.stop->second, "node 0 sent a TscRate of 0 kHz");
    EXPECT_EQ(p.link1.tsc_khz(), 0u);
}

}  // namespace
}  // namespace kv
