#include "vmm/boot/boot_cpu.h"

#include <array>
#include <cstring>

#include "vmm/boot/layout.h"

namespace kv::boot {

namespace {

// Architectural bits (Intel SDM vol. 3, 2.5 and 2.2.1).
constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kRflagsReserved = 1ull << 1;  // bit 1 always reads 1; IF stays clear

// Page-table entry bits.
constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWrite = 1ull << 1;
constexpr uint64_t kPteLarge = 1ull << 7;  // 2 MiB page in a page directory
// Accessed and dirty are set up front so the CPU's page walker never writes these tables:
// on a multi-node guest such a write would pull the table's page over to the writer.
constexpr uint64_t kPteAccessed = 1ull << 5;
constexpr uint64_t kPteDirty = 1ull << 6;

constexpr unsigned kGdtSlots = 6;  // null, null, code, data, TSS (two slots)

}  // namespace

kvm_segment boot_code_segment() {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xFFFFFFFF;
    s.selector = kBootCodeSelector;
    s.type = 0xB;  // execute/read, accessed
    s.present = 1;
    s.s = 1;  // code/data, not system
    s.l = 1;  // 64-bit code
    s.g = 1;
    return s;
}

kvm_segment boot_data_segment() {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xFFFFFFFF;
    s.selector = kBootDataSelector;
    s.type = 0x3;  // read/write, accessed
    s.present = 1;
    s.s = 1;
    s.db = 1;
    s.g = 1;
    return s;
}

kvm_segment boot_tss_segment() {
    // VM entry wants a usable busy TSS in TR even though nothing will use it before Linux
    // loads its own; a minimal 104-byte one at 0 is enough.
    kvm_segment s{};
    s.base = 0;
    s.limit = 0x67;
    s.selector = kBootTssSelector;
    s.type = 0xB;  // 64-bit TSS, busy
    s.present = 1;
    return s;
}

uint64_t gdt_entry(const kvm_segment& seg) {
    // Limits above 1 MiB are stored in 4 KiB units when the granularity bit is set.
    uint64_t limit = seg.g ? (uint64_t{seg.limit} >> 12) : seg.limit;
    uint64_t access = (seg.type & 0xF) | (uint64_t{seg.s} << 4) | (uint64_t{seg.dpl} << 5) |
                      (uint64_t{seg.present} << 7);
    uint64_t flags = (uint64_t{seg.avl} << 0) | (uint64_t{seg.l} << 1) | (uint64_t{seg.db} << 2) |
                     (uint64_t{seg.g} << 3);
    return (limit & 0xFFFF) | ((seg.base & 0xFFFFFF) << 16) | (access << 40) |
           (((limit >> 16) & 0xF) << 48) | (flags << 52) | (((seg.base >> 24) & 0xFF) << 56);
}

Status write_boot_gdt(const GuestMemory& mem) {
    std::array<uint64_t, kGdtSlots> gdt{};
    gdt[kBootCodeSelector / 8] = gdt_entry(boot_code_segment());
    gdt[kBootDataSelector / 8] = gdt_entry(boot_data_segment());
    gdt[kBootTssSelector / 8] = gdt_entry(boot_tss_segment());
    gdt[kBootTssSelector / 8 + 1] = boot_tss_segment().base >> 32;  // upper half of TSS base
    return mem.write_obj(Gpa(kGdtGpa), gdt);
}

Status write_identity_page_tables(const GuestMemory& mem) {
    std::array<uint64_t, 512> pml4{}, pdpt{}, pd{};
    pml4[0] = kPdptGpa | kPtePresent | kPteWrite | kPteAccessed;
    for (unsigned g = 0; g < kPageDirCount; ++g) {
        uint64_t pd_gpa = kPageDirGpa + g * kPageSize;
        pdpt[g] = pd_gpa | kPtePresent | kPteWrite | kPteAccessed;
        for (uint64_t i = 0; i < 512; ++i)
            pd[i] = ((uint64_t{g} << 30) + (i << 21)) | kPtePresent | kPteWrite | kPteLarge |
                    kPteAccessed | kPteDirty;
        KV_TRY(mem.write_obj(Gpa(pd_gpa), pd));
    }
    KV_TRY(mem.write_obj(Gpa(kPdptGpa), pdpt));
    return mem.write_obj(Gpa(kPml4Gpa), pml4);
}

void BootCpuState::apply(kvm_regs& regs, kvm_sregs& sregs) const {
    regs = kvm_regs{};
    regs.rip = rip;
    regs.rsi = rsi;
    regs.rsp = rsp;
    regs.rbp = rsp;
    regs.rflags = kRflagsReserved;

    sregs.cs = boot_code_segment();
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = boot_data_segment();
    sregs.tr = boot_tss_segment();
    sregs.ldt = kvm_segment{};
    sregs.ldt.limit = 0xFFFF;
    sregs.ldt.type = 0x2;  // LDT
    sregs.ldt.present = 1;
    sregs.gdt = kvm_dtable{};
    sregs.gdt.base = kGdtGpa;
    sregs.gdt.limit = kGdtSlots * 8 - 1;
    sregs.idt = kvm_dtable{};  // no IDT: interrupts stay disabled until Linux loads its own

    sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    sregs.cr3 = kPml4Gpa;
    sregs.cr4 = kCr4Pae;
    sregs.efer = kEferLme | kEferLma;
}

}  // namespace kv::boot
