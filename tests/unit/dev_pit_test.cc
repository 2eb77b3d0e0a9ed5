// 8254 PIT: channel 0 interrupts in the modes Linux uses, count reads, latches, read-back,
// and channel 2 with port 0x61 as Linux's TSC calibration drives it. A fake clock makes
// every step deterministic; one test runs the real timer thread against the fake clock.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "vmm/devices/device_state.h"
#include "vmm/devices/pit_8254.h"

namespace kv {
namespace {

class FakeIrqChip : public IrqChip {
  public:
    void set_irq(uint32_t gsi, bool level) override {
        std::lock_guard lk(mu_);
        gsis.push_back(gsi);
        if (level) ++rising_;
        cv_.notify_all();
    }
    int rising() {
        std::lock_guard lk(mu_);
        return rising_;
    }
    bool wait_rising(int n, std::chrono::seconds timeout) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return rising_ >= n; });
    }
    std::vector<uint32_t> gsis;

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    int rising_ = 0;
};

constexpr uint64_t kT0 = 1'000'000'000;  // the fake clock starts at an arbitrary second

class PitTest : public ::testing::Test {
  protected:
    PitTest() : pit(IrqLine(&chip, 2), [this] { return now.load(); }) {}

    void outb(uint64_t port, uint8_t v) {
        const uint64_t off = port == 0x61 ? Pit8254::kPort61Offset : port - 0x40;
        pit.write(off, std::span<const uint8_t>(&v, 1));
    }
    uint8_t inb(uint64_t port) {
        const uint64_t off = port == 0x61 ? Pit8254::kPort61Offset : port - 0x40;
        uint8_t b = 0;
        pit.read(off, std::span<uint8_t>(&b, 1));
        return b;
    }
    void program(uint64_t port, uint8_t control, uint16_t count) {
        outb(0x43, control);
        outb(port, uint8_t(count));
        outb(port, uint8_t(count >> 8));
    }
    // Moves the fake clock to exactly `ticks` input-clock ticks after `from`.
    void at_tick(uint64_t from, uint64_t ticks) { now = from + ticks_to_ns(ticks, Pit8254::kHz); }

    FakeIrqChip chip;
    std::atomic<uint64_t> now{kT0};
    Pit8254 pit;
};

