// ACPI PM registers: PM timer rate and wrap, SCI_EN, S5, write-1-to-clear, SCI level,
// snapshots.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/device_state.h"

namespace kv {
namespace {

class FakeIrqChip : public IrqChip {
  public:
    void set_irq(uint32_t gsi, bool level) override { events.push_back({gsi, level}); }
    bool level() const { return !events.empty() && events.back().second; }
    std::vector<std::pair<uint32_t, bool>> events;
};

class AcpiPmTest : public ::testing::Test {
  protected:
    AcpiPmTest()
        : pm(
              IrqLine(&chip, 9), [this] { ++power_offs; }, [this] { return now.load(); }) {}
    uint32_t in(uint64_t port, size_t width) {
        uint8_t b[4] = {};
        pm.read(port - AcpiPm::kBase, std::span<uint8_t>(b, width));
        return uint32_t(load_le(std::span<const uint8_t>(b, width)));
    }
    void out(uint64_t port, size_t width, uint32_t v) {
        uint8_t b[4];
        store_le(std::span<uint8_t>(b, width), v);
        pm.write(port - AcpiPm::kBase, std::span<const uint8_t>(b, width));
    }

    FakeIrqChip chip;
    int power_offs = 0;
    std::atomic<uint64_t> now{5'000'000'000};
    AcpiPm pm;
};

TEST_F(AcpiPmTest, TimerCountsAt3579545HzAndWrapsAt24Bits) {
    const uint64_t t0 = now;
    EXPECT_EQ(in(0x608, 4), 0u);
    now = t0 + 1'000'000'000;
    EXPECT_EQ(in(0x608, 4), 3'579'545u);
    now = t0 + 1'000;  // 1 us = 3.58 ticks
    EXPECT_EQ(in(0x608, 4), 3u);
    // 2^24 ticks is 4.687 s: the counter wraps, the upper byte stays 0.
    now = t0 + ticks_to_ns((1u << 24) + 10, AcpiPm::kTimerHz);
    EXPECT_EQ(in(0x608, 4), 10u);
    // Reads of any width see the same counter.
    now = t0 + ticks_to_ns(0x123456, AcpiPm::kTimerHz);
    EXPECT_EQ(in(0x608, 2), 0x3456u);
    EXPECT_EQ(in(0x60A, 1), 0x12u);
    EXPECT_EQ(in(0x60B, 1), 0x00u);
}

// A counter with an explicit origin (every node of a multi-node guest counts from the
// guest TSC's zero) reads what timer_at() computes for the time since that origin.
TEST(AcpiPmOrigin, CountsFromTheGivenOriginAsTimerAtDoes) {
    FakeIrqChip chip;
    uint64_t now = 7'000'000'000;
    AcpiPm pm(
        IrqLine(&chip, 9), [] {}, [&] { return now; }, 2'000'000'000);
    uint8_t b[4] = {};
    pm.read(AcpiPm::kPmTmrOffset, b);
    EXPECT_EQ(load_le(std::span<const uint8_t>(b, 4)), AcpiPm::timer_at(5'000'000'000));
    EXPECT_EQ(AcpiPm::timer_at(5'000'000'000), uint32_t((5 * 3'579'545ull) & 0xFFFFFF));
    EXPECT_EQ(AcpiPm::timer_at(1'000'000'000), 3'579'545u);
}

TEST_F(AcpiPmTest, TimerStatusSetWhenBit23Toggles) {
    EXPECT_EQ(in(0x600, 2) & AcpiPm::kTmrSts, 0u);
    now += ticks_to_ns(1u << 23, AcpiPm::kTimerHz);
    EXPECT_EQ(in(0x600, 2) & AcpiPm::kTmrSts, AcpiPm::kTmrSts);
    out(0x600, 2, AcpiPm::kTmrSts);
    EXPECT_EQ(in(0x600, 2) & AcpiPm::kTmrSts, 0u);
}

TEST_F(AcpiPmTest, SciEnAlwaysReadsOne) {
    EXPECT_EQ(in(0x604, 2) & AcpiPm::kSciEn, AcpiPm::kSciEn);
    out(0x604, 2, 0);
    EXPECT_EQ(in(0x604, 2) & AcpiPm::kSciEn, AcpiPm::kSciEn);
}

TEST_F(AcpiPmTest, SlpEnWithS5PowersOffExactlyOnce) {
    // Linux writes SLP_TYP first, then SLP_TYP | SLP_EN.
    out(0x604, 2, 5u << 10 | AcpiPm::kSciEn);
    EXPECT_EQ(power_offs, 0);
    EXPECT_EQ(in(0x604, 2), 5u << 10 | AcpiPm::kSciEn);
    out(0x604, 2, 5u << 10 | AcpiPm::kSlpEn | AcpiPm::kSciEn);
    EXPECT_EQ(power_offs, 1);
    // SLP_EN is write-only.
    EXPECT_EQ(in(0x604, 2) & AcpiPm::kSlpEn, 0u);
}

TEST_F(AcpiPmTest, OtherSleepTypesAreIgnored) {
    out(0x604, 2, 3u << 10 | AcpiPm::kSlpEn);
    out(0x605, 1, (1u << 2 | AcpiPm::kSlpEn >> 8));
    EXPECT_EQ(power_offs, 0);
    // A byte write to the high half works for S5 as well.
    out(0x605, 1, (5u << 2) | (AcpiPm::kSlpEn >> 8));
    EXPECT_EQ(power_offs, 1);
}

TEST_F(AcpiPmTest, StatusIsWriteOneToClearAndDrivesSci) {
    pm.press_power_button();
    EXPECT_EQ(in(0x600, 2) & AcpiPm::kPwrBtnSts, AcpiPm::kPwrBtnSts);
    EXPECT_FALSE(chip.level());  // not enabled
    out(0x602, 2, AcpiPm::kPwrBtnSts);
    EXPECT_EQ(in(0x602, 2), AcpiPm::kPwrBtnSts);
    EXPECT_TRUE(chip.level());
    out(0x600, 2, 0);  // writing 0 clears nothing
    EXPECT_TRUE(chip.level());
    out(0x600, 2, AcpiPm::kPwrBtnSts);
    EXPECT_EQ(in(0x600, 2) & AcpiPm::kPwrBtnSts, 0u);
    EXPECT_FALSE(chip.level());
    for (auto& e : chip.events) EXPECT_EQ(e.first, 9u);
}

TEST_F(AcpiPmTest, Gpe0StatusAndEnable) {
    pm.set_gpe(9);
    EXPECT_EQ(in(0x621, 1), 0x02u);
    EXPECT_FALSE(chip.level());
    out(0x625, 1, 0x02);
    EXPECT_EQ(in(0x624, 4), 0x200u);
    EXPECT_TRUE(chip.level());
    out(0x620, 4, 0x200);  // write 1 to clear
    EXPECT_EQ(in(0x620, 4), 0u);
    EXPECT_FALSE(chip.level());
}

TEST_F(AcpiPmTest, GapsReadAllOnes) {
    EXPECT_EQ(in(0x610, 4), 0xFFFFFFFFu);
    EXPECT_EQ(in(0x606, 2), 0xFFFFu);
}

// Snapshots: a restored PM block drives SCI as the saved one did, its timer goes on from
// the saved origin (not from the restored device's construction), and TMR_STS stays clear
// until bit 23 toggles again.
TEST_F(AcpiPmTest, RestoredStateDrivesSciAndKeepsTheTimer) {
    now += ticks_to_ns(1u << 23, AcpiPm::kTimerHz);
    out(0x600, 2, in(0x600, 2));  // TMR_STS seen and cleared
    out(0x602, 2, AcpiPm::kPwrBtnSts);
    pm.press_power_button();
    pm.set_gpe(3);
    out(0x624, 4, 0x0100'0008);  // GPE 3 (pending) and 24 enabled
    out(0x604, 2, 3u << 10);     // SLP_TYP 3, not asleep
    ASSERT_TRUE(chip.level());
    StateSaver s;
    pm.save_state(s);
    const StateJson j = s.take();

    now += 777'000'000;  // the restored device is made later, as a restoring VMM's is
    FakeIrqChip chip2;
    AcpiPm pm2(
        IrqLine(&chip2, 9), [] {}, [this] { return now.load(); });
    now -= 777'000'000;  // the clock reads at the restore what it read at the save
    StateLoader l(j, "devices.acpi-pm");
    ASSERT_TRUE(pm2.restore_state(l)) << pm2.restore_state(l).error().message;
    ASSERT_EQ(chip2.events.size(), 1u);
    EXPECT_EQ(chip2.events.back(), (std::pair<uint32_t, bool>{9, true}));
    auto in2 = [&](uint64_t port, size_t width) {
        uint8_t b[4] = {};
        pm2.read(port - AcpiPm::kBase, std::span<uint8_t>(b, width));
        return uint32_t(load_le(std::span<const uint8_t>(b, width)));
    };
    auto out2 = [&](uint64_t port, size_t width, uint32_t v) {
        uint8_t b[4];
        store_le(std::span<uint8_t>(b, width), v);
        pm2.write(port - AcpiPm::kBase, std::span<const uint8_t>(b, width));
    };
    EXPECT_EQ(in2(0x608, 4), in(0x608, 4));
    EXPECT_EQ(in2(0x608, 4), AcpiPm::timer_at(ticks_to_ns(1u << 23, AcpiPm::kTimerHz)));
    EXPECT_EQ(in2(0x600, 2), AcpiPm::kPwrBtnSts);  // no TMR_STS
    EXPECT_EQ(in2(0x602, 2), AcpiPm::kPwrBtnSts);
    EXPECT_EQ(in2(0x604, 2), 3u << 10 | AcpiPm::kSciEn);
    EXPECT_EQ(in2(0x620, 4), 0x8u);
    EXPECT_EQ(in2(0x624, 4), 0x0100'0008u);
    now += 1'000'000;
    EXPECT_EQ(in2(0x608, 4), in(0x608, 4));
    // The line follows the restored registers: both events must go before SCI drops.
    out2(0x600, 2, AcpiPm::kPwrBtnSts);
    EXPECT_TRUE(chip2.level());
    out2(0x620, 4, 0x8);
    EXPECT_FALSE(chip2.level());
    now += ticks_to_ns(1u << 23, AcpiPm::kTimerHz);
    EXPECT_EQ(in2(0x600, 2), AcpiPm::kTmrSts);
}

TEST_F(AcpiPmTest, RestoredStateWithNothingPendingDrivesSciLow) {
    StateSaver s;
    pm.save_state(s);
    const StateJson j = s.take();
    FakeIrqChip chip2;
    AcpiPm pm2(
        IrqLine(&chip2, 9), [] {}, [this] { return now.load(); });
    StateLoader l(j, "devices.acpi-pm");
    ASSERT_TRUE(pm2.restore_state(l));
    ASSERT_EQ(chip2.events.size(), 1u);
    EXPECT_EQ(chip2.events.back(), (std::pair<uint32_t, bool>{9, false}));
}

TEST_F(AcpiPmTest, RestoreRefusesADamagedStateNamingTheField) {
    StateSaver s;
    pm.save_state(s);
    const StateJson j = s.take();
    auto refused = [this](const StateJson& bad) {
        FakeIrqChip c;
        AcpiPm p(
            IrqLine(&c, 9), [] {}, [this] { return now.load(); });
        StateLoader l(bad, "devices.acpi-pm");
        const Status st = p.restore_state(l);
        return st ? std::string("accepted") : st.error().message;
    };
    StateJson bad = j;
    bad["pm1_cnt"] = AcpiPm::kSciEn | AcpiPm::kSlpEn;
    EXPECT_EQ(refused(bad),
              "devices.acpi-pm.pm1_cnt: SCI_EN clear or a write-only bit (SLP_EN, GBL_RLS) set");
    bad = j;
    bad["pm1_en"] = 0x10000;
    EXPECT_EQ(refused(bad), "devices.acpi-pm.pm1_en: 65536 is out of range for a 16-bit field");
    bad = j;
    bad.erase("origin_ns");
    EXPECT_EQ(refused(bad), "devices.acpi-pm.origin_ns: missing");
}

}  // namespace
}  // namespace kv
