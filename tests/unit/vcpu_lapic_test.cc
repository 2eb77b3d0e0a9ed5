// User-space LAPIC: reset values, software enable, interrupt priority (TPR/PPR), IRR/ISR
// and EOI, ICR sends, addressing updates, and the timer driven with explicit times.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "vcpu/lapic.h"

namespace kv {
namespace {

constexpr uint32_t kId = 0x20, kVer = 0x30, kTpr = 0x80, kPpr = 0xA0, kEoi = 0xB0, kLdr = 0xD0,
                   kDfr = 0xE0, kSvr = 0xF0, kIsr = 0x100, kTmr = 0x180, kIrr = 0x200, kEsr = 0x280,
                   kIcrLo = 0x300, kIcrHi = 0x310, kLvtTimer = 0x320, kLvtThermal = 0x330,
                   kLvtPerf = 0x340, kLvtLint0 = 0x350, kLvtLint1 = 0x360, kLvtError = 0x370,
                   kTimerInit = 0x380, kTimerCur = 0x390, kTimerDiv = 0x3E0;
constexpr uint32_t kMasked = 1u << 16, kPeriodic = 1u << 17, kSvrEnable = 1u << 8;
constexpr uint64_t kT0 = 1'000'000'000;  // an arbitrary CLOCK_MONOTONIC time

class LapicTest : public ::testing::Test {
  protected:
    LapicTest()
        : apic(3, 5,
               Lapic::Callbacks{
                   [this](const InterruptMessage& m) { sent.push_back(m); },
                   [this](uint8_t v) { eois.push_back(v); },
                   [this] { ++addressing_calls; },
               }) {}

    uint32_t rd(uint32_t off, uint64_t now = kT0) { return apic.read(off, now); }
    void wr(uint32_t off, uint32_t v, uint64_t now = kT0) { apic.write(off, v, now); }
    void enable() { wr(kSvr, 0x1FF); }
    bool bit_in(uint32_t bank, uint8_t vec) {
        return rd(bank + (vec / 32) * 0x10) & (1u << (vec % 32));
    }
    // Timer at vector 0x40 with the given LVT mode bits, divide encoding and count.
    void start_timer(uint32_t lvt_extra, uint32_t div, uint32_t count, uint64_t now = kT0) {
        wr(kLvtTimer, 0x40 | lvt_extra, now);
        wr(kTimerDiv, div, now);
        wr(kTimerInit, count, now);
    }
    // The CPU takes and finishes the pending interrupt.
    void take_and_eoi(uint8_t vec) {
        apic.ack(vec);
        wr(kEoi, 0);
    }

    std::vector<InterruptMessage> sent;
    std::vector<uint8_t> eois;
    int addressing_calls = 0;
    Lapic apic;
};

TEST_F(LapicTest, ResetValues) {
    EXPECT_EQ(rd(kId), 5u << 24);
    EXPECT_EQ(rd(kVer), 0x00050014u);
    EXPECT_EQ(rd(kSvr), 0xFFu);
    EXPECT_EQ(rd(kDfr), 0xFFFFFFFFu);
    EXPECT_EQ(rd(kLdr), 0u);
    EXPECT_EQ(rd(kTpr), 0u);
    EXPECT_EQ(rd(kPpr), 0u);
    EXPECT_EQ(rd(kEsr), 0u);
    for (uint32_t lvt : {kLvtTimer, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError})
        EXPECT_EQ(rd(lvt), kMasked) << std::hex << lvt;
    for (uint32_t i = 0; i < 8; ++i) {
        EXPECT_EQ(rd(kIsr + i * 0x10), 0u);
        EXPECT_EQ(rd(kTmr + i * 0x10), 0u);
        EXPECT_EQ(rd(kIrr + i * 0x10), 0u);
    }
    EXPECT_EQ(rd(kTimerInit), 0u);
    EXPECT_EQ(rd(kTimerCur), 0u);
    EXPECT_EQ(apic.timer_deadline(), 0u);
    auto a = apic.addressing();
    EXPECT_EQ(a.apic_id, 5);
    EXPECT_EQ(a.ldr, 0);
    EXPECT_TRUE(a.flat);
    EXPECT_FALSE(a.enabled);
}

TEST_F(LapicTest, SoftwareDisabledDropsInterruptsUntilSvrEnable) {
    EXPECT_FALSE(apic.accept(0x40, false));
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    enable();
    EXPECT_TRUE(apic.addressing().enabled);
    EXPECT_TRUE(apic.accept(0x40, false));
    EXPECT_TRUE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x40));
}

