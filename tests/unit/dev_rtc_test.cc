// MC146818 RTC/CMOS: time formats, century, registers A-D, NMI bit, RAM, snapshots.
#include <gtest/gtest.h>

#include <atomic>

#include "vmm/devices/device_state.h"
#include "vmm/devices/rtc_cmos.h"

namespace kv {
namespace {

// 2024-02-29 23:59:58 UTC, a Thursday.
constexpr int64_t kLeapDayEvening = 1709251198;
constexpr int64_t kNs = 1'000'000'000;

class RtcTest : public ::testing::Test {
  protected:
    RtcTest() : rtc([this] { return now.load(); }) {}
    uint8_t cmos(uint8_t index) {
        uint8_t v = index;
        rtc.write(0, std::span<const uint8_t>(&v, 1));
        rtc.read(1, std::span<uint8_t>(&v, 1));
        return v;
    }
    void set_cmos(uint8_t index, uint8_t value) {
        rtc.write(0, std::span<const uint8_t>(&index, 1));
        rtc.write(1, std::span<const uint8_t>(&value, 1));
    }

    std::atomic<int64_t> now{kLeapDayEvening * kNs};
    RtcCmos rtc;
};

TEST_F(RtcTest, DefaultsAreBcd24Hour) {
    EXPECT_EQ(cmos(RtcCmos::kRegB), RtcCmos::kB24Hour);
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 0x58);
    EXPECT_EQ(cmos(RtcCmos::kMinutes), 0x59);
    EXPECT_EQ(cmos(RtcCmos::kHours), 0x23);
    EXPECT_EQ(cmos(RtcCmos::kDayOfWeek), 0x05);  // Thursday; Sunday = 1
    EXPECT_EQ(cmos(RtcCmos::kDayOfMonth), 0x29);
    EXPECT_EQ(cmos(RtcCmos::kMonth), 0x02);
    EXPECT_EQ(cmos(RtcCmos::kYear), 0x24);
    EXPECT_EQ(cmos(RtcCmos::kCentury), 0x20);
}

TEST_F(RtcTest, FollowsTheHostClockAcrossMidnight) {
    now += 3 * kNs;  // 2024-03-01 00:00:01
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 0x01);
    EXPECT_EQ(cmos(RtcCmos::kHours), 0x00);
    EXPECT_EQ(cmos(RtcCmos::kDayOfMonth), 0x01);
    EXPECT_EQ(cmos(RtcCmos::kMonth), 0x03);
}

TEST_F(RtcTest, BinaryMode) {
    set_cmos(RtcCmos::kRegB, RtcCmos::kB24Hour | RtcCmos::kBBinary);
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 58);
    EXPECT_EQ(cmos(RtcCmos::kHours), 23);
    EXPECT_EQ(cmos(RtcCmos::kYear), 24);
    EXPECT_EQ(cmos(RtcCmos::kCentury), 20);
}

TEST_F(RtcTest, TwelveHourModeMarksPm) {
    set_cmos(RtcCmos::kRegB, 0);                    // BCD, 12-hour
    EXPECT_EQ(cmos(RtcCmos::kHours), 0x80 | 0x11);  // 11 PM
    now += 3 * kNs;
    EXPECT_EQ(cmos(RtcCmos::kHours), 0x12);  // 12 AM (midnight), no PM bit
    set_cmos(RtcCmos::kRegB, RtcCmos::kBBinary);
    now += 12 * 3600 * kNs;
    EXPECT_EQ(cmos(RtcCmos::kHours), 0x80 | 12);  // 12 PM (noon), binary
}

TEST_F(RtcTest, GuestSetsTheTimeWithSet) {
    // As Linux's mc146818_set_time: SET on, write the fields, SET off.
    set_cmos(RtcCmos::kRegB, RtcCmos::kBSet | RtcCmos::kB24Hour);
    set_cmos(RtcCmos::kSeconds, 0x00);
    set_cmos(RtcCmos::kMinutes, 0x30);
    set_cmos(RtcCmos::kHours, 0x12);
    set_cmos(RtcCmos::kDayOfMonth, 0x15);
    set_cmos(RtcCmos::kMonth, 0x06);
    set_cmos(RtcCmos::kYear, 0x99);
    set_cmos(RtcCmos::kCentury, 0x19);
    now += 10 * kNs;  // frozen while SET is on
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 0x00);
    set_cmos(RtcCmos::kRegB, RtcCmos::kB24Hour);
    now += 5 * kNs;
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 0x05);
    EXPECT_EQ(cmos(RtcCmos::kMinutes), 0x30);
    EXPECT_EQ(cmos(RtcCmos::kYear), 0x99);
    EXPECT_EQ(cmos(RtcCmos::kCentury), 0x19);
    EXPECT_EQ(cmos(RtcCmos::kDayOfWeek), 0x03);  // 1999-06-15 was a Tuesday
}

