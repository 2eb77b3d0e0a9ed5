// load_linux(): the zero page, e820 map, initrd placement, command line, GDT, page tables
// and the BSP's entry registers, read back from guest memory.
#include <asm/bootparam.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "memory/guest_memory.h"
#include "tests/unit/test_support.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_loader.h"

namespace {

using kv::Gpa;
using kv::GuestMemory;
using namespace kv::boot;

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;
constexpr size_t kSetup = 5 * 512, kPayload = 64 * 1024;
constexpr uint32_t kInitSize = 32 * kMiB;  // kernel footprint: 16 MiB + 32 MiB = 48 MiB

struct FakeKernel {
    uint32_t initrd_addr_max = 0x7FFFFFFF;
    uint32_t cmdline_size = 2047;
};

std::vector<uint8_t> fake_bzimage(const FakeKernel& k = {}) {
    std::vector<uint8_t> img(kSetup + kPayload);
    for (size_t i = kSetup; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 13 + 1);
    setup_header h{};
    h.setup_sects = 4;
    h.boot_flag = 0xAA55;
    h.jump = 0x66EB;
    h.header = 0x53726448;
    h.version = 0x020F;
    h.syssize = kPayload / 16;
    h.loadflags = LOADED_HIGH | QUIET_FLAG;
    h.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
    h.cmdline_size = k.cmdline_size;
    h.initrd_addr_max = k.initrd_addr_max;
    h.kernel_alignment = 0x200000;
    h.relocatable_kernel = 1;
    h.pref_address = 0x1000000;
    h.init_size = kInitSize;
    std::memcpy(img.data() + 0x1F1, &h, sizeof h);
    return img;
}

using kv::testing::TempFile;

std::vector<uint8_t> pattern(size_t n) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + 5);
    return v;
}

boot_params read_zero_page(const GuestMemory& mem) {
    boot_params bp{};
    EXPECT_TRUE(mem.read_obj(Gpa(kBootParamsGpa), bp).ok());
    return bp;
}

struct E820 {
    uint64_t addr, size;
    uint32_t type;
    bool operator==(const E820&) const = default;
};

std::vector<E820> e820_of(const boot_params& bp) {
    std::vector<E820> v;
    for (unsigned i = 0; i < bp.e820_entries; ++i)
        v.push_back({bp.e820_table[i].addr, bp.e820_table[i].size, bp.e820_table[i].type});
    return v;
}

std::vector<E820> expected_low(uint64_t low_end) {
    return {{0, 0x9FC00, 1},
            {0x9FC00, 0x400, 2},
            {0xE0000, 0x20000, 2},
            {0x100000, low_end - 0x100000, 1}};
}

TEST(BootLinuxLoader, ZeroPageFieldsFor256MiB) {
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto kernel = fake_bzimage();
    TempFile kf(kernel);
    LinuxBootConfig cfg{kf.path(), "", "console=ttyS0 panic=-1", 0xE0000};
    auto info = load_linux(*mem, cfg);
    ASSERT_TRUE(info.ok()) << info.error().message;

    boot_params bp = read_zero_page(*mem);
    EXPECT_EQ(bp.hdr.header, 0x53726448u);  // the image's own header was copied
    EXPECT_EQ(bp.hdr.version, 0x020F);
    EXPECT_EQ(bp.hdr.init_size, kInitSize);
    EXPECT_EQ(bp.hdr.type_of_loader, 0xFF);
    EXPECT_TRUE(bp.hdr.loadflags & CAN_USE_HEAP);
    EXPECT_TRUE(bp.hdr.loadflags & LOADED_HIGH);
    EXPECT_FALSE(bp.hdr.loadflags & QUIET_FLAG);
    EXPECT_EQ(bp.hdr.heap_end_ptr, 0xFE00);
    EXPECT_EQ(bp.hdr.vid_mode, 0xFFFF);
    EXPECT_EQ(bp.hdr.hardware_subarch, 0u);
    EXPECT_EQ(bp.hdr.cmd_line_ptr, 0x20000u);
    EXPECT_EQ(bp.ext_cmd_line_ptr, 0u);
    EXPECT_EQ(bp.hdr.ramdisk_image, 0u);
    EXPECT_EQ(bp.hdr.ramdisk_size, 0u);
    EXPECT_EQ(bp.acpi_rsdp_addr, 0xE0000u);
    EXPECT_EQ(bp.sentinel, 0);

    char cmdline[64] = {};
    ASSERT_TRUE(mem->read_obj(Gpa(0x20000), cmdline).ok());
    EXPECT_STREQ(cmdline, "console=ttyS0 panic=-1");

    std::vector<uint8_t> loaded(kPayload);
    ASSERT_TRUE(mem->read(Gpa(0x100000), loaded).ok());
    EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), kernel.begin() + kSetup));

    EXPECT_EQ(e820_of(bp), expected_low(256 * kMiB));
    EXPECT_EQ(info->kernel_end, 48 * kMiB);
}

