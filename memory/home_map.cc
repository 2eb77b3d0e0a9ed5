#include "memory/home_map.h"

#include <algorithm>
#include <string>

namespace kv {

Result<HomeMap> HomeMap::even(uint64_t num_pages, uint32_t num_nodes) {
    if (num_nodes == 0 || num_nodes > kMaxNodes)
        return Error{"home map: node count must be 1.." + std::to_string(kMaxNodes)};
    if (num_pages < num_nodes) return Error{"home map: fewer pages than nodes"};
    std::vector<Range> ranges;
    for (uint32_t k = 0; k < num_nodes; ++k)
        ranges.push_back({num_pages * k / num_nodes, num_pages * (k + 1) / num_nodes, k});
    return from_ranges(std::move(ranges), num_pages, num_nodes);
}

Result<HomeMap> HomeMap::from_ranges(std::vector<Range> ranges, uint64_t num_pages,
                                     uint32_t num_nodes) {
    if (num_nodes == 0 || num_nodes > kMaxNodes)
        return Error{"home map: node count must be 1.." + std::to_string(kMaxNodes)};
    uint64_t next = 0;
    for (const auto& r : ranges) {
        if (r.first != next || r.end <= r.first)
            return Error{"home map: ranges must be sorted, contiguous and non-empty (at page " +
                         std::to_string(r.first) + ")"};
        if (r.home >= num_nodes)
            return Error{"home map: range names node " + std::to_string(r.home) + " of a " +
                         std::to_string(num_nodes) + "-node cluster"};
        next = r.end;
    }
    if (next != num_pages) return Error{"home map: ranges do not cover guest RAM"};
    HomeMap m;
    m.ranges_ = std::move(ranges);
    m.num_pages_ = num_pages;
    m.num_nodes_ = num_nodes;
    return m;
}

NodeId HomeMap::home_of(uint64_t pfn) const {
    // Few ranges (one per node): binary search on the first page.
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), pfn,
                               [](uint64_t p, const Range& r) { return p < r.first; });
    return std::prev(it)->home;
}

}  // namespace kv
