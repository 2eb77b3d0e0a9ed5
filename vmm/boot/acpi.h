// ACPI tables describing Kerrvisor's guest platform: xAPIC LAPICs and one IOAPIC
// emulated in user space, the 8259 PIC, ACPI PM fixed hardware at I/O 0x600, COM1, the
// RTC, an HPET if the VMM has one, and one NUMA node per host node (docs/boot.md).
// Written into the BIOS area 0xE0000-0xFFFFF with the RSDP at its start, where Linux also
// scans for it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace kv::boot {

struct AcpiCpu {
    uint8_t apic_id = 0;  // xAPIC id, 0..254 (255 is the broadcast id)
    uint32_t node = 0;    // NUMA node (proximity domain)
};

struct AcpiMemoryRange {
    uint64_t base = 0;
    uint64_t size = 0;
};

struct AcpiNumaNode {
    uint32_t id = 0;  // proximity domain; the nodes must be numbered 0..N-1
    std::vector<AcpiMemoryRange> memory;
};

// An HPET event timer block (the ACPI HPET table).
struct AcpiHpet {
    uint64_t address = 0;   // its registers, in guest physical memory
    uint32_t block_id = 0;  // Event Timer Block ID: the low 32 bits of its GCAP_ID register
};

struct AcpiConfig {
    std::vector<AcpiCpu> cpus;  // the ACPI processor UID of cpus[i] is i
    std::vector<AcpiNumaNode> nodes;
    // SLIT distances, distances[from][to] indexed by node id; empty means 10 on the
    // diagonal and 20 elsewhere.
    std::vector<std::vector<uint8_t>> distances;
    std::optional<uint8_t> ioapic_id;  // default: the number of CPUs
    uint64_t ioapic_address = 0xFEC00000;
    uint32_t ioapic_gsi_base = 0;
    // Announce the PM1 fixed-feature power button (PWRBTN_STS/EN, FADT flag PWR_BUTTON
    // clear). The PM device implements it, so the VMM can ask the guest to shut down.
    bool fixed_power_button = true;
    // Describe a PCI host bridge (\_SB.PCI0, bus 0, config mechanism #1 at 0xCF8) in the
    // DSDT. With ACPI on, Linux enumerates PCI only below such a device; leave it off
    // when the VMM does not emulate 0xCF8-0xCFF. INTx routing: layout.h kPciIntxGsiBase.
    bool pci_root_bridge = false;
    // Announce an HPET (the VMM's Hpet device); none by default.
    std::optional<AcpiHpet> hpet;

    // One NUMA node holding every RAM region of `mem`, with `vcpus` CPUs of APIC ids
    // 0..vcpus-1.
    static AcpiConfig single_node(const GuestMemory& mem, unsigned vcpus);
};

// Builds RSDP, XSDT, FACS, FADT, DSDT, MADT, SRAT, SLIT (and HPET) into
// [kAcpiGpa, +kAcpiSize) and returns the RSDP's address (for boot_params.acpi_rsdp_addr).
// Errors ("acpi: ...") name the inconsistency in `cfg`.
Result<Gpa> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& cfg);

// Sum of `len` bytes; a valid ACPI table sums to 0 (mod 256).
uint8_t acpi_checksum(const uint8_t* data, size_t len);

}  // namespace kv::boot
