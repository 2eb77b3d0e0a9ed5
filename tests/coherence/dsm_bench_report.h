// What the two coherence benchmarks share: percentiles of a sample set, and the report of
// the figures against the floor (4 KiB round trip + local resolve p50), ending with the
// RESULT lines. kv-dsm-bench uses threads as CPUs, kv-dsm-kvm-bench vCPUs (its labels
// start with "vCPU ", its RESULT names with "vcpu_").
#pragma once

#include <algorithm>
#include <cstdio>
#include <vector>

#include "memory/coherence_engine.h"

namespace kv {

struct Percentiles {
    double p50, p99;
};

inline Percentiles pct(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

// Latencies in ns; ping-pong as rounds per second and ns per round.
struct DsmBenchFigures {
    Percentiles rtt, local, remote_read, upgrade_1, upgrade_3;
    double rounds_per_s = 0, round_ns = 0;
    double floor() const { return rtt.p50 + local.p50; }
};

// From the remote read line on: the figures with their ratios to the floor, each engine's
// counters, then one RESULT line per figure. `label` starts the human lines, `key` the
// RESULT names; `pingpong_note` (may be empty) ends the ping-pong line's parenthesis.
inline void print_dsm_bench_report(const DsmBenchFigures& f, const char* label, const char* key,
                                   const char* pingpong_note,
                                   const std::vector<const CoherenceEngine*>& engines) {
    auto us = [](double ns) { return ns / 1000.0; };
    const double floor = f.floor();
    std::printf("%sremote read fault: p50 %.1f us (%.2fx floor) p99 %.1f us (%.2fx)\n", label,
                us(f.remote_read.p50), f.remote_read.p50 / floor, us(f.remote_read.p99),
                f.remote_read.p99 / floor);
    std::printf("%swrite upgrade, 1 sharer: p50 %.1f us (%.2fx) p99 %.1f us\n", label,
                us(f.upgrade_1.p50), f.upgrade_1.p50 / floor, us(f.upgrade_1.p99));
    std::printf("%swrite upgrade, 3 sharers: p50 %.1f us (%.2fx) p99 %.1f us\n", label,
                us(f.upgrade_3.p50), f.upgrade_3.p50 / floor, us(f.upgrade_3.p99));
    std::printf("%sping-pong: %.0f rounds/s (%.1f us per round, %.2fx floor%s)\n", label,
                f.rounds_per_s, us(f.round_ns), f.round_ns / floor, pingpong_note);
    for (size_t k = 0; k < engines.size(); ++k) {
        std::printf("node %zu counters:\n", k);
        engines[k]->stats().print(stdout);
    }
    std::printf("RESULT %srtt_4k_p50_us %.2f\n", key, us(f.rtt.p50));
    std::printf("RESULT %slocal_resolve_p50_us %.2f\n", key, us(f.local.p50));
    std::printf("RESULT %sfloor_us %.2f\n", key, us(floor));
    std::printf("RESULT %sremote_read_fault_p50_us %.2f\n", key, us(f.remote_read.p50));
    std::printf("RESULT %sremote_read_fault_p99_us %.2f\n", key, us(f.remote_read.p99));
    std::printf("RESULT %sremote_read_fault_p50_ratio %.3f\n", key, f.remote_read.p50 / floor);
    std::printf("RESULT %sremote_read_fault_p99_ratio %.3f\n", key, f.remote_read.p99 / floor);
    std::printf("RESULT %supgrade_1_sharer_p50_us %.2f\n", key, us(f.upgrade_1.p50));
    std::printf("RESULT %supgrade_1_sharer_p50_ratio %.3f\n", key, f.upgrade_1.p50 / floor);
    std::printf("RESULT %supgrade_3_sharers_p50_us %.2f\n", key, us(f.upgrade_3.p50));
    std::printf("RESULT %supgrade_3_sharers_p50_ratio %.3f\n", key, f.upgrade_3.p50 / floor);
    std::printf("RESULT %spingpong_rounds_per_s %.0f\n", key, f.rounds_per_s);
    std::printf("RESULT %spingpong_round_ratio %.3f\n", key, f.round_ns / floor);
    std::fflush(stdout);
}

}  // namespace kv
