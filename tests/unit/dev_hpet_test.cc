// HPET (vmm/devices/hpet.h): capabilities as Linux checks them, the main counter's rate,
// start/stop/write, comparator registers, access widths, and the state callback.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

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

}  // namespace
}  // namespace kv
