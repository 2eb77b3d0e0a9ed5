// A snapshot's memory part (vmm/snapshot/memory_image.h): zero pages left out, a round
// trip restores every byte, and every kind of damage is refused, naming the part and the
// check, before anything is copied.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vmm/snapshot/memory_image.h"

namespace kv::snapshot {
namespace {

constexpr uint64_t kPage = kImagePageSize;

// Two ranges of "guest RAM" (at 0 and at 1 MiB), a few pages written.
struct Ram {
    std::vector<uint8_t> low = std::vector<uint8_t>(16 * kPage),
                         high = std::vector<uint8_t>(8 * kPage);
    std::vector<RamSpan> spans() const { return {{0, low}, {1 << 20, high}}; }
    RamTarget target() {
        return [this](uint64_t gpa, uint64_t bytes) -> Result<uint8_t*> {
            if (gpa + bytes <= low.size()) return low.data() + gpa;
            if (gpa >= (1 << 20) && gpa - (1 << 20) + bytes <= high.size())
                return high.data() + (gpa - (1 << 20));
            return Error{"not guest RAM"};
        };
    }
};

Ram written() {
    Ram r;
    std::memset(r.low.data() + 2 * kPage, 0x11, kPage);
    std::memset(r.low.data() + 3 * kPage, 0x22, kPage);  // a run of two
    r.low[9 * kPage + 100] = 0x33;                       // one byte makes a page non-zero
    std::memset(r.high.data() + 7 * kPage, 0x44, kPage);
    return r;
}

void put64(std::vector<uint8_t>& v, size_t at, uint64_t x) {
    std::memcpy(v.data() + at, &x, 8);
}

TEST(SnapshotMemory, RoundTripLeavesZeroPagesOut) {
    Ram src = written();
    MemoryImageInfo info;
    const std::vector<uint8_t> image = encode_memory_image(src.spans(), &info);
    EXPECT_EQ(info.pages, 4u);
    EXPECT_EQ(info.zero_pages, 20u);
    // Header, three runs (2-3, 9, high 7), four pages.
    EXPECT_EQ(image.size(), 24 + 3 * 16 + 4 * kPage);
    Ram dst;
    std::memset(dst.low.data() + 5 * kPage, 0x55, kPage);  // not in the image: left alone
    auto r = decode_memory_image(image, "memory-node-0", dst.target());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->pages, 4u);
    std::memset(dst.low.data() + 5 * kPage, 0, kPage);
    EXPECT_EQ(dst.low, src.low);
    EXPECT_EQ(dst.high, src.high);
}

TEST(SnapshotMemory, AnEmptyGuestIsAHeader) {
    Ram src;
    const std::vector<uint8_t> image = encode_memory_image(src.spans());
    EXPECT_EQ(image.size(), 24u);
    Ram dst;
    EXPECT_TRUE(decode_memory_image(image, "m", dst.target()));
}

// Each damage refused with its message; the destination untouched.
TEST(SnapshotMemory, EveryDamageIsRefusedBeforeAnythingIsCopied) {
    Ram src = written();
    const std::vector<uint8_t> good = encode_memory_image(src.spans());
    struct Case {
        const char* what;
        std::vector<uint8_t> image;
        const char* message;
    };
    std::vector<Case> cases;
    auto damaged = [&](const char* what, const char* message, auto change) {
        std::vector<uint8_t> v = good;
        change(v);
        cases.push_back({what, std::move(v), message});
    };
    damaged("short", "shorter than its header", [](auto& v) { v.resize(10); });
    damaged("magic", "not a memory image (magic)", [](auto& v) { v[0] ^= 1; });
    damaged("newer", "is newer than this build reads", [](auto& v) { v[4] = 2; });
    damaged("unknown", "unknown memory image version 0", [](auto& v) { v[4] = 0; });
    damaged("page size", "page size 8192, not 4096", [](auto& v) { v[9] = 0x20; });
    damaged("truncated", "(truncated or trailing bytes)", [](auto& v) { v.pop_back(); });
    damaged("trailing", "(truncated or trailing bytes)", [](auto& v) { v.push_back(0); });
    damaged("huge count", "(truncated or trailing bytes)",
            [](auto& v) { put64(v, 16, uint64_t(1) << 62); });
    damaged("unaligned", "run 0: address not page-aligned", [](auto& v) { put64(v, 24, 0x2001); });
    damaged("zero run", "run 1: page count out of range", [](auto& v) {
        put64(v, 24 + 16 + 8, 0);
        put64(v, 24 + 8, 3);  // the total still adds up
    });
    damaged("overlap", "run 1: overlaps or precedes the run before it",
            [](auto& v) { put64(v, 24 + 16, 3 * kPage); });
    damaged("outside", "run 2: not guest RAM", [](auto& v) { put64(v, 24 + 32, 2 << 20); });
    for (const Case& c : cases) {
        Ram dst;
        auto r = decode_memory_image(c.image, "memory-node-0", dst.target());
        ASSERT_FALSE(r) << c.what;
        EXPECT_NE(r.error().message.find("part memory-node-0: "), std::string::npos) << c.what;
        EXPECT_NE(r.error().message.find(c.message), std::string::npos)
            << c.what << ": " << r.error().message;
        EXPECT_EQ(dst.low, Ram().low) << c.what << ": copied before refusing";
        EXPECT_EQ(dst.high, Ram().high) << c.what << ": copied before refusing";
    }
}

}  // namespace
}  // namespace kv::snapshot
