// Guest pages in a snapshot part (docs/snapshots.md, "Memory parts"): the non-zero pages
// of some ranges of guest RAM, as runs of consecutive pages. Zero pages are left out; a
// restore starts from zero-filled RAM, so they come back as they were.
//
//     header  magic "KVMI" (u32), version (u16, now 1), reserved (u16), page size (u32,
//             4096), run count (u32), page count (u64)
//     runs    run count x {first guest-physical address (u64), pages (u64)}, ascending,
//             not overlapping
//     pages   page count x 4096 bytes, in the runs' order
//
// Little-endian, as the host.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/result.h"

namespace kv::snapshot {

inline constexpr uint32_t kMemoryImageVersion = 1;
inline constexpr uint64_t kImagePageSize = 4096;

// A range of guest RAM to save: its guest-physical address and its bytes (page-aligned,
// a whole number of pages).
struct RamSpan {
    uint64_t gpa = 0;
    std::span<const uint8_t> bytes;
};

struct MemoryImageInfo {
    uint64_t pages = 0;       // non-zero pages written
    uint64_t zero_pages = 0;  // left out
};

// The image of `ranges` (ascending, not overlapping), leaving out zero pages unless
// `keep_zero_pages` (an incremental snapshot: a page written to zero since the parent
// must overwrite the parent's).
std::vector<uint8_t> encode_memory_image(std::span<const RamSpan> ranges,
                                         MemoryImageInfo* info = nullptr,
                                         bool keep_zero_pages = false);

// Where a restored run goes: the host address of `bytes` bytes of guest RAM at `gpa`, or an
// error naming why it cannot be (not guest RAM, another node's).
using RamTarget = std::function<Result<uint8_t*>(uint64_t gpa, uint64_t bytes)>;

// Checks the whole image first (header, runs, sizes), then copies every run to its target.
// Errors name `part` and the check that failed; nothing is copied from an image that
// fails a check.
Result<MemoryImageInfo> decode_memory_image(std::span<const uint8_t> image, const std::string& part,
                                            const RamTarget& target);

}  // namespace kv::snapshot
