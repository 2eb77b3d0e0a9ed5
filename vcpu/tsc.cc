#include "vcpu/tsc.h"

#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <array>

namespace kv {

namespace {
uint64_t raw_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}
}  // namespace

uint64_t measure_tsc_khz() {
    std::array<uint64_t, 5> khz{};
    for (auto& k : khz) {
        uint64_t t0 = raw_ns(), c0 = __rdtsc();
        timespec d{0, 10'000'000};  // 10 ms
        nanosleep(&d, nullptr);
        uint64_t t1 = raw_ns(), c1 = __rdtsc();
        k = t1 > t0 ? (c1 - c0) * 1'000'000ull / (t1 - t0) : 0;
    }
    std::sort(khz.begin(), khz.end());
    return khz[khz.size() / 2];
}

uint64_t choose_tsc_khz(uint64_t kvm_khz, uint64_t measured_khz) {
    if (kvm_khz == 0) return measured_khz;
    if (measured_khz == 0) return kvm_khz;
    uint64_t diff = kvm_khz > measured_khz ? kvm_khz - measured_khz : measured_khz - kvm_khz;
    return diff * 100 <= kvm_khz ? kvm_khz : measured_khz;
}

}  // namespace kv
