// IPI router: destination resolution (physical, broadcast, logical flat and cluster,
// shorthands, lowest priority), local versus remote delivery, and the counters.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "vcpu/ipi_router.h"

namespace kv {
namespace {

class FakeTarget : public InterruptTarget {
  public:
    void deliver(const InterruptMessage& m) override { got.push_back(m); }
    std::vector<InterruptMessage> got;
};

InterruptMessage fixed(uint8_t vector, uint32_t dest, bool logical = false) {
    InterruptMessage m;
    m.vector = vector;
    m.dest = dest;
    m.logical = logical;
    return m;
}

class IpiRouterTest : public ::testing::Test {
  protected:
    static constexpr uint32_t kN = 4;
    IpiRouterTest() : router(kN) {
        for (uint32_t i = 0; i < kN; ++i) router.attach_local(i, &t[i]);
    }
    // Which vCPUs received something, in index order, with how many messages.
    std::vector<size_t> received() const {
        std::vector<size_t> out;
        for (uint32_t i = 0; i < kN; ++i) out.push_back(t[i].got.size());
        return out;
    }
    void clear() {
        for (auto& x : t) x.got.clear();
    }
    void set(uint32_t vcpu, uint8_t id, uint8_t ldr, bool flat) {
        router.update_addressing(vcpu, Lapic::Addressing{id, ldr, flat, true});
    }

    IpiRouter router;
    FakeTarget t[kN];
};

using V = std::vector<size_t>;

TEST_F(IpiRouterTest, PhysicalDestinationByApicId) {
    EXPECT_EQ(router.route(fixed(0x30, 2)), 1u);
    EXPECT_EQ(received(), (V{0, 0, 1, 0}));
    EXPECT_EQ(t[2].got[0].vector, 0x30);
    // An APIC ID that differs from the vCPU index.
    set(1, 9, 0, true);
    clear();
    EXPECT_EQ(router.route(fixed(0x31, 9)), 1u);
    EXPECT_EQ(received(), (V{0, 1, 0, 0}));
    EXPECT_EQ(router.targets(fixed(0x31, 1)), std::vector<uint32_t>{});
}

TEST_F(IpiRouterTest, PhysicalBroadcast) {
    EXPECT_EQ(router.route(fixed(0x32, 0xFF)), kN);
    EXPECT_EQ(received(), (V{1, 1, 1, 1}));
}

TEST_F(IpiRouterTest, LogicalFlatMatchesLdrBitmask) {
    for (uint32_t i = 0; i < kN; ++i) set(i, uint8_t(i), uint8_t(1u << i), true);
    EXPECT_EQ(router.route(fixed(0x40, 0x05, true)), 2u);
    EXPECT_EQ(received(), (V{1, 0, 1, 0}));
    clear();
    EXPECT_EQ(router.route(fixed(0x40, 0x08, true)), 1u);
    EXPECT_EQ(received(), (V{0, 0, 0, 1}));
    clear();
    EXPECT_EQ(router.route(fixed(0x40, 0xFF, true)), kN);
    EXPECT_EQ(received(), (V{1, 1, 1, 1}));
    EXPECT_EQ(router.targets(fixed(0x40, 0x30, true)), std::vector<uint32_t>{});
}

TEST_F(IpiRouterTest, LogicalClusterMatchesClusterAndMemberMask) {
    set(0, 0, 0x11, false);
    set(1, 1, 0x12, false);
    set(2, 2, 0x21, false);
    set(3, 3, 0x22, false);
    EXPECT_EQ(router.targets(fixed(0x41, 0x13, true)), (std::vector<uint32_t>{0, 1}));
    EXPECT_EQ(router.targets(fixed(0x41, 0x22, true)), (std::vector<uint32_t>{3}));
    EXPECT_EQ(router.targets(fixed(0x41, 0x2F, true)), (std::vector<uint32_t>{2, 3}));
    // Same member bits, another cluster: nobody.
    EXPECT_EQ(router.targets(fixed(0x41, 0x31, true)), std::vector<uint32_t>{});
    EXPECT_EQ(router.targets(fixed(0x41, 0xFF, true)), (std::vector<uint32_t>{0, 1, 2, 3}));
    EXPECT_EQ(router.route(fixed(0x41, 0x21, true)), 1u);
    EXPECT_EQ(received(), (V{0, 0, 1, 0}));
}

TEST_F(IpiRouterTest, Shorthands) {
    InterruptMessage m = fixed(0xF0, 0x3);  // dest ignored with a shorthand
    m.source_vcpu = 1;
    m.shorthand = Shorthand::Self;
    EXPECT_EQ(router.route(m), 1u);
    EXPECT_EQ(received(), (V{0, 1, 0, 0}));
    clear();
    m.shorthand = Shorthand::AllIncludingSelf;
    EXPECT_EQ(router.route(m), kN);
    EXPECT_EQ(received(), (V{1, 1, 1, 1}));
    clear();
    m.shorthand = Shorthand::AllExcludingSelf;
    EXPECT_EQ(router.route(m), kN - 1);
    EXPECT_EQ(received(), (V{1, 0, 1, 1}));
    EXPECT_EQ(t[0].got[0].vector, 0xF0);
}

TEST_F(IpiRouterTest, LowestPriorityPicksOneAndRotates) {
    for (uint32_t i = 0; i < kN; ++i) set(i, uint8_t(i), uint8_t(1u << i), true);
    InterruptMessage m = fixed(0x50, 0x0F, true);
    m.mode = DeliveryMode::LowestPriority;
    for (uint32_t round = 0; round < kN; ++round) {
        auto before = received();
        EXPECT_EQ(router.route(m), 1u);
        auto after = received();
        size_t delivered = 0;
        for (uint32_t i = 0; i < kN; ++i) delivered += after[i] - before[i];
        EXPECT_EQ(delivered, 1u) << round;
    }
    // Rotation: four messages to four candidates reach each exactly once.
    EXPECT_EQ(received(), (V{1, 1, 1, 1}));
    // A single candidate is always the one chosen.
    clear();
    m.dest = 0x04;
    EXPECT_EQ(router.route(m), 1u);
    EXPECT_EQ(router.route(m), 1u);
    EXPECT_EQ(received(), (V{0, 0, 2, 0}));
}

TEST_F(IpiRouterTest, RemoteVcpuGoesToRemoteSink) {
    IpiRouter r(kN);
    r.attach_local(0, &t[0]);
    r.attach_local(1, &t[1]);
    std::vector<std::pair<uint32_t, InterruptMessage>> remote;
    r.set_remote_sink([&](uint32_t v, const InterruptMessage& m) { remote.emplace_back(v, m); });

    EXPECT_EQ(r.route(fixed(0x60, 3)), 1u);
    ASSERT_EQ(remote.size(), 1u);
    EXPECT_EQ(remote[0].first, 3u);
    EXPECT_EQ(remote[0].second.vector, 0x60);
    EXPECT_EQ(received(), (V{0, 0, 0, 0}));

    EXPECT_EQ(r.route(fixed(0x61, 0xFF)), kN);  // two local, two remote
    EXPECT_EQ(received(), (V{1, 1, 0, 0}));
    ASSERT_EQ(remote.size(), 3u);
    EXPECT_EQ(remote[1].first, 2u);
    EXPECT_EQ(remote[2].first, 3u);

    const auto& c = r.counters();
    EXPECT_EQ(c.local.load(), 2u);
    EXPECT_EQ(c.remote.load(), 3u);
    EXPECT_EQ(c.dropped.load(), 0u);
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Fixed)].load(), 2u);
}

