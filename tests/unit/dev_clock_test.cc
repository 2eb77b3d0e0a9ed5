// The devices' pausable time base: it stands still while paused and goes on from there.
#include <gtest/gtest.h>

#include "vmm/devices/clock.h"

namespace kv {
namespace {

TEST(PausableClock, StandsStillWhilePausedAndGoesOnWithoutAJump) {
    uint64_t t = 1000;
    PausableClock c([&] { return t; });
    EXPECT_EQ(c.now(), 1000u);
    t = 1500;
    c.pause();
    t = 9000;  // 7500 ns paused
    EXPECT_EQ(c.now(), 1500u);
    c.resume();
    EXPECT_EQ(c.now(), 1500u);
    t = 9100;
    EXPECT_EQ(c.now(), 1600u);
}

// A restored snapshot's clock goes on from the saved time, behind or ahead of its base.
TEST(PausableClock, RestartAtGoesOnFromTheGivenTime) {
    uint64_t t = 5'000;
    PausableClock c([&] { return t; });
    c.pause();
    c.restart_at(1'000'000);  // ahead of the base: modulo 2^64
    EXPECT_EQ(c.now(), 1'000'000u);
    t += 250;
    EXPECT_EQ(c.now(), 1'000'250u);
    c.pause();
    t += 100;
    c.resume();
    EXPECT_EQ(c.now(), 1'000'250u);
    c.restart_at(10);  // behind it
    t += 5;
    EXPECT_EQ(c.now(), 15u);
}

TEST(PausableClock, PausesAddUpAndRepeatedCallsAreHarmless) {
    uint64_t t = 0;
    PausableClock c([&] { return t; });
    for (int i = 0; i < 3; ++i) {
        t += 100;  // runs 100
        c.pause();
        c.pause();
        t += 50;  // paused 50
        c.resume();
        c.resume();
    }
    EXPECT_EQ(c.now(), 300u);
}

TEST(PausableClock, DilatedOverAPausableClockStopsToo) {
    uint64_t t = 0;
    auto c = std::make_shared<PausableClock>([&] { return t; });
    MonotonicClock d = dilated([c] { return c->now(); }, 10);
    t = 1000;
    EXPECT_EQ(d(), 100u);
    c->pause();
    t = 5000;
    EXPECT_EQ(d(), 100u);
    c->resume();
    t = 6000;
    EXPECT_EQ(d(), 200u);
}

}  // namespace
}  // namespace kv
