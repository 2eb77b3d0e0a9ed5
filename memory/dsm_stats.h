// Per-node coherence counters: updated with relaxed atomics by the fault and receive
// threads, read at any time by anyone as a plain snapshot (DsmStats) that later tools
// (the admin console, the balancer's probes) can keep and print.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>

namespace kv {

constexpr int kLatencyBuckets = 40;  // bucket b: [2^b, 2^(b+1)) ns; b = 0 holds 0..1 ns

struct LatencyHistogram {
    std::array<uint64_t, kLatencyBuckets> buckets{};
    uint64_t count() const;
    // Upper bound (ns) of the bucket holding quantile q (0..1); 0 if empty.
    uint64_t quantile_ns(double q) const;
};

struct DsmStats {
    uint64_t read_missing_faults = 0;
    uint64_t write_missing_faults = 0;
    uint64_t write_protect_faults = 0;
    uint64_t pages_sent = 0;
    uint64_t pages_received = 0;
    uint64_t invalidations_sent = 0;        // Inv messages sent by this node as a home
    uint64_t invalidations_received = 0;    // Inv messages received
    uint64_t local_invalidations = 0;       // copies dropped here (Inv, FetchInv, home copy)
    uint64_t held_messages = 0;             // messages that waited for the hold window
    uint64_t page_table_drops = 0;          // copies dropped that looked like page tables
                                            // (shadow paging: each held the vCPUs out)
    LatencyHistogram fault_latency;         // fault event read -> page installed/unprotected
    LatencyHistogram invalidation_latency;  // home: first Inv sent -> last InvAck

    void print(FILE* out) const;
};

class DsmCounters {
  public:
    std::atomic<uint64_t> read_missing_faults{0};
    std::atomic<uint64_t> write_missing_faults{0};
    std::atomic<uint64_t> write_protect_faults{0};
    std::atomic<uint64_t> pages_sent{0};
    std::atomic<uint64_t> pages_received{0};
    std::atomic<uint64_t> invalidations_sent{0};
    std::atomic<uint64_t> invalidations_received{0};
    std::atomic<uint64_t> local_invalidations{0};
    std::atomic<uint64_t> held_messages{0};
    std::atomic<uint64_t> page_table_drops{0};

    void record_fault_latency(uint64_t ns) { record(fault_, ns); }
    void record_invalidation_latency(uint64_t ns) { record(inv_, ns); }
    DsmStats snapshot() const;

  private:
    using Buckets = std::array<std::atomic<uint64_t>, kLatencyBuckets>;
    static void record(Buckets& b, uint64_t ns);
    Buckets fault_{};
    Buckets inv_{};
};

}  // namespace kv
