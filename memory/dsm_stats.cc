#include "memory/dsm_stats.h"

#include <bit>

namespace kv {

uint64_t LatencyHistogram::count() const {
    uint64_t n = 0;
    for (uint64_t b : buckets) n += b;
    return n;
}

uint64_t LatencyHistogram::quantile_ns(double q) const {
    uint64_t n = count();
    if (n == 0) return 0;
    uint64_t want = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1, seen = 0;
    for (int b = 0; b < kLatencyBuckets; ++b) {
        seen += buckets[b];
        if (seen >= want) return uint64_t{2} << b;
    }
    return uint64_t{2} << (kLatencyBuckets - 1);
}

void DsmCounters::record(Buckets& b, uint64_t ns) {
    int i = ns <= 1 ? 0 : std::bit_width(ns) - 1;
    if (i >= kLatencyBuckets) i = kLatencyBuckets - 1;
    b[i].fetch_add(1, std::memory_order_relaxed);
}

DsmStats DsmCounters::snapshot() const {
    DsmStats s;
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    s.read_missing_faults = ld(read_missing_faults);
    s.write_missing_faults = ld(write_missing_faults);
    s.write_protect_faults = ld(write_protect_faults);
    s.pages_sent = ld(pages_sent);
    s.pages_received = ld(pages_received);
    s.invalidations_sent = ld(invalidations_sent);
    s.invalidations_received = ld(invalidations_received);
    s.local_invalidations = ld(local_invalidations);
    s.held_messages = ld(held_messages);
    s.page_table_drops = ld(page_table_drops);
    for (int b = 0; b < kLatencyBuckets; ++b) {
        s.fault_latency.buckets[b] = ld(fault_[b]);
        s.invalidation_latency.buckets[b] = ld(inv_[b]);
    }
    return s;
}

static void print_hist(FILE* out, const char* name, const LatencyHistogram& h) {
    std::fprintf(out, "  %s: n=%llu p50<=%lluns p99<=%lluns\n", name,
                 static_cast<unsigned long long>(h.count()),
                 static_cast<unsigned long long>(h.quantile_ns(0.5)),
                 static_cast<unsigned long long>(h.quantile_ns(0.99)));
    for (int b = 0; b < kLatencyBuckets; ++b)
        if (h.buckets[b])
            std::fprintf(out, "    [%llu, %llu) ns: %llu\n",
                         static_cast<unsigned long long>(b == 0 ? 0 : uint64_t{1} << b),
                         static_cast<unsigned long long>(uint64_t{2} << b),
                         static_cast<unsigned long long>(h.buckets[b]));
}

void DsmStats::print(FILE* out) const {
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    std::fprintf(out,
                 "dsm: faults read-missing=%llu write-missing=%llu write-protect=%llu\n"
                 "dsm: pages sent=%llu received=%llu\n"
                 "dsm: invalidations sent=%llu received=%llu local=%llu\n"
                 "dsm: messages held for the hold window=%llu\n"
                 "dsm: page-table copies dropped (shadow paging: vCPUs held out)=%llu\n",
                 u(read_missing_faults), u(write_missing_faults), u(write_protect_faults),
                 u(pages_sent), u(pages_received), u(invalidations_sent), u(invalidations_received),
                 u(local_invalidations), u(held_messages), u(page_table_drops));
    print_hist(out, "fault latency", fault_latency);
    print_hist(out, "invalidation latency", invalidation_latency);
}

}  // namespace kv