TEST_F(LapicTest, LvtWritesStayMaskedWhileDisabled) {
    wr(kLvtTimer, 0x40);
    EXPECT_EQ(rd(kLvtTimer), 0x40u | kMasked);
    enable();
    wr(kLvtTimer, 0x40);
    EXPECT_EQ(rd(kLvtTimer), 0x40u);
    wr(kSvr, 0xFF);  // disabling masks every LVT
    EXPECT_EQ(rd(kLvtTimer), 0x40u | kMasked);
}

TEST_F(LapicTest, HighestVectorFirst) {
    enable();
    apic.accept(0x41, false);
    apic.accept(0x4F, false);
    apic.accept(0x31, false);
    EXPECT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x4F));
}

TEST_F(LapicTest, PendingVectorRespectsTpr) {
    enable();
    apic.accept(0x45, false);
    apic.accept(0x31, false);
    wr(kTpr, 0x50);
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    wr(kTpr, 0x40);  // same class as 0x45: still blocked
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    EXPECT_EQ(rd(kPpr), 0x40u);
    wr(kTpr, 0x3F);
    EXPECT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x45));
    apic.set_tpr(0x60);
    EXPECT_EQ(apic.tpr(), 0x60);
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
}

TEST_F(LapicTest, InServiceClassBlocksSameAndLowerClasses) {
    enable();
    apic.accept(0x45, false);
    apic.accept(0x31, false);
    ASSERT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x45));
    apic.ack(0x45);
    EXPECT_FALSE(bit_in(kIrr, 0x45));
    EXPECT_TRUE(bit_in(kIsr, 0x45));
    EXPECT_EQ(rd(kPpr), 0x40u);
    EXPECT_EQ(apic.pending_vector(), std::nullopt);  // 0x31 is below the in-service class
    apic.accept(0x4A, false);
    EXPECT_EQ(apic.pending_vector(), std::nullopt);  // same class as in service
    apic.accept(0x52, false);
    EXPECT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x52));
}

TEST_F(LapicTest, EoiRetiresHighestInService) {
    enable();
    apic.accept(0x45, false);
    apic.ack(0x45);
    apic.accept(0x52, false);
    apic.ack(0x52);
    apic.accept(0x31, false);
    wr(kEoi, 0);
    EXPECT_FALSE(bit_in(kIsr, 0x52));
    EXPECT_TRUE(bit_in(kIsr, 0x45));
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    wr(kEoi, 0);
    EXPECT_FALSE(bit_in(kIsr, 0x45));
    EXPECT_EQ(rd(kPpr), 0u);
    EXPECT_EQ(apic.pending_vector(), std::optional<uint8_t>(0x31));
    EXPECT_TRUE(eois.empty());  // all edge-triggered
}

TEST_F(LapicTest, EoiNotifiesOnlyLevelTriggeredVectors) {
    enable();
    apic.accept(0x61, true);
    EXPECT_TRUE(bit_in(kTmr, 0x61));
    apic.accept(0x72, false);
    EXPECT_FALSE(bit_in(kTmr, 0x72));
    apic.ack(0x72);
    wr(kEoi, 0);
    EXPECT_TRUE(eois.empty());
    apic.ack(0x61);
    wr(kEoi, 0);
    EXPECT_EQ(eois, std::vector<uint8_t>{0x61});
    wr(kEoi, 0);  // nothing in service: no notification
    EXPECT_EQ(eois.size(), 1u);
}

