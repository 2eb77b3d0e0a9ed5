// Guest RAM as seen by the VMM: regions of guest-physical space backed by anonymous
// mappings. This is the *access* side; who fills the pages (local zero fill, or the
// coherence engine through userfaultfd) is the *provider* side and lives elsewhere.
// VMM accesses go through the same mapping as the guest's, so on a multi-node guest
// they fault and are resolved by the coherence engine exactly like vCPU accesses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/mapping.h"
#include "base/result.h"

namespace kv {

// Guest-physical address: a distinct type so it is never confused with a host pointer.
struct Gpa {
    uint64_t value = 0;
    constexpr Gpa() = default;
    constexpr explicit Gpa(uint64_t v) : value(v) {}
    constexpr Gpa operator+(uint64_t off) const { return Gpa(value + off); }
    constexpr auto operator<=>(const Gpa&) const = default;
};

constexpr uint64_t kPageSize = 4096;

struct MemoryRegion {
    Gpa base;
    uint64_t size = 0;
    Mapping mapping;  // host memory backing [base, base+size)
    uint32_t slot = 0;

    bool contains(Gpa gpa, uint64_t len) const {
        return gpa.value >= base.value && len <= size && gpa.value - base.value <= size - len;
    }
};

class GuestMemory {
  public:
    // Layout of guest RAM for `ram_size` bytes: below the 32-bit hole (which starts at
    // `hole_start`) and the rest above 4 GiB.
    static constexpr uint64_t kHoleStart = 0xC000'0000;  // 3 GiB: PCI/LAPIC/IOAPIC MMIO above
    static constexpr uint64_t k4G = 0x1'0000'0000;

    // Allocates anonymous memory for `ram_size` bytes with transparent huge pages off.
    static Result<GuestMemory> create(uint64_t ram_size);

    const std::vector<MemoryRegion>& regions() const { return regions_; }
    uint64_t ram_size() const { return ram_size_; }

    // Host pointer for [gpa, gpa+len) if it lies inside one region, else nullptr.
    uint8_t* host_ptr(Gpa gpa, uint64_t len) const;

    Status read(Gpa gpa, std::span<uint8_t> out) const;
    Status write(Gpa gpa, std::span<const uint8_t> in) const;

    template <class T>
    Status write_obj(Gpa gpa, const T& obj) const {
        return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&obj), sizeof obj));
    }
    template <class T>
    Status read_obj(Gpa gpa, T& obj) const {
        return read(gpa, std::span(reinterpret_cast<uint8_t*>(&obj), sizeof obj));
    }

  private:
    std::vector<MemoryRegion> regions_;
    uint64_t ram_size_ = 0;
};

}  // namespace kv
