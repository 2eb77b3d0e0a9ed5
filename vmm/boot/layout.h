// Guest-physical layout used to boot Linux (docs/boot.md). Everything the VMM writes
// before the first KVM_RUN lives below 1 MiB, except the kernel (at 1 MiB) and the initrd
// (at the top of low RAM). The kernel reserves the whole first MiB early in boot, so none
// of these structures is overwritten before Linux has copied what it needs.
#pragma once

#include <cstdint>

namespace kv::boot {

// Boot GDT: null, null, 64-bit code (__BOOT_CS = 0x10), data (__BOOT_DS = 0x18), TSS.
inline constexpr uint64_t kGdtGpa = 0x500;
// The zero page (struct boot_params); RSI points here at entry.
inline constexpr uint64_t kBootParamsGpa = 0x7000;
// Identity page tables for 0-4 GiB with 2 MiB pages: PML4, PDPT, four page directories.
inline constexpr uint64_t kPml4Gpa = 0x9000;
inline constexpr uint64_t kPdptGpa = 0xA000;
inline constexpr uint64_t kPageDirGpa = 0xB000;  // 0xB000-0xEFFF, one per GiB
inline constexpr unsigned kPageDirCount = 4;
// RSP at entry. Linux sets up its own stack before it uses one; this is only a sane value.
inline constexpr uint64_t kBootStackGpa = 0x8F000;
// Kernel command line, NUL-terminated.
inline constexpr uint64_t kCmdlineGpa = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // bytes, terminating NUL included

// Conventional memory ends where the EBDA would start; the VGA hole and BIOS area follow.
inline constexpr uint64_t kEbdaGpa = 0x9FC00;
inline constexpr uint64_t kVgaHoleGpa = 0xA0000;
// ACPI tables: the BIOS read-only area Linux scans for the RSDP (0xE0000-0xFFFFF).
inline constexpr uint64_t kAcpiGpa = 0xE0000;
inline constexpr uint64_t kAcpiSize = 0x20000;
inline constexpr uint64_t kRsdpGpa = kAcpiGpa;

// The protected-mode kernel is loaded at 1 MiB; its 64-bit entry is 0x200 further.
inline constexpr uint64_t kKernelGpa = 0x100000;
inline constexpr uint64_t kKernel64EntryOffset = 0x200;

// Interrupt controllers the VMM emulates (xAPIC MMIO, one IOAPIC).
inline constexpr uint64_t kIoApicGpa = 0xFEC00000;
inline constexpr uint64_t kLapicGpa = 0xFEE00000;

// Boot GDT selectors (Documentation/arch/x86/boot.rst, 64-bit boot protocol).
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint16_t kBootTssSelector = 0x20;

// ACPI fixed hardware the FADT and DSDT announce; the VMM's PM device must implement
// exactly these (docs/boot.md, "What the PM device must do").
inline constexpr uint16_t kPm1aEvtPort = 0x600;  // PM1 status (2 bytes) + enable (2 bytes)
inline constexpr uint16_t kPm1aCntPort = 0x604;  // PM1 control, 2 bytes; SCI_EN reads as 1
inline constexpr uint16_t kPmTmrPort = 0x608;    // 24-bit 3.579545 MHz timer, 4-byte reads
inline constexpr uint16_t kGpe0Port = 0x620;     // GPE0 status (4 bytes) + enable (4 bytes)
inline constexpr uint16_t kResetPort = 0xCF9;    // byte write of kResetValue resets
inline constexpr uint8_t kResetValue = 0x06;
inline constexpr uint8_t kSciIrq = 9;    // ISA IRQ 9 = GSI 9, level, active high
inline constexpr uint8_t kSlpTypS5 = 5;  // PM1_CNT.SLP_TYP value for soft-off
inline constexpr uint16_t kPm1CntSlpTypShift = 10;
inline constexpr uint16_t kPm1CntSlpEn = 1u << 13;
inline constexpr uint16_t kPm1CntSciEn = 1u << 0;
inline constexpr uint8_t kCmosCenturyIndex = 0x32;  // FADT.CENTURY: RTC CMOS byte holding it

// PCI (only with AcpiConfig::pci_root_bridge): the 32-bit MMIO window the host bridge
// decodes, between the end of low RAM (3 GiB) and the IOAPIC; and the _PRT's INTx
// routing: pin P (0 = INTA) of slot S raises GSI kPciIntxGsiBase + (S + P) % 4,
// level-triggered, active low (the ACPI default for a GSI named in _PRT).
inline constexpr uint32_t kPciMmioBase = 0xC0000000;
inline constexpr uint32_t kPciMmioLast = 0xFEBFFFFF;
inline constexpr uint32_t kPciIntxGsiBase = 16;

}  // namespace kv::boot
