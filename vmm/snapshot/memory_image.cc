#include "vmm/snapshot/memory_image.h"

#include <algorithm>
#include <cstring>

namespace kv::snapshot {
namespace {

constexpr uint32_t kMagic = 0x494d564b;  // "KVMI" little-endian
constexpr size_t kHeaderBytes = 24;
constexpr size_t kRunBytes = 16;

void put(std::vector<uint8_t>& out, size_t at, const void* v, size_t n) {
    std::memcpy(out.data() + at, v, n);
}
template <class T>
T get(std::span<const uint8_t> in, size_t at) {
    T v;
    std::memcpy(&v, in.data() + at, sizeof v);
    return v;
}

bool zero_page(const uint8_t* p) {
    static const uint8_t zeros[kImagePageSize] = {};
    return std::memcmp(p, zeros, kImagePageSize) == 0;
}

struct Run {
    uint64_t gpa, pages;
    const uint8_t* src;
};

}  // namespace

std::vector<uint8_t> encode_memory_image(std::span<const RamSpan> ranges, MemoryImageInfo* info,
                                         bool keep_zero_pages) {
    std::vector<Run> runs;
    MemoryImageInfo in;
    for (const RamSpan& r : ranges) {
        const uint64_t pages = r.bytes.size() / kImagePageSize;
        for (uint64_t i = 0; i < pages; ++i) {
            const uint8_t* p = r.bytes.data() + i * kImagePageSize;
            if (!keep_zero_pages && zero_page(p)) {
                ++in.zero_pages;
                continue;
            }
            const uint64_t gpa = r.gpa + i * kImagePageSize;
            ++in.pages;
            if (!runs.empty() && runs.back().gpa + runs.back().pages * kImagePageSize == gpa &&
                runs.back().src + runs.back().pages * kImagePageSize == p)
                ++runs.back().pages;
            else
                runs.push_back({gpa, 1, p});
        }
    }
    std::vector<uint8_t> out(kHeaderBytes + runs.size() * kRunBytes + in.pages * kImagePageSize);
    const uint16_t version = kMemoryImageVersion, reserved = 0;
    const uint32_t page_size = kImagePageSize, count = uint32_t(runs.size());
    put(out, 0, &kMagic, 4);
    put(out, 4, &version, 2);
    put(out, 6, &reserved, 2);
    put(out, 8, &page_size, 4);
    put(out, 12, &count, 4);
    put(out, 16, &in.pages, 8);
    size_t at = kHeaderBytes, data = kHeaderBytes + runs.size() * kRunBytes;
    for (const Run& r : runs) {
        put(out, at, &r.gpa, 8);
        put(out, at + 8, &r.pages, 8);
        at += kRunBytes;
        put(out, data, r.src, r.pages * kImagePageSize);
        data += r.pages * kImagePageSize;
    }
    if (info) *info = in;
    return out;
}

Result<MemoryImageInfo> decode_memory_image(std::span<const uint8_t> image, const std::string& part,
                                            const RamTarget& target) {
    auto bad = [&](const std::string& why) { return Error{"part " + part + ": " + why}; };
    if (image.size() < kHeaderBytes)
        return bad(std::to_string(image.size()) + " bytes, shorter than its header");
    if (get<uint32_t>(image, 0) != kMagic) return bad("not a memory image (magic)");
    const uint16_t version = get<uint16_t>(image, 4);
    if (version > kMemoryImageVersion)
        return bad("memory image version " + std::to_string(version) +
                   " is newer than this build reads (" + std::to_string(kMemoryImageVersion) + ")");
    if (version != kMemoryImageVersion)
        return bad("unknown memory image version " + std::to_string(version));
    if (get<uint32_t>(image, 8) != kImagePageSize)
        return bad("page size " + std::to_string(get<uint32_t>(image, 8)) + ", not 4096");
    const uint64_t runs = get<uint32_t>(image, 12), pages = get<uint64_t>(image, 16);
    // Sizes first, in 128 bits: a huge count cannot wrap around to a small size.
    const unsigned __int128 want = (unsigned __int128)kHeaderBytes +
                                   (unsigned __int128)runs * kRunBytes +
                                   (unsigned __int128)pages * kImagePageSize;
    if (want != image.size())
        return bad(std::to_string(image.size()) + " bytes, but its header says " +
                   std::to_string(runs) + " runs and " + std::to_string(pages) +
                   " pages (truncated or trailing bytes)");
    std::vector<std::pair<uint64_t, uint64_t>> list;
    list.reserve(runs);
    uint64_t total = 0, end = 0;
    for (uint64_t i = 0; i < runs; ++i) {
        const uint64_t gpa = get<uint64_t>(image, kHeaderBytes + i * kRunBytes);
        const uint64_t n = get<uint64_t>(image, kHeaderBytes + i * kRunBytes + 8);
        const std::string run = "run " + std::to_string(i);
        if (gpa % kImagePageSize != 0) return bad(run + ": address not page-aligned");
        if (n == 0 || n > pages - total) return bad(run + ": page count out of range");
        if (i > 0 && gpa < end) return bad(run + ": overlaps or precedes the run before it");
        if (gpa + n * kImagePageSize < gpa) return bad(run + ": runs past the address space");
        total += n;
        end = gpa + n * kImagePageSize;
        list.emplace_back(gpa, n);
    }
    if (total != pages)
        return bad("its runs hold " + std::to_string(total) + " pages, not " +
                   std::to_string(pages));
    // Every target is checked before anything is copied.
    std::vector<uint8_t*> dst;
    dst.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
        auto p = target(list[i].first, list[i].second * kImagePageSize);
        if (!p) return bad("run " + std::to_string(i) + ": " + p.error().message);
        dst.push_back(*p);
    }
    size_t data = kHeaderBytes + runs * kRunBytes;
    for (size_t i = 0; i < list.size(); ++i) {
        const size_t n = list[i].second * kImagePageSize;
        std::memcpy(dst[i], image.data() + data, n);
        data += n;
    }
    return MemoryImageInfo{pages, 0};
}

}  // namespace kv::snapshot