TEST_F(RtcTest, UipOnlyJustBeforeTheSecondChanges) {
    now = kLeapDayEvening * kNs + 500'000'000;
    EXPECT_FALSE(cmos(RtcCmos::kRegA) & RtcCmos::kAUip);
    EXPECT_EQ(cmos(RtcCmos::kRegA), 0x26);
    now = kLeapDayEvening * kNs + kNs - 100'000;
    EXPECT_TRUE(cmos(RtcCmos::kRegA) & RtcCmos::kAUip);
    set_cmos(RtcCmos::kRegA, 0xA6);  // UIP is read-only
    now = kLeapDayEvening * kNs + 1000;
    EXPECT_EQ(cmos(RtcCmos::kRegA), 0x26);
}

TEST_F(RtcTest, RegisterCClearsOnReadAndDSaysValid) {
    cmos(RtcCmos::kRegC);
    EXPECT_EQ(cmos(RtcCmos::kRegC), 0);
    now += kNs;
    EXPECT_EQ(cmos(RtcCmos::kRegC), RtcCmos::kCUf);  // a second's update ended
    EXPECT_EQ(cmos(RtcCmos::kRegC), 0);
    EXPECT_EQ(cmos(RtcCmos::kRegD), RtcCmos::kDVrt);
    set_cmos(RtcCmos::kRegD, 0);
    EXPECT_EQ(cmos(RtcCmos::kRegD), RtcCmos::kDVrt);
}

TEST_F(RtcTest, NmiMaskBitDoesNotChangeTheIndex) {
    set_cmos(0x40, 0x5A);
    EXPECT_FALSE(rtc.nmi_masked());
    EXPECT_EQ(cmos(0x80 | 0x40), 0x5A);  // index 0xC0 selects register 0x40
    EXPECT_TRUE(rtc.nmi_masked());
    EXPECT_EQ(cmos(0x80 | RtcCmos::kYear), 0x24);
}

TEST_F(RtcTest, CmosRamPersists) {
    for (unsigned i = 0x0E; i < 0x80; ++i)
        if (i != RtcCmos::kCentury) set_cmos(uint8_t(i), uint8_t(i * 3));
    now += 100 * kNs;
    for (unsigned i = 0x0E; i < 0x80; ++i) {
        if (i != RtcCmos::kCentury) {
            EXPECT_EQ(cmos(uint8_t(i)), uint8_t(i * 3)) << i;
        }
    }
    uint8_t b = 0;
    rtc.read(0, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 0xFF);  // the index port is write-only
}

TEST_F(RtcTest, SingleFieldWriteKeepsTheClockRunning) {
    set_cmos(RtcCmos::kMinutes, 0x10);
    EXPECT_EQ(cmos(RtcCmos::kMinutes), 0x10);
    now += 2 * kNs;
    EXPECT_EQ(cmos(RtcCmos::kSeconds), 0x00);  // 23:10:58 + 2 s
    EXPECT_EQ(cmos(RtcCmos::kMinutes), 0x11);
}

