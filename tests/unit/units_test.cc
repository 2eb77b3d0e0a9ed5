#include "base/units.h"

#include <gtest/gtest.h>

TEST(ParseSize, AcceptsUnits) {
    EXPECT_EQ(kv::parse_size("4096"), 4096u);
    EXPECT_EQ(kv::parse_size("512M"), 512ull << 20);
    EXPECT_EQ(kv::parse_size("2G"), 2ull << 30);
    EXPECT_EQ(kv::parse_size("2GiB"), 2ull << 30);
    EXPECT_EQ(kv::parse_size("64k"), 64ull << 10);
}

TEST(ParseSize, RejectsGarbage) {
    EXPECT_FALSE(kv::parse_size(""));
    EXPECT_FALSE(kv::parse_size("M"));
    EXPECT_FALSE(kv::parse_size("12X"));
    EXPECT_FALSE(kv::parse_size("-1G"));
    EXPECT_FALSE(kv::parse_size("99999999999999999999"));
    EXPECT_FALSE(kv::parse_size("20000000000T"));
}