TEST(BootLinuxLoader, E820For2GiB) {
    auto mem = GuestMemory::create(2 * kGiB);
    ASSERT_TRUE(mem.ok());
    EXPECT_TRUE(std::ranges::equal(build_e820(*mem), expected_low(2 * kGiB), [](auto& a, auto& b) {
        return a.addr == b.addr && a.size == b.size && a.type == b.type;
    }));
}

TEST(BootLinuxLoader, E820Above4GiBFor5GiBGuest) {
    auto mem = GuestMemory::create(5 * kGiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto info = load_linux(*mem, {kf.path(), "", "", 0});
    ASSERT_TRUE(info.ok()) << info.error().message;
    auto want = expected_low(3 * kGiB);       // RAM stops at the 3 GiB hole...
    want.push_back({4 * kGiB, 2 * kGiB, 1});  // ...and the other 2 GiB sit above 4 GiB
    EXPECT_EQ(e820_of(read_zero_page(*mem)), want);
}

TEST(BootLinuxLoader, InitrdAtTopOfLowRamPageAligned) {
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto initrd = pattern(kMiB + 123);
    TempFile rf(initrd);
    auto info = load_linux(*mem, {kf.path(), rf.path(), "", 0});
    ASSERT_TRUE(info.ok()) << info.error().message;

    uint64_t want = (256 * kMiB - initrd.size()) & ~0xFFFull;
    EXPECT_EQ(info->initrd_gpa, want);
    boot_params bp = read_zero_page(*mem);
    EXPECT_EQ(bp.hdr.ramdisk_image, want);
    EXPECT_EQ(bp.hdr.ramdisk_size, initrd.size());
    EXPECT_EQ(bp.ext_ramdisk_image, 0u);
    EXPECT_EQ(bp.ext_ramdisk_size, 0u);
    std::vector<uint8_t> got(initrd.size());
    ASSERT_TRUE(mem->read(Gpa(want), got).ok());
    EXPECT_EQ(got, initrd);
}

TEST(BootLinuxLoader, InitrdRespectsInitrdAddrMax) {
    // A 5 GiB guest has 3 GiB of low RAM, but this kernel takes initrds only below 2 GiB.
    auto mem = GuestMemory::create(5 * kGiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    TempFile rf(pattern(3 * kMiB));
    auto info = load_linux(*mem, {kf.path(), rf.path(), "", 0});
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->initrd_gpa, 2 * kGiB - 3 * kMiB);
    EXPECT_EQ(info->initrd_gpa % 4096, 0u);

    FakeKernel low;
    low.initrd_addr_max = 100 * kMiB - 1;
    TempFile kf2(fake_bzimage(low));
    auto info2 = load_linux(*mem, {kf2.path(), rf.path(), "", 0});
    ASSERT_TRUE(info2.ok()) << info2.error().message;
    EXPECT_EQ(info2->initrd_gpa, 97 * kMiB);
}

TEST(BootLinuxLoader, TooLittleMemoryForKernelAndInitrd) {
    auto mem = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    TempFile rf(pattern(20 * kMiB));
    auto info = load_linux(*mem, {kf.path(), rf.path(), "", 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message,
              "memory: 64M is too small for kernel (48 MiB) and initrd (20 MiB)");
}

TEST(BootLinuxLoader, TooLittleMemoryForKernelAlone) {
    auto mem = GuestMemory::create(32 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto info = load_linux(*mem, {kf.path(), "", "", 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message, "memory: 32M is too small for kernel (48 MiB)");
}

TEST(BootLinuxLoader, FootprintPastTheEndOfTheAddressSpaceRefused) {
    // A fixed-address kernel whose pref_address + init_size wraps round 2^64 (found by
    // tests/fuzz/bzimage_fuzz.cc): its footprint must not look small enough to fit.
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto kernel = fake_bzimage();
    setup_header h;
    std::memcpy(&h, kernel.data() + 0x1F1, sizeof h);
    h.relocatable_kernel = 0;
    h.pref_address = 0xFFFFFFFF01000000;
    h.init_size = 0xFFFFFFFF;
    std::memcpy(kernel.data() + 0x1F1, &h, sizeof h);
    TempFile kf(kernel);
    auto info = load_linux(*mem, {kf.path(), "", "", 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message, "memory: 256M is too small for kernel (17592186044416 MiB)");
}

TEST(BootLinuxLoader, CmdlineLongerThanKernelLimit) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto fits = load_linux(*mem, {kf.path(), "", std::string(2047, 'x'), 0});
    ASSERT_TRUE(fits.ok()) << fits.error().message;
    auto info = load_linux(*mem, {kf.path(), "", std::string(2048, 'x'), 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message,
              "cmdline: 2048 bytes is longer than the kernel's limit of 2047");
}

TEST(BootLinuxLoader, CmdlineCappedByBufferEvenIfKernelAllowsMore) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    FakeKernel big;
    big.cmdline_size = 0x7FFFFFFF;
    TempFile kf(fake_bzimage(big));
    auto info = load_linux(*mem, {kf.path(), "", std::string(0x10000, 'x'), 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message,
              "cmdline: 65536 bytes is longer than the kernel's limit of 65535");
}

TEST(BootLinuxLoader, MissingInitrdNamesInitrdKey) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto info = load_linux(*mem, {kf.path(), "/nonexistent/initrd.img", "", 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message,
              "initrd: cannot open /nonexistent/initrd.img: No such file or directory");
}

TEST(BootLinuxLoader, NonBzImageKernelNamesKernelKey) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(pattern(8192));
    auto info = load_linux(*mem, {kf.path(), "", "", 0});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message, "kernel: " + kf.path() + " is not a bzImage");
}

TEST(BootLinuxLoader, EntryRegistersAndSegments) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    auto info = load_linux(*mem, {kf.path(), "", "", 0});
    ASSERT_TRUE(info.ok()) << info.error().message;

    kvm_regs regs{};
    regs.rax = 0x1234;  // stale values must not survive
    kvm_sregs sregs{};
    sregs.apic_base = 0xFEE00900;
    info->cpu.apply(regs, sregs);

    EXPECT_EQ(regs.rip, 0x100200u);
    EXPECT_EQ(regs.rsi, 0x7000u);
    EXPECT_EQ(regs.rflags, 0x2u);  // IF clear
    EXPECT_EQ(regs.rax, 0u);
    EXPECT_GT(regs.rsp, 0u);
    EXPECT_LT(regs.rsp, 0x9FC00u);

    EXPECT_EQ(sregs.cr0, (1ull << 0) | (1ull << 4) | (1ull << 31));  // PE, ET, PG
    EXPECT_EQ(sregs.cr4, 1ull << 5);                                 // PAE
    EXPECT_EQ(sregs.efer, (1ull << 8) | (1ull << 10));               // LME, LMA
    EXPECT_EQ(sregs.cr3, 0x9000u);
    EXPECT_EQ(sregs.apic_base, 0xFEE00900u);  // left to the caller

    EXPECT_EQ(sregs.cs.selector, 0x10);
    EXPECT_EQ(sregs.cs.l, 1);
    EXPECT_EQ(sregs.cs.db, 0);
    EXPECT_EQ(sregs.cs.type, 0xB);
    EXPECT_EQ(sregs.cs.present, 1);
    for (const kvm_segment* s : {&sregs.ds, &sregs.es, &sregs.ss, &sregs.fs, &sregs.gs}) {
        EXPECT_EQ(s->selector, 0x18);
        EXPECT_EQ(s->base, 0u);
        EXPECT_EQ(s->limit, 0xFFFFFFFFu);
        EXPECT_EQ(s->type, 0x3);
        EXPECT_EQ(s->present, 1);
    }
    EXPECT_EQ(sregs.tr.selector, 0x20);
    EXPECT_EQ(sregs.tr.type, 0xB);
    EXPECT_EQ(sregs.gdt.base, 0x500u);
    EXPECT_EQ(sregs.gdt.limit, 6 * 8 - 1);

    // The GDT in memory holds the architectural flat descriptors for those selectors.
    uint64_t gdt[6] = {};
    ASSERT_TRUE(mem->read_obj(Gpa(0x500), gdt).ok());
    EXPECT_EQ(gdt[0], 0u);
    EXPECT_EQ(gdt[2], 0x00AF9B000000FFFFull);  // 64-bit code, present, DPL 0
    EXPECT_EQ(gdt[3], 0x00CF93000000FFFFull);  // 4 GiB flat data
    EXPECT_EQ(gdt[4], 0x00008B0000000067ull);  // busy 64-bit TSS
    EXPECT_EQ(gdt[2], gdt_entry(sregs.cs));
    EXPECT_EQ(gdt[3], gdt_entry(sregs.ds));
}

// Walks the guest's page tables for `va` with 2 MiB pages.
uint64_t translate(const GuestMemory& mem, uint64_t cr3, uint64_t va) {
    auto entry = [&](uint64_t table, unsigned idx) {
        uint64_t e = 0;
        EXPECT_TRUE(mem.read_obj(Gpa((table & ~0xFFFull) + idx * 8), e).ok());
        return e;
    };
    uint64_t pml4e = entry(cr3, (va >> 39) & 511);
    if (!(pml4e & 1)) return ~0ull;
    uint64_t pdpte = entry(pml4e & 0xFFFFFFFFF000ull, (va >> 30) & 511);
    if (!(pdpte & 1)) return ~0ull;
    uint64_t pde = entry(pdpte & 0xFFFFFFFFF000ull, (va >> 21) & 511);
    if (!(pde & 1) || !(pde & 0x80) || !(pde & 2)) return ~0ull;
    return (pde & 0xFFFFFFE00000ull) | (va & 0x1FFFFF);
}

TEST(BootLinuxLoader, PageTablesIdentityMapFirst4GiB) {
    auto mem = GuestMemory::create(128 * kMiB);
    ASSERT_TRUE(mem.ok());
    TempFile kf(fake_bzimage());
    ASSERT_TRUE(load_linux(*mem, {kf.path(), "", "", 0}).ok());
    uint64_t pml4e = 0;
    ASSERT_TRUE(mem->read_obj(Gpa(0x9000), pml4e).ok());
    EXPECT_EQ(pml4e, 0xA023u);  // present, writable, accessed
    for (uint64_t va : {0ull, 0x7000ull, 0x100200ull, 0x20000ull, 0x3FFFFFFFull, 0x40000000ull,
                        0x87654321ull, 0xC0001234ull, 0xFEE00000ull, 0xFFFFFFFFull})
        EXPECT_EQ(translate(*mem, 0x9000, va), va) << std::hex << va;
    EXPECT_EQ(translate(*mem, 0x9000, 0x100000000ull), ~0ull);  // nothing above 4 GiB
}

TEST(BootLinuxLoader, FormatSize) {
    EXPECT_EQ(format_size(256 * kMiB), "256M");
    EXPECT_EQ(format_size(2 * kGiB), "2G");
    EXPECT_EQ(format_size(1536 * 1024), "1536K");
    EXPECT_EQ(format_size(1000), "1000");
}

}  // namespace