TEST_F(LapicTest, IcrWriteSendsDecodedMessage) {
    enable();
    wr(kIcrHi, 0x07000000);
    // Fixed, logical, level assert, vector 0xEC, delivery-status bit set by the writer.
    wr(kIcrLo, 0xEC | (1u << 11) | (1u << 12) | (1u << 14));
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].vector, 0xEC);
    EXPECT_EQ(sent[0].mode, DeliveryMode::Fixed);
    EXPECT_TRUE(sent[0].logical);
    EXPECT_EQ(sent[0].shorthand, Shorthand::None);
    EXPECT_EQ(sent[0].dest, 7u);
    EXPECT_EQ(sent[0].source_vcpu, 3u);
    EXPECT_EQ(rd(kIcrLo) & (1u << 12), 0u);  // delivery status: idle
    EXPECT_EQ(rd(kIcrLo), 0xECu | (1u << 11) | (1u << 14));
    EXPECT_EQ(rd(kIcrHi), 0x07000000u);

    // INIT, physical, to APIC 2; then a SIPI with the all-excluding-self shorthand.
    wr(kIcrHi, 0x02000000);
    wr(kIcrLo, (5u << 8) | (1u << 14) | (1u << 15));
    wr(kIcrLo, 0x9A | (6u << 8) | (3u << 18));
    ASSERT_EQ(sent.size(), 3u);
    EXPECT_EQ(sent[1].mode, DeliveryMode::Init);
    EXPECT_FALSE(sent[1].logical);
    EXPECT_TRUE(sent[1].assert);
    EXPECT_TRUE(sent[1].level_triggered);
    EXPECT_EQ(sent[1].dest, 2u);
    EXPECT_EQ(sent[2].mode, DeliveryMode::StartUp);
    EXPECT_EQ(sent[2].vector, 0x9A);
    EXPECT_EQ(sent[2].shorthand, Shorthand::AllExcludingSelf);

    wr(kIcrLo, 0x30 | (1u << 18));
    ASSERT_EQ(sent.size(), 4u);
    EXPECT_EQ(sent[3].shorthand, Shorthand::Self);
    wr(kIcrLo, 0x30 | (4u << 8) | (2u << 18));
    ASSERT_EQ(sent.size(), 5u);
    EXPECT_EQ(sent[4].mode, DeliveryMode::Nmi);
    EXPECT_EQ(sent[4].shorthand, Shorthand::AllIncludingSelf);
}

TEST_F(LapicTest, AddressingWritesNotifyAndAreReflected) {
    wr(kSvr, 0x1FF);
    EXPECT_EQ(addressing_calls, 1);
    EXPECT_TRUE(apic.addressing().enabled);
    wr(kId, 0x09000000);
    EXPECT_EQ(addressing_calls, 2);
    EXPECT_EQ(apic.addressing().apic_id, 9);
    EXPECT_EQ(rd(kId), 0x09000000u);
    wr(kLdr, 0x10000000);
    EXPECT_EQ(addressing_calls, 3);
    EXPECT_EQ(apic.addressing().ldr, 0x10);
    EXPECT_EQ(rd(kLdr), 0x10000000u);
    EXPECT_TRUE(apic.addressing().flat);
    wr(kDfr, 0x0FFFFFFF);  // cluster model
    EXPECT_EQ(addressing_calls, 4);
    EXPECT_FALSE(apic.addressing().flat);
    EXPECT_EQ(rd(kDfr), 0x0FFFFFFFu);
    wr(kDfr, 0xFFFFFFFF);
    EXPECT_EQ(addressing_calls, 5);
    EXPECT_TRUE(apic.addressing().flat);
    wr(kSvr, 0xFF);
    EXPECT_EQ(addressing_calls, 6);
    EXPECT_FALSE(apic.addressing().enabled);
}

struct DivideCase {
    uint32_t encoding, divisor;
};

class LapicDivideTest : public LapicTest, public ::testing::WithParamInterface<DivideCase> {};

TEST_P(LapicDivideTest, OneShotDeadlineIsCountTimesDivide) {
    const auto [enc, div] = GetParam();
    enable();
    start_timer(0, enc, 1000);
    EXPECT_EQ(rd(kTimerDiv), enc);
    EXPECT_EQ(apic.timer_deadline(), kT0 + 1000ull * div);
    EXPECT_EQ(rd(kTimerCur, kT0 + 250ull * div), 750u);
    EXPECT_EQ(rd(kTimerCur, kT0 + 999ull * div), 1u);
}

