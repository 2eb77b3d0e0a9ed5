#include <gtest/gtest.h>

#include "vmm/cmdline.h"

TEST(Cmdline, AddsParametersBeforeInitArguments) {
    EXPECT_EQ(kv::add_param("console=ttyS0 -- echo hi", "x=1"), "console=ttyS0 x=1 -- echo hi");
    EXPECT_EQ(kv::add_param("console=ttyS0", "x=1"), "console=ttyS0 x=1");
    EXPECT_EQ(kv::add_param("-- echo", "x=1"), "x=1 -- echo");
    EXPECT_EQ(kv::add_param("", "x=1"), "x=1");
}

TEST(Cmdline, FindsOnlyKernelParameters) {
    EXPECT_TRUE(kv::has_param("a tsc_early_khz=5 -- b", "tsc_early_khz"));
    EXPECT_TRUE(kv::has_param("tsc_early_khz=5", "tsc_early_khz"));
    EXPECT_FALSE(kv::has_param("a -- tsc_early_khz=5", "tsc_early_khz"));
    EXPECT_FALSE(kv::has_param("xtsc_early_khz=1", "tsc_early_khz"));
    EXPECT_FALSE(kv::has_param("tsc_early_khz_other=1", "tsc_early_khz"));
}
