// The guest's TSC frequency. Without kvmclock the guest is told it on its command line
// (tsc_early_khz=), so it must be right: KVM_GET_TSC_KHZ reports what the host kernel
// believes, which in an emulated lab host can be far off (its own calibration under TCG
// fails), while the guest's TSC runs at the real rate. We measure it against
// CLOCK_MONOTONIC_RAW and prefer KVM's figure only when the two agree within 1%.
#pragma once

#include <cstdint>

namespace kv {

// Measures the TSC rate (kHz) over a few short intervals; the median is returned.
uint64_t measure_tsc_khz();

// The rate to advertise given KVM's figure (0 if unknown) and a measurement.
uint64_t choose_tsc_khz(uint64_t kvm_khz, uint64_t measured_khz);

}  // namespace kv
