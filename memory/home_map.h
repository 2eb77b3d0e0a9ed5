// Which node is the home (directory holder) of each guest page.
//
// Homes are contiguous ranges of page frame numbers. The default gives node K the K-th
// equal slice of guest RAM, so that a guest NUMA node's memory is homed where its vCPUs
// run (docs/memory.md). Page frame numbers here are *coherence* page numbers: the index
// of a page in the concatenation of the node's RAM regions (see CoherenceEngine), which
// equals gpa/4096 below the 32-bit hole.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "interconnect/message.h"

namespace kv {

constexpr uint32_t kMaxNodes = 64;  // the directory's sharer set is a 64-bit mask

class HomeMap {
  public:
    struct Range {
        uint64_t first = 0;  // first page of the range
        uint64_t end = 0;    // one past the last page
        NodeId home = 0;
    };

    // Node K homes pages [K*n/N, (K+1)*n/N).
    static Result<HomeMap> even(uint64_t num_pages, uint32_t num_nodes);
    // Ranges must be sorted, contiguous, cover [0, num_pages) and name nodes < num_nodes.
    static Result<HomeMap> from_ranges(std::vector<Range> ranges, uint64_t num_pages,
                                       uint32_t num_nodes);

    NodeId home_of(uint64_t pfn) const;
    uint64_t num_pages() const { return num_pages_; }
    uint32_t num_nodes() const { return num_nodes_; }
    const std::vector<Range>& ranges() const { return ranges_; }

  private:
    std::vector<Range> ranges_;
    uint64_t num_pages_ = 0;
    uint32_t num_nodes_ = 0;
};

}  // namespace kv