TEST_F(IpiRouterTest, NoMatchingDestinationIsDropped) {
    EXPECT_EQ(router.route(fixed(0x70, 0x33)), 0u);
    EXPECT_EQ(received(), (V{0, 0, 0, 0}));
    EXPECT_EQ(router.counters().dropped.load(), 1u);
    EXPECT_EQ(router.counters().local.load(), 0u);
    EXPECT_EQ(router.counters().remote.load(), 0u);
    // Logical flat destination with no LDR configured anywhere.
    EXPECT_EQ(router.route(fixed(0x70, 0x01, true)), 0u);
    EXPECT_EQ(router.counters().dropped.load(), 2u);
}

TEST_F(IpiRouterTest, NonLocalVcpuWithoutRemoteSinkIsDropped) {
    IpiRouter r(2);
    r.attach_local(0, &t[0]);
    EXPECT_EQ(r.route(fixed(0x71, 1)), 1u);
    EXPECT_EQ(r.counters().dropped.load(), 1u);
    EXPECT_EQ(r.counters().local.load(), 0u);
    EXPECT_EQ(received(), (V{0, 0, 0, 0}));
}

TEST_F(IpiRouterTest, CountersByDeliveryMode) {
    InterruptMessage m = fixed(0, 1);
    m.mode = DeliveryMode::Nmi;
    router.route(m);
    m.mode = DeliveryMode::Init;
    router.route(m);
    router.route(m);
    m.mode = DeliveryMode::StartUp;
    m.vector = 0x9A;
    router.route(m);
    router.route(fixed(0x30, 0));
    const auto& c = router.counters();
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Nmi)].load(), 1u);
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Init)].load(), 2u);
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::StartUp)].load(), 1u);
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Fixed)].load(), 1u);
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::LowestPriority)].load(), 0u);
    EXPECT_EQ(c.local.load(), 5u);
    ASSERT_EQ(t[1].got.size(), 4u);
    EXPECT_EQ(t[1].got[0].mode, DeliveryMode::Nmi);
    EXPECT_EQ(t[1].got[3].mode, DeliveryMode::StartUp);
    EXPECT_EQ(t[1].got[3].vector, 0x9A);
}

}  // namespace
}  // namespace kv
