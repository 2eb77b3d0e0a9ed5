// HPET (vmm/devices/hpet.h): capabilities as Linux checks them, the main counter's rate,
// start/stop/write, comparator registers, access widths, the state callback, snapshots.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "vmm/devices/device_state.h"
#include "vmm/devices/hpet.h"

namespace kv {
namespace {

class HpetTest : public ::testing::Test {
  protected:
    HpetTest()
        : hpet([this] { return now.load(); },
               [this](const Hpet::Counter& c) { changes.push_back(c); }) {}
    uint64_t rd(uint64_t off, size_t width = 4) {
        uint8_t b[8] = {};
        hpet.read(off, std::span<uint8_t>(b, width));
        return load_le(std::span<const uint8_t>(b, width));
    }
    void wr(uint64_t off, uint64_t v, size_t width = 4) {
        uint8_t b[8];
        store_le(std::span<uint8_t>(b, width), v);
        hpet.write(off, std::span<const uint8_t>(b, width));
    }
    // What Linux's hpet_enable() and hpet_restart_counter() do.
    void linux_start() {
        wr(0x010, rd(0x010) & ~1ull);
        wr(0x0F0, 0);
        wr(0x0F4, 0);
        wr(0x010, rd(0x010) | 1);
    }

    std::atomic<uint64_t> now{7'000'000'000};
    std::vector<Hpet::Counter> changes;
    Hpet hpet;
};

TEST_F(HpetTest, CapabilitiesAreWhatLinuxAccepts) {
    const uint64_t cap = rd(0x000, 8);
    EXPECT_EQ(cap & 0xFF, 1u);          // revision
    EXPECT_EQ((cap >> 8) & 0x1F, 2u);   // three comparators
    EXPECT_EQ((cap >> 13) & 1, 1u);     // 64-bit counter
    EXPECT_EQ((cap >> 15) & 1, 0u);     // no legacy replacement: not a clockevent
    EXPECT_EQ(cap >> 32, 10'000'000u);  // 10 ns in fs: 100 MHz
    // Linux's bounds on the period (HPET_MIN_PERIOD .. HPET_MAX_PERIOD).
    EXPECT_GE(cap >> 32, 100'000u);
    EXPECT_LE(cap >> 32, 100'000'000u);
    EXPECT_EQ(rd(0x004), cap >> 32);    // the upper half alone
    EXPECT_NE(rd(0x010), 0xFFFFFFFFu);  // hpet_cfg_working()
    // Every comparator's config has only bits Linux knows once it cleared the ones it
    // sets itself, and no interrupt route.
    for (uint64_t n = 0; n < 3; ++n) {
        const uint64_t cfg = rd(0x100 + 0x20 * n, 8);
        EXPECT_EQ(cfg & ~uint64_t(Hpet::kTnSizeCap), 0u) << n;
        EXPECT_EQ(cfg >> 32, 0u) << "INT_ROUTE_CAP of comparator " << n;
    }
}

TEST_F(HpetTest, CounterIsHaltedAtZeroUntilEnabledThenCountsAt100MHz) {
    EXPECT_EQ(rd(0x0F0, 8), 0u);
    now += 1'000'000;
    EXPECT_EQ(rd(0x0F0, 8), 0u);
    linux_start();
    EXPECT_EQ(rd(0x010), 1u);
    now += 1'000'000'000;
    EXPECT_EQ(rd(0x0F0, 8), 100'000'000u);
    now += 15;  // 1.5 ticks: whole ticks only
    EXPECT_EQ(rd(0x0F0, 8), 100'000'001u);
}

TEST_F(HpetTest, StoppingHoldsTheValueAndStartingGoesOnFromIt) {
    linux_start();
    now += 2'000;
    wr(0x010, 0);
    EXPECT_EQ(rd(0x0F0, 8), 200u);
    now += 5'000'000;
    EXPECT_EQ(rd(0x0F0, 8), 200u);
    wr(0x010, 1);
    now += 1'000;
    EXPECT_EQ(rd(0x0F0, 8), 300u);
}

TEST_F(HpetTest, WritesSetTheCounterHaltedOrRunning) {
    wr(0x0F0, 0xFFFFFFF0, 4);
    wr(0x0F4, 0x1, 4);
    EXPECT_EQ(rd(0x0F0, 8), 0x1FFFFFFF0u);
    wr(0x010, 1);
    now += 200;  // 20 ticks: the low half wraps into the high half
    EXPECT_EQ(rd(0x0F0, 4), 0x4u);
    EXPECT_EQ(rd(0x0F4, 4), 0x2u);
    wr(0x0F0, 1000, 8);  // while running, too
    now += 100;
    EXPECT_EQ(rd(0x0F0, 8), 1010u);
    // One byte at a time reads the same counter.
    EXPECT_EQ(rd(0x0F1, 1), (1010u >> 8) & 0xFF);
}

TEST_F(HpetTest, ComparatorsStoreTheirRegistersButHaveNoInterruptRoute) {
    wr(0x120, Hpet::kTnEnable | Hpet::kTnLevel | Hpet::kTnPeriodic | (3u << 9) | (1u << 14));
    // Periodic, a route and FSB are not capabilities: they read back 0.
    EXPECT_EQ(rd(0x120), Hpet::kTnEnable | Hpet::kTnLevel | Hpet::kTnSizeCap);
    wr(0x128, 0x1122334455667788ull, 8);
    EXPECT_EQ(rd(0x128, 8), 0x1122334455667788ull);
    wr(0x120, Hpet::kTn32Bit);
    EXPECT_EQ(rd(0x128, 8), 0x55667788u);
    EXPECT_EQ(rd(0x130, 8), 0u);  // FSB route
    EXPECT_EQ(rd(0x148, 8), 0u);  // comparator 2 untouched
    EXPECT_EQ(rd(0x020, 8), 0u);  // no interrupt status, ever
    EXPECT_EQ(rd(0x300, 8), 0u);  // reserved
    EXPECT_EQ(rd(0x0F0, 8), 0u);  // none of this moved the counter
    EXPECT_TRUE(changes.empty());
}

TEST_F(HpetTest, EveryCounterChangeIsReportedOnceAndItsStateReadsTheSame) {
    linux_start();
    ASSERT_FALSE(changes.empty());
    EXPECT_EQ(changes.back(), hpet.counter());
    const size_t n = changes.size();
    wr(0x010, 1);    // already running: no change
    wr(0x120, 0x4);  // a comparator: no change
    EXPECT_EQ(changes.size(), n);
    now += 12'340;
    wr(0x010, 0);
    ASSERT_EQ(changes.size(), n + 1);
    EXPECT_EQ(changes.back(), (Hpet::Counter{false, 1234}));
    // Another node that has the state computes what this one reads, at any time.
    wr(0x010, 1);
    now += 99'990;
    EXPECT_EQ(changes.back().at(now), rd(0x0F0, 8));
    EXPECT_EQ(rd(0x0F0, 8), 1234u + 9999u);
}

// Snapshots: a restored HPET counts on from the saved counter under the same clock, reads
// the same comparators, and announces its counter to the other nodes.
TEST_F(HpetTest, RestoredStateKeepsCountingWhereTheSavedOneStood) {
    linux_start();
    now += 12'345'670;
    wr(0x100, Hpet::kTnEnable | Hpet::kTnLevel);
    wr(0x108, 0x1122334455667788ull, 8);
    wr(0x128, 0xAABBCCDD00112233ull, 8);
    wr(0x120, Hpet::kTn32Bit);  // 32-bit mode keeps the upper half, reads without it
    wr(0x148, 0x42, 8);
    StateSaver s;
    hpet.save_state(s);
    const StateJson j = s.take();

    std::vector<Hpet::Counter> changes2;
    Hpet hpet2([this] { return now.load(); },
               [&](const Hpet::Counter& c) { changes2.push_back(c); });
    StateLoader l(j, "devices.hpet");
    ASSERT_TRUE(hpet2.restore_state(l)) << hpet2.restore_state(l).error().message;
    ASSERT_EQ(changes2.size(), 1u);
    EXPECT_EQ(changes2.back(), hpet.counter());
    auto rd2 = [&](uint64_t off) {
        uint8_t b[8] = {};
        hpet2.read(off, std::span<uint8_t>(b, 8));
        return load_le(std::span<const uint8_t>(b, 8));
    };
    EXPECT_EQ(rd2(0x0F0), 1'234'567u);
    EXPECT_EQ(rd2(0x010), 1u);
    now += 1'000;
    EXPECT_EQ(rd2(0x0F0), rd(0x0F0, 8));
    EXPECT_EQ(rd2(0x0F0), 1'234'667u);
    for (uint64_t off = 0x100; off < 0x160; off += 8) EXPECT_EQ(rd2(off), rd(off, 8)) << off;
    EXPECT_EQ(rd2(0x100), Hpet::kTnEnable | Hpet::kTnLevel | Hpet::kTnSizeCap);
    EXPECT_EQ(rd2(0x128), 0x00112233u);
    // Leaving 32-bit mode shows the upper half kept through the snapshot.
    uint8_t b[8] = {};
    hpet2.write(0x120, std::span<const uint8_t>(b, 8));
    EXPECT_EQ(rd2(0x128), 0xAABBCCDD00112233ull);
}

TEST_F(HpetTest, RestoreRefusesADamagedStateNamingTheField) {
    StateSaver s;
    hpet.save_state(s);
    const StateJson j = s.take();
    auto refused = [this](const StateJson& bad) {
        Hpet h([this] { return now.load(); });
        StateLoader l(bad, "devices.hpet");
        const Status st = h.restore_state(l);
        return st ? std::string("accepted") : st.error().message;
    };
    StateJson bad = j;
    bad["timer1"]["config"] = Hpet::kTnPeriodic;  // not a capability
    EXPECT_EQ(refused(bad),
              "devices.hpet.timer1.config: bits other than INT_TYPE, INT_ENB and 32MODE set");
    bad = j;
    bad["counter"].erase("running");
    EXPECT_EQ(refused(bad), "devices.hpet.counter.running: missing");
    bad = j;
    bad.erase("timer2");
    EXPECT_EQ(refused(bad), "devices.hpet.timer2: missing");
}

}  // namespace
}  // namespace kv
