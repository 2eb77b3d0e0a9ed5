#include "memory/guest_memory.h"

#include <sys/mman.h>

#include <cstring>

namespace kv {

Result<GuestMemory> GuestMemory::create(uint64_t ram_size) {
    if (ram_size == 0 || ram_size % kPageSize != 0)
        return Error{"guest memory size must be a non-zero multiple of 4 KiB"};
    GuestMemory gm;
    gm.ram_size_ = ram_size;
    uint64_t low = ram_size < kHoleStart ? ram_size : kHoleStart;
    struct Span {
        uint64_t base, size;
    };
    std::vector<Span> spans{{0, low}};
    if (ram_size > low) spans.push_back({k4G, ram_size - low});
    uint32_t slot = 0;
    for (auto s : spans) {
        auto m = Mapping::anonymous(s.size);
        if (!m) return m.error();
        // A 2 MiB host page would map 2 MiB into the guest behind the coherence
        // protocol's back (docs/architecture.md): keep guest RAM at 4 KiB.
        if (::madvise(m->data(), s.size, MADV_NOHUGEPAGE) != 0)
            return Error::from_errno("madvise(MADV_NOHUGEPAGE) on guest RAM");
        MemoryRegion r;
        r.base = Gpa(s.base);
        r.size = s.size;
        r.mapping = std::move(m).value();
        r.slot = slot++;
        gm.regions_.push_back(std::move(r));
    }
    return gm;
}

uint8_t* GuestMemory::host_ptr(Gpa gpa, uint64_t len) const {
    for (const auto& r : regions_)
        if (r.contains(gpa, len)) return r.mapping.data() + (gpa.value - r.base.value);
    return nullptr;
}

Status GuestMemory::read(Gpa gpa, std::span<uint8_t> out) const {
    uint8_t* p = host_ptr(gpa, out.size());
    if (!p) return Error{"guest read outside RAM at " + std::to_string(gpa.value)};
    std::memcpy(out.data(), p, out.size());
    return {};
}

Status GuestMemory::write(Gpa gpa, std::span<const uint8_t> in) const {
    uint8_t* p = host_ptr(gpa, in.size());
    if (!p) return Error{"guest write outside RAM at " + std::to_string(gpa.value)};
    std::memcpy(p, in.data(), in.size());
    return {};
}

}  // namespace kv
