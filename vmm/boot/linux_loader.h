// Places a Linux bzImage, its initrd and command line in guest memory with a zero page,
// e820 map, boot GDT and identity page tables, ready for the BSP to enter at the 64-bit
// entry point (docs/boot.md).
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "vmm/boot/boot_cpu.h"

namespace kv::boot {

struct LinuxBootConfig {
    std::string kernel_path;
    std::string initrd_path;  // empty: no initrd
    std::string cmdline;
    uint64_t rsdp_gpa = 0;  // boot_params.acpi_rsdp_addr; 0 leaves Linux to scan for it
};

// What load_linux() put where, for logs and tests.
struct LinuxBootInfo {
    BootCpuState cpu;
    uint64_t kernel_end = 0;  // first byte above the kernel's footprint (init_size)
    uint64_t initrd_gpa = 0;
    uint64_t initrd_size = 0;
};

// Errors start with the config key at fault: "kernel:", "initrd:", "cmdline:", "memory:".
Result<LinuxBootInfo> load_linux(const GuestMemory& mem, const LinuxBootConfig& cfg);

// "256M", "2G", "1536K": the shortest exact binary-unit spelling of a size.
std::string format_size(uint64_t bytes);

}  // namespace kv::boot
