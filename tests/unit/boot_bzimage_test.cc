// BzImage::load: validation of the file against the 64-bit boot protocol.
#include <asm/bootparam.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/test_support.h"
#include "vmm/boot/bzimage.h"

namespace {

// A minimal image: 4 setup sectors plus the boot sector, a header, a 64 KiB payload.
std::vector<uint8_t> fake_bzimage(uint16_t version = 0x020F, uint16_t xloadflags = XLF_KERNEL_64) {
    constexpr size_t kSetup = 5 * 512, kPayload = 64 * 1024;
    std::vector<uint8_t> img(kSetup + kPayload);
    for (size_t i = kSetup; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 7);
    setup_header h{};
    h.setup_sects = 4;
    h.boot_flag = 0xAA55;
    h.jump = 0x66EB;  // jmp to 0x268: the end of a 2.15 header
    h.header = 0x53726448;
    h.version = version;
    h.syssize = kPayload / 16;
    h.loadflags = LOADED_HIGH;
    h.xloadflags = xloadflags;
    h.cmdline_size = 2047;
    h.initrd_addr_max = 0x7FFFFFFF;
    std::memcpy(img.data() + 0x1F1, &h, sizeof h);
    return img;
}

using kv::testing::TempFile;

TEST(BootBzImage, AcceptsValid64BitImage) {
    auto bytes = fake_bzimage();
    TempFile f(bytes);
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_TRUE(img.ok()) << img.error().message;
    EXPECT_EQ(img->protocol(), 0x020F);
    EXPECT_EQ(img->header().cmdline_size, 2047u);
    // The protected-mode part is everything after the 5 real-mode sectors.
    ASSERT_EQ(img->kernel().size(), bytes.size() - 5 * 512);
    EXPECT_EQ(0, std::memcmp(img->kernel().data(), bytes.data() + 5 * 512, img->kernel().size()));
    // The header bytes to copy run from 0x1F1 to where the jump at 0x200 points (0x268).
    EXPECT_EQ(img->header_bytes().size(), 0x268u - 0x1F1u);
}

TEST(BootBzImage, SetupSectsZeroMeansFour) {
    auto bytes = fake_bzimage();
    bytes[0x1F1] = 0;
    TempFile f(bytes);
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_TRUE(img.ok()) << img.error().message;
    EXPECT_EQ(img->kernel().size(), bytes.size() - 5 * 512);
}

TEST(BootBzImage, MissingFileNamesKernelKey) {
    auto img = kv::boot::BzImage::load("/nonexistent/vmlinuz");
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message,
              "kernel: cannot open /nonexistent/vmlinuz: No such file or directory");
}

TEST(BootBzImage, RejectsImageWithoutHdrSMagic) {
    auto bytes = fake_bzimage();
    std::memcpy(bytes.data() + 0x202, "ELF!", 4);
    TempFile f(bytes);
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message, "kernel: " + f.path() + " is not a bzImage");
}

TEST(BootBzImage, RejectsTinyFileAsNotABzImage) {
    TempFile f(std::vector<uint8_t>(100, 0));
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message, "kernel: " + f.path() + " is not a bzImage");
}

TEST(BootBzImage, RejectsProtocolOlderThan2_12) {
    TempFile f(fake_bzimage(0x020B));
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message,
              "kernel: " + f.path() + " uses boot protocol 2.11; 2.12 or later is needed");
}

TEST(BootBzImage, RejectsImageWithout64BitEntry) {
    TempFile f(fake_bzimage(0x020F, 0));
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_FALSE(img.ok());
    EXPECT_NE(img.error().message.find("kernel: " + f.path() + " has no 64-bit entry point"),
              std::string::npos)
        << img.error().message;
}

TEST(BootBzImage, RejectsTruncatedImage) {
    auto bytes = fake_bzimage();
    size_t full = bytes.size();
    bytes.resize(full - 100);
    TempFile f(bytes);
    auto img = kv::boot::BzImage::load(f.path());
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message, "kernel: " + f.path() + " is truncated (" +
                                       std::to_string(full - 100) + " bytes, its header needs " +
                                       std::to_string(full) + ")");
}

TEST(BootBzImage, DirectoryIsNotAKernel) {
    auto img = kv::boot::BzImage::load("/tmp");
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.error().message, "kernel: /tmp is not a regular file");
}

}  // namespace
