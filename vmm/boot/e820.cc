#include "vmm/boot/e820.h"

#include <algorithm>

#include "vmm/boot/layout.h"

namespace kv::boot {

std::vector<boot_e820_entry> build_e820(const GuestMemory& mem) {
    std::vector<boot_e820_entry> map;
    auto add = [&](uint64_t begin, uint64_t end, uint32_t type) {
        if (end > begin) map.push_back(boot_e820_entry{begin, end - begin, type});
    };
    for (const auto& r : mem.regions()) {
        uint64_t begin = r.base.value, end = r.base.value + r.size;
        if (begin >= kKernelGpa) {
            add(begin, end, kE820Ram);
            continue;
        }
        // The region holding the first MiB: carve out the legacy PC areas.
        add(begin, std::min(end, kEbdaGpa), kE820Ram);
        add(std::max(begin, kEbdaGpa), std::min(end, kVgaHoleGpa), kE820Reserved);
        add(std::max(begin, kAcpiGpa), std::min(end, kAcpiGpa + kAcpiSize), kE820Reserved);
        add(std::max(begin, kKernelGpa), end, kE820Ram);
    }
    std::sort(map.begin(), map.end(),
              [](const boot_e820_entry& a, const boot_e820_entry& b) { return a.addr < b.addr; });
    return map;
}

}  // namespace kv::boot
