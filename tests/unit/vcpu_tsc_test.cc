// Guest TSC frequency: KVM's figure is kept only when a measurement agrees within 1%.
#include <gtest/gtest.h>

#include "vcpu/tsc.h"

namespace kv {
namespace {

TEST(Tsc, AgreementWithinOnePercentKeepsKvmFigure) {
    EXPECT_EQ(choose_tsc_khz(2'000'000, 2'000'000), 2'000'000u);
    EXPECT_EQ(choose_tsc_khz(2'000'000, 2'010'000), 2'000'000u);
    EXPECT_EQ(choose_tsc_khz(2'000'000, 1'985'000), 2'000'000u);
    EXPECT_EQ(choose_tsc_khz(2'000'000, 2'020'000), 2'000'000u);  // exactly 1%
    EXPECT_EQ(choose_tsc_khz(2'000'000, 1'980'000), 2'000'000u);
}

TEST(Tsc, DisagreementTakesMeasurement) {
    EXPECT_EQ(choose_tsc_khz(2'000'000, 2'020'001), 2'020'001u);
    EXPECT_EQ(choose_tsc_khz(2'000'000, 1'979'999), 1'979'999u);
    EXPECT_EQ(choose_tsc_khz(1'000'000, 3'100'000), 3'100'000u);
    EXPECT_EQ(choose_tsc_khz(3'100'000, 1'000'000), 1'000'000u);
}

TEST(Tsc, ZeroFallsBackToTheOther) {
    EXPECT_EQ(choose_tsc_khz(0, 2'500'000), 2'500'000u);
    EXPECT_EQ(choose_tsc_khz(2'500'000, 0), 2'500'000u);
}

TEST(Tsc, MeasurementIsPlausible) {
    const uint64_t khz = measure_tsc_khz();
    EXPECT_GE(khz, 100'000u);     // 100 MHz
    EXPECT_LE(khz, 10'000'000u);  // 10 GHz
}

}  // namespace
}  // namespace kv