// Snapshots: the guest's time is its offset from the host's wall clock (QEMU's default
// -rtc base=utc), so a guest restored an hour later reads the time an hour on; the
// registers, the RAM, the selected index and the NMI mask come back as they were.
TEST_F(RtcTest, RestoredStateFollowsTheWallClockFromTheGuestsTime) {
    // The guest sets 1999-06-15 12:30:00 in binary 24-hour mode, an alarm and some RAM.
    set_cmos(RtcCmos::kRegB, RtcCmos::kBSet | RtcCmos::kB24Hour | RtcCmos::kBBinary);
    set_cmos(RtcCmos::kSeconds, 0);
    set_cmos(RtcCmos::kMinutes, 30);
    set_cmos(RtcCmos::kHours, 12);
    set_cmos(RtcCmos::kDayOfMonth, 15);
    set_cmos(RtcCmos::kMonth, 6);
    set_cmos(RtcCmos::kYear, 99);
    set_cmos(RtcCmos::kCentury, 19);
    set_cmos(RtcCmos::kRegB, RtcCmos::kB24Hour | RtcCmos::kBBinary);
    set_cmos(0x01, 15);  // alarm seconds, minutes, hours
    set_cmos(0x03, 45);
    set_cmos(0x05, 13);
    set_cmos(RtcCmos::kRegA, 0x2F);  // another periodic rate
    set_cmos(0x40, 0x5A);
    cmos(RtcCmos::kRegC);  // flags read at this second
    cmos(0x80 | 0x41);     // NMI masked, register 0x41 selected
    StateSaver s;
    rtc.save_state(s);
    const StateJson j = s.take();

    now += 3600 * kNs;  // restored an hour later by the host's clock
    RtcCmos rtc2([this] { return now.load(); });
    StateLoader l(j, "devices.rtc");
    ASSERT_TRUE(rtc2.restore_state(l)) << rtc2.restore_state(l).error().message;
    EXPECT_TRUE(rtc2.nmi_masked());
    uint8_t v = 0;
    rtc2.read(1, std::span<uint8_t>(&v, 1));  // the data port reads the selected register
    EXPECT_EQ(v, cmos(0x41));
    auto cmos2 = [&](uint8_t index) {
        uint8_t b = index;
        rtc2.write(0, std::span<const uint8_t>(&b, 1));
        rtc2.read(1, std::span<uint8_t>(&b, 1));
        return b;
    };
    EXPECT_EQ(cmos2(RtcCmos::kRegC), RtcCmos::kCUf);  // seconds passed since the last read
    EXPECT_EQ(cmos2(RtcCmos::kHours), 13);
    EXPECT_EQ(cmos2(RtcCmos::kMinutes), 30);
    EXPECT_EQ(cmos2(RtcCmos::kSeconds), 0);
    EXPECT_EQ(cmos2(RtcCmos::kYear), 99);
    EXPECT_EQ(cmos2(RtcCmos::kCentury), 19);
    for (unsigned i = 0; i < 0x80; ++i) {
        if (i != RtcCmos::kRegC) {
            EXPECT_EQ(cmos2(uint8_t(i)), cmos(uint8_t(i))) << i;
        }
    }
    EXPECT_EQ(cmos2(RtcCmos::kRegA), 0x2F);
    EXPECT_EQ(cmos2(0x03), 45);
    EXPECT_EQ(cmos2(0x40), 0x5A);
    now += 2 * kNs;  // and it keeps running
    EXPECT_EQ(cmos2(RtcCmos::kSeconds), 2);
}

// Saved while the guest was setting the time (SET on): the fields it wrote stay frozen and
// take effect when it clears SET.
TEST_F(RtcTest, RestoredWhileSetKeepsTheFieldsFrozen) {
    set_cmos(RtcCmos::kRegB, RtcCmos::kBSet | RtcCmos::kB24Hour);
    set_cmos(RtcCmos::kMinutes, 0x07);
    StateSaver s;
    rtc.save_state(s);
    const StateJson j = s.take();
    now += 600 * kNs;
    RtcCmos rtc2([this] { return now.load(); });
    StateLoader l(j, "devices.rtc");
    ASSERT_TRUE(rtc2.restore_state(l));
    auto set2 = [&](uint8_t index, uint8_t value) {
        rtc2.write(0, std::span<const uint8_t>(&index, 1));
        rtc2.write(1, std::span<const uint8_t>(&value, 1));
    };
    auto cmos2 = [&](uint8_t index) {
        uint8_t b = index;
        rtc2.write(0, std::span<const uint8_t>(&b, 1));
        rtc2.read(1, std::span<uint8_t>(&b, 1));
        return b;
    };
    EXPECT_EQ(cmos2(RtcCmos::kMinutes), 0x07);
    EXPECT_EQ(cmos2(RtcCmos::kSeconds), 0x58);
    set2(RtcCmos::kRegB, RtcCmos::kB24Hour);
    now += kNs;
    EXPECT_EQ(cmos2(RtcCmos::kSeconds), 0x59);
    EXPECT_EQ(cmos2(RtcCmos::kMinutes), 0x07);
    EXPECT_EQ(cmos2(RtcCmos::kHours), 0x23);
}

TEST_F(RtcTest, RestoreRefusesADamagedStateNamingTheField) {
    StateSaver s;
    rtc.save_state(s);
    const StateJson j = s.take();
    auto refused = [this](const StateJson& bad) {
        RtcCmos r([this] { return now.load(); });
        StateLoader l(bad, "devices.rtc");
        const Status st = r.restore_state(l);
        return st ? std::string("accepted") : st.error().message;
    };
    StateJson bad = j;
    bad["index"] = 0x80;
    EXPECT_EQ(refused(bad), "devices.rtc.index: 128 is not a register (0..127)");
    bad = j;
    bad["ram"].erase(127);
    EXPECT_EQ(refused(bad), "devices.rtc.ram: expected 128 elements, found 127");
    bad = j;
    bad["offset_s"] = int64_t(-1) << 62;
    EXPECT_NE(refused(bad).find("devices.rtc.offset_s: "), std::string::npos) << refused(bad);
    bad = j;
    bad.erase("nmi_masked");
    EXPECT_EQ(refused(bad), "devices.rtc.nmi_masked: missing");
}

}  // namespace
}  // namespace kv