INSTANTIATE_TEST_SUITE_P(Encodings, LapicDivideTest,
                         ::testing::Values(DivideCase{0xB, 1}, DivideCase{0x0, 2},
                                           DivideCase{0x3, 16}, DivideCase{0xA, 128}),
                         [](const auto& info) {
                             return "Div" + std::to_string(info.param.divisor);
                         });

TEST_F(LapicTest, OneShotCountsDownFiresOnceAndStops) {
    enable();
    start_timer(0, 0xB, 1000);
    EXPECT_EQ(rd(kTimerInit), 1000u);
    EXPECT_EQ(rd(kTimerCur, kT0), 1000u);
    EXPECT_EQ(rd(kTimerCur, kT0 + 400), 600u);
    EXPECT_EQ(rd(kTimerCur, kT0 + 1000), 0u);
    EXPECT_EQ(rd(kTimerCur, kT0 + 50'000), 0u);

    EXPECT_EQ(apic.poll_timer(kT0 + 999), kT0 + 1000);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.poll_timer(kT0 + 1000), 0u);
    EXPECT_TRUE(bit_in(kIrr, 0x40));
    EXPECT_FALSE(bit_in(kTmr, 0x40));
    EXPECT_EQ(apic.timer_deadline(), 0u);
    take_and_eoi(0x40);
    EXPECT_EQ(apic.poll_timer(kT0 + 100'000), 0u);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(rd(kTimerCur, kT0 + 100'000), 0u);
}

TEST_F(LapicTest, LvtRewriteDoesNotRearmFiredOneShot) {
    enable();
    start_timer(0, 0xB, 1000);
    apic.poll_timer(kT0 + 1000);
    take_and_eoi(0x40);
    wr(kLvtTimer, 0x41, kT0 + 2000);  // new vector, still one-shot
    EXPECT_EQ(apic.timer_deadline(), 0u);
    apic.poll_timer(kT0 + 3000);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_FALSE(bit_in(kIrr, 0x41));
}

// "A fired one-shot stays stopped" (lapic.cc): also when the LVT is then switched to
// periodic mode; the count stays 0 until the initial count is written again.
TEST_F(LapicTest, FiredOneShotSwitchedToPeriodicStaysStopped) {
    enable();
    start_timer(0, 0xB, 1000);
    apic.poll_timer(kT0 + 1000);
    take_and_eoi(0x40);
    wr(kLvtTimer, 0x40 | kPeriodic, kT0 + 2000);
    EXPECT_EQ(apic.timer_deadline(), 0u);
    EXPECT_EQ(apic.poll_timer(kT0 + 5000), 0u);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(rd(kTimerCur, kT0 + 2500), 0u);
}

TEST_F(LapicTest, PeriodicReloadsAndCurrentCountWraps) {
    enable();
    start_timer(kPeriodic, 0xB, 100);
    EXPECT_EQ(apic.timer_deadline(), kT0 + 100);
    EXPECT_EQ(rd(kTimerCur, kT0 + 30), 70u);
    EXPECT_EQ(rd(kTimerCur, kT0 + 130), 70u);  // wrapped once, no poll needed
    EXPECT_EQ(rd(kTimerCur, kT0 + 199), 1u);

    EXPECT_EQ(apic.poll_timer(kT0 + 100), kT0 + 200);
    EXPECT_TRUE(bit_in(kIrr, 0x40));
    take_and_eoi(0x40);
    EXPECT_EQ(rd(kTimerCur, kT0 + 150), 50u);
    EXPECT_EQ(apic.poll_timer(kT0 + 199), kT0 + 200);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.poll_timer(kT0 + 200), kT0 + 300);
    EXPECT_TRUE(bit_in(kIrr, 0x40));
}

