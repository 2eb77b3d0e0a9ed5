// The BIOS-style e820 memory map given to Linux in boot_params.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <vector>

#include "memory/guest_memory.h"

namespace kv::boot {

// e820 entry types (Linux's E820_TYPE_*; the uapi header does not export them).
enum E820Type : uint32_t {
    kE820Ram = 1,
    kE820Reserved = 2,
    kE820Acpi = 3,
};

// Map for the RAM regions of `mem`, sorted, non-overlapping:
//   [0, 0x9FC00) RAM, [0x9FC00, 0xA0000) reserved (EBDA), [0xE0000, 0x100000) reserved
//   (ACPI tables in the BIOS area), [0x100000, end of low RAM) RAM, [4 GiB, ...) RAM.
// The VGA hole and option-ROM area 0xA0000-0xDFFFF are left out: nothing is there.
std::vector<boot_e820_entry> build_e820(const GuestMemory& mem);

}  // namespace kv::boot
