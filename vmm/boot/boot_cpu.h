// The BSP's state at the Linux 64-bit entry point, and the GDT and identity page tables
// in guest memory that this state refers to.
//
// The 64-bit boot protocol asks for: long mode with paging on; the kernel image, the zero
// page and the command line identity-mapped; a GDT with flat 4 GiB __BOOT_CS (0x10,
// execute/read) and __BOOT_DS (0x18, read/write); CS = __BOOT_CS, DS = ES = SS =
// __BOOT_DS; interrupts disabled; RSI = the zero page.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace kv::boot {

struct BootCpuState {
    uint64_t rip = 0;  // kernel load address + 0x200
    uint64_t rsi = 0;  // boot_params
    uint64_t rsp = 0;

    // Overwrites every general register and the segment, descriptor-table, control and
    // EFER parts of `sregs`. apic_base, cr2, cr8 and interrupt_bitmap are left as given,
    // so the caller can KVM_GET_SREGS, apply(), KVM_SET_SREGS.
    void apply(kvm_regs& regs, kvm_sregs& sregs) const;
};

// Writes the boot GDT (at kGdtGpa) and the 0-4 GiB identity map (PML4 at kPml4Gpa).
Status write_boot_gdt(const GuestMemory& mem);
Status write_identity_page_tables(const GuestMemory& mem);

// The descriptor encoding of a kvm_segment, as it sits in the GDT (system segments such
// as the TSS take two slots; this returns the low quadword).
uint64_t gdt_entry(const kvm_segment& seg);

// The segments apply() loads, exposed so tests can compare them with the GDT in memory.
kvm_segment boot_code_segment();
kvm_segment boot_data_segment();
kvm_segment boot_tss_segment();

}  // namespace kv::boot