TEST_F(PitTest, Mode2PeriodicInterruptCountOverOneSecond) {
    constexpr uint16_t kLatch = 4773;  // Linux's PIT_LATCH for HZ=250
    program(0x40, 0x34, kLatch);       // channel 0, lohi, mode 2, binary
    std::optional<uint64_t> due = pit.poll(now);
    ASSERT_TRUE(due);
    EXPECT_EQ(*due, kT0 + ticks_to_ns(kLatch, Pit8254::kHz));
    // Step the clock from deadline to deadline for one second, as the timer thread would.
    while (*due <= kT0 + 1'000'000'000) {
        now = *due;
        due = pit.poll(now);
        ASSERT_TRUE(due);
    }
    const uint64_t expected = ns_to_ticks(1'000'000'000, Pit8254::kHz) / kLatch;  // 249
    EXPECT_EQ(uint64_t(chip.rising()), expected);
    EXPECT_EQ(pit.stats().interrupts, expected);
    EXPECT_EQ(pit.stats().coalesced, 0u);
    for (uint32_t gsi : chip.gsis) EXPECT_EQ(gsi, 2u);  // only the line it was given
}

TEST_F(PitTest, MissedPeriodsAreCoalescedIntoOnePulse) {
    program(0x40, 0x34, 1000);
    at_tick(kT0, 10 * 1000 + 5);
    pit.poll(now);
    EXPECT_EQ(chip.rising(), 1);
    EXPECT_EQ(pit.stats().coalesced, 9u);
    // The period grid is kept: next due at tick 11000.
    EXPECT_EQ(*pit.poll(now), kT0 + ticks_to_ns(11000, Pit8254::kHz));
}

TEST_F(PitTest, Mode0OneShotFiresOnce) {
    program(0x40, 0x30, 500);  // mode 0
    at_tick(kT0, 499);
    EXPECT_EQ(*pit.poll(now), kT0 + ticks_to_ns(500, Pit8254::kHz));
    EXPECT_EQ(chip.rising(), 0);
    at_tick(kT0, 500);
    EXPECT_FALSE(pit.poll(now));  // fired, nothing more due
    EXPECT_EQ(chip.rising(), 1);
    at_tick(kT0, 100000);
    pit.poll(now);
    EXPECT_EQ(chip.rising(), 1);
}

TEST_F(PitTest, Mode4OneShotAsLinuxClockeventProgramsIt) {
    outb(0x43, 0x38);  // pit_set_oneshot
    EXPECT_FALSE(pit.poll(now));
    outb(0x40, 0x10);  // pit_next_event(0x310)
    outb(0x40, 0x03);
    EXPECT_EQ(*pit.poll(now), kT0 + ticks_to_ns(0x310, Pit8254::kHz));
    at_tick(kT0, 0x310);
    pit.poll(now);
    EXPECT_EQ(chip.rising(), 1);
}

TEST_F(PitTest, ShutdownAndReprogrammingCancelPendingTimers) {
    program(0x40, 0x30, 1000);
    at_tick(kT0, 500);
    outb(0x43, 0x30);  // pit_shutdown: control word, no count
    EXPECT_FALSE(pit.poll(now));
    at_tick(kT0, 5000);
    EXPECT_FALSE(pit.poll(now));
    EXPECT_EQ(chip.rising(), 0);
    // Reprogramming a periodic channel restarts its period grid from the new count.
    program(0x40, 0x34, 2000);
    const uint64_t t1 = now;
    EXPECT_EQ(*pit.poll(now), t1 + ticks_to_ns(2000, Pit8254::kHz));
}

TEST_F(PitTest, CountFollowsTimeAndLatchFreezesIt) {
    program(0x40, 0x34, 1000);
    at_tick(kT0, 100);
    outb(0x43, 0x00);  // latch channel 0
    at_tick(kT0, 300);
    EXPECT_EQ(inb(0x40) | inb(0x40) << 8, 900);  // the latched value
    EXPECT_EQ(inb(0x40) | inb(0x40) << 8, 700);  // live again
    // Mode 2 reloads: 1250 ticks in is 250 into the second period.
    at_tick(kT0, 1250);
    EXPECT_EQ(inb(0x40) | inb(0x40) << 8, 750);
}

TEST_F(PitTest, ReadBackLatchesStatusThenCount) {
    program(0x40, 0x34, 1000);
    at_tick(kT0, 10);
    outb(0x43, 0xC2);  // read-back: count and status of channel 0
    at_tick(kT0, 20);
    // OUT high, count loaded, lohi, mode 2, binary.
    EXPECT_EQ(inb(0x40), 0x80 | 0x30 | 0x04);
    EXPECT_EQ(inb(0x40) | inb(0x40) << 8, 990);
    // Status only (bit 5 set = do not latch count), for channel 2 programmed in mode 0 with
    // no count yet: OUT low, null count.
    outb(0x43, 0xB0);
    outb(0x43, 0xE8);
    EXPECT_EQ(inb(0x42), 0x40 | 0x30 | 0x00);
}

TEST_F(PitTest, ByteAccessModes) {
    outb(0x43, 0x14);  // channel 0, low byte only, mode 2
    outb(0x40, 0x80);
    at_tick(kT0, 0x10);
    EXPECT_EQ(inb(0x40), 0x70);
    EXPECT_EQ(inb(0x40), 0x70);      // no flip-flop in lobyte mode
    outb(0x43, 0x60 | 0x00 | 0x00);  // channel 1, high byte only, mode 0
    outb(0x41, 0x02);                // count 0x200
    at_tick(now, 0x100);
    EXPECT_EQ(inb(0x41), 0x01);  // 0x100 left: high byte 1
}

TEST_F(PitTest, BcdCounting) {
    outb(0x43, 0x31);  // channel 0, lohi, mode 0, BCD
    outb(0x40, 0x00);
    outb(0x40, 0x10);  // 1000 decimal
    at_tick(kT0, 1);
    EXPECT_EQ(inb(0x40) | inb(0x40) << 8, 0x0999);
    EXPECT_EQ(*pit.poll(now), kT0 + ticks_to_ns(1000, Pit8254::kHz));
}

TEST_F(PitTest, Channel2SlowCalibrationPollsOut2OnPort61) {
    // pit_calibrate_tsc: gate on, speaker off; channel 2 mode 0 with a 50 ms latch.
    outb(0x61, uint8_t((inb(0x61) & ~0x02) | 0x01));
    const uint16_t latch = 1193182 / 20;
    program(0x42, 0xB0, latch);
    const uint64_t start = now;
    EXPECT_EQ(inb(0x61) & Pit8254::kP61Out2, 0);
    at_tick(start, latch - 1);
    EXPECT_EQ(inb(0x61) & Pit8254::kP61Out2, 0);
    at_tick(start, latch);
    EXPECT_EQ(inb(0x61) & Pit8254::kP61Out2, Pit8254::kP61Out2);
    EXPECT_EQ(inb(0x61) & 0x03, 0x01);  // gate on, speaker off, as written
    EXPECT_EQ(chip.rising(), 0);        // channel 2 has no interrupt
}

TEST_F(PitTest, Channel2QuickCalibrationReadsTheFallingMsb) {
    outb(0x61, 0x01);
    program(0x42, 0xB0, 0xFFFF);
    const uint64_t start = now;
    for (unsigned i = 0; i < 4; ++i) {
        at_tick(start, 256 * i + 10);
        inb(0x42);  // LSB
        EXPECT_EQ(inb(0x42), 0xFF - i);
    }
}

TEST_F(PitTest, Channel2GateLowPausesMode0) {
    outb(0x61, 0x01);
    program(0x42, 0xB0, 1000);
    const uint64_t start = now;
    at_tick(start, 100);
    outb(0x61, 0x00);  // gate off
    at_tick(start, 600);
    EXPECT_EQ(inb(0x42) | inb(0x42) << 8, 900);
    outb(0x61, 0x01);  // resume
    at_tick(now, 50);
    EXPECT_EQ(inb(0x42) | inb(0x42) << 8, 850);
}

TEST_F(PitTest, RefreshBitToggles) {
    const uint8_t a = inb(0x61) & Pit8254::kP61Refresh;
    now += 15'085;
    const uint8_t b = inb(0x61) & Pit8254::kP61Refresh;
    EXPECT_NE(a, b);
}

TEST_F(PitTest, TimerThreadDeliversPeriodicInterrupts) {
    ASSERT_TRUE(pit.start().ok());
    program(0x40, 0x34, 1193);  // ~1 ms
    // The thread sleeps for the fake clock's deltas; moving the clock makes ticks due.
    now += 5'000'000;
    EXPECT_TRUE(chip.wait_rising(1, std::chrono::seconds(30)));
    now += 5'000'000;
    EXPECT_TRUE(chip.wait_rising(2, std::chrono::seconds(30)));
    pit.stop();
    const int after_stop = chip.rising();
    now += 50'000'000;  // nobody polls any more
    EXPECT_EQ(chip.rising(), after_stop);
}

TEST(PitThread, StopsWhenIdle) {
    Pit8254 pit(IrqLine(), [] { return uint64_t(0); });
    ASSERT_TRUE(pit.start().ok());
    EXPECT_FALSE(pit.start().ok());
    pit.stop();  // the thread waits with no deadline; stop must still wake and join it
    SUCCEED();
}

// Time dilation (clock.h): the clock the PIT and the PM timer follow when the guest's time
// runs D times slower than real time.
TEST(DilatedClock, RunsSlowerByItsFactorFromItsCreation) {
    std::atomic<uint64_t> base{kT0};
    MonotonicClock slow = dilated([&] { return base.load(); }, 10);
    EXPECT_EQ(slow(), kT0);
    base += 10'000'000'000;  // 10 real seconds
    EXPECT_EQ(slow(), kT0 + 1'000'000'000);
    base += 25;
    EXPECT_EQ(slow(), kT0 + 1'000'000'002);  // whole nanoseconds, never ahead
    MonotonicClock same = dilated([&] { return base.load(); }, 1);
    EXPECT_EQ(same(), base.load());
}

// Snapshots: a PIT restored from a saved state interrupts at the same clock time and
// reads the same count as the one it was saved from.
TEST_F(PitTest, RestoredStateKeepsCountingWhereTheSavedOneStood) {
    program(0x40, 0x34, 5000);  // channel 0, mode 2
    program(0x42, 0xb0, 3000);  // channel 2, mode 0, gate low (port 0x61 bit 0 is 0)
    at_tick(kT0, 1200);
    const std::optional<uint64_t> due = pit.poll(now);
    ASSERT_TRUE(due);
    StateSaver s;
    pit.save_state(s);
    const StateJson j = s.take();

    FakeIrqChip chip2;
    Pit8254 pit2(IrqLine(&chip2, 2), [this] { return now.load(); });
    StateLoader l(j, "devices.pit");
    ASSERT_TRUE(pit2.restore_state(l)) << pit2.restore_state(l).error().message;
    EXPECT_EQ(pit2.poll(now), due);
    auto count0 = [](Pit8254& p) {
        uint8_t v = 0x00;  // latch channel 0
        p.write(3, std::span<const uint8_t>(&v, 1));
        uint8_t lo = 0, hi = 0;
        p.read(0, std::span<uint8_t>(&lo, 1));
        p.read(0, std::span<uint8_t>(&hi, 1));
        return uint16_t(lo | hi << 8);
    };
    EXPECT_EQ(count0(pit2), count0(pit));
    EXPECT_EQ(count0(pit2), 5000 - 1200);
    now = *due;
    pit2.poll(now);
    EXPECT_EQ(chip2.rising(), 1);
}

TEST_F(PitTest, RestoreRefusesADamagedStateNamingTheField) {
    StateSaver s;
    pit.save_state(s);
    StateJson j = s.take();
    {
        StateJson bad = j;
        bad["ch1"]["mode"] = 9;
        Pit8254 p(IrqLine(&chip, 2), [this] { return now.load(); });
        StateLoader l(bad, "devices.pit");
        const Status st = p.restore_state(l);
        ASSERT_FALSE(st);
        EXPECT_NE(st.error().message.find("devices.pit.ch1"), std::string::npos)
            << st.error().message;
    }
    {
        StateJson bad = j;
        bad["ch0"]["cr"] = 70000;  // a 16-bit register
        Pit8254 p(IrqLine(&chip, 2), [this] { return now.load(); });
        StateLoader l(bad, "devices.pit");
        const Status st = p.restore_state(l);
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().message,
                  "devices.pit.ch0.cr: 70000 is out of range for a 16-bit field");
    }
    {
        StateJson bad = j;
        bad["ch2"].erase("gate");
        bad["extra"] = 1;
        Pit8254 p(IrqLine(&chip, 2), [this] { return now.load(); });
        StateLoader l(bad, "devices.pit");
        const Status st = p.restore_state(l);
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().message, "devices.pit.ch2.gate: missing");
    }
    {
        StateJson bad = j;
        bad["extra"] = 1;
        Pit8254 p(IrqLine(&chip, 2), [this] { return now.load(); });
        StateLoader l(bad, "devices.pit");
        const Status st = p.restore_state(l);
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().message, "devices.pit.extra: unknown field");
    }
}

}  // namespace
}  // namespace kv