TEST_F(LapicTest, PeriodicMissedPeriodsGiveOneInterruptAndAFutureDeadline) {
    enable();
    start_timer(kPeriodic, 0xB, 100);
    const uint64_t late = kT0 + 1050;  // ten periods elapsed
    const uint64_t next = apic.poll_timer(late);
    EXPECT_GT(next, late);
    EXPECT_LE(next, late + 100);
    EXPECT_EQ(next, kT0 + 1100);  // the period grid is kept
    EXPECT_EQ(apic.timer_deadline(), next);
    EXPECT_TRUE(bit_in(kIrr, 0x40));
    take_and_eoi(0x40);
    // Nothing more is owed for the missed periods.
    EXPECT_EQ(apic.poll_timer(late), next);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    EXPECT_EQ(rd(kTimerCur, late), 50u);
}

TEST_F(LapicTest, MaskedTimerCountsButDoesNotInterrupt) {
    enable();
    start_timer(kMasked, 0xB, 1000);
    EXPECT_EQ(rd(kTimerCur, kT0 + 300), 700u);
    EXPECT_EQ(apic.timer_deadline(), kT0 + 1000);
    apic.poll_timer(kT0 + 1000);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
}

TEST_F(LapicTest, InitialCountZeroStopsTimer) {
    enable();
    start_timer(kPeriodic, 0xB, 1000);
    wr(kTimerInit, 0, kT0 + 500);
    EXPECT_EQ(apic.timer_deadline(), 0u);
    EXPECT_EQ(apic.poll_timer(kT0 + 5000), 0u);
    EXPECT_FALSE(bit_in(kIrr, 0x40));
    EXPECT_EQ(rd(kTimerCur, kT0 + 5000), 0u);
}

TEST_F(LapicTest, IllegalVectorSetsEsr) {
    enable();
    EXPECT_FALSE(apic.accept(5, false));
    EXPECT_FALSE(bit_in(kIrr, 5));
    EXPECT_NE(rd(kEsr) & (1u << 6), 0u);  // received illegal vector
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
}

TEST_F(LapicTest, ResetClearsStateButKeepsId) {
    enable();
    wr(kId, 0x0C000000);
    wr(kLdr, 0x04000000);
    wr(kDfr, 0x0FFFFFFF);
    wr(kTpr, 0x20);
    apic.accept(0x50, true);
    apic.ack(0x50);
    apic.accept(0x60, false);
    apic.accept(3, false);
    start_timer(kPeriodic, 0x3, 1000);
    wr(kLvtLint0, 0x700);

    apic.reset();
    EXPECT_EQ(rd(kId), 0x0Cu << 24);
    EXPECT_EQ(rd(kLdr), 0u);
    EXPECT_EQ(rd(kDfr), 0xFFFFFFFFu);
    EXPECT_EQ(rd(kSvr), 0xFFu);
    EXPECT_EQ(rd(kTpr), 0u);
    EXPECT_EQ(rd(kEsr), 0u);
    EXPECT_EQ(rd(kLvtTimer), kMasked);
    EXPECT_EQ(rd(kLvtLint0), kMasked);
    EXPECT_FALSE(bit_in(kIsr, 0x50));
    EXPECT_FALSE(bit_in(kTmr, 0x50));
    EXPECT_FALSE(bit_in(kIrr, 0x60));
    EXPECT_EQ(rd(kTimerInit), 0u);
    EXPECT_EQ(rd(kTimerDiv), 0u);
    EXPECT_EQ(apic.timer_deadline(), 0u);
    EXPECT_EQ(apic.pending_vector(), std::nullopt);
    auto a = apic.addressing();
    EXPECT_EQ(a.apic_id, 0x0C);
    EXPECT_EQ(a.ldr, 0);
    EXPECT_TRUE(a.flat);
    EXPECT_FALSE(a.enabled);
}

TEST_F(LapicTest, Lint0ExtInt) {
    EXPECT_TRUE(apic.lint0_extint());  // disabled APIC: virtual wire
    enable();
    EXPECT_FALSE(apic.lint0_extint());  // LINT0 masked
    wr(kLvtLint0, 0x700);
    EXPECT_TRUE(apic.lint0_extint());
    wr(kLvtLint0, 0x400);  // NMI
    EXPECT_FALSE(apic.lint0_extint());
}

}  // namespace
}  // namespace kv
