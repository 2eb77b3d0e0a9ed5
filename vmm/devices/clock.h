// Time sources for the devices that follow real time (PIT, ACPI PM timer, RTC, UART
// console timing). Each device takes its clock as a function so that tests can inject a
// fake one and step it deterministically; production code passes monotonic_ns /
// realtime_ns.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <mutex>

namespace kv {

// Nanoseconds from an arbitrary origin; must never go backwards.
using MonotonicClock = std::function<uint64_t()>;
// Nanoseconds since the Unix epoch (UTC).
using WallClock = std::function<int64_t()>;

inline uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

inline int64_t realtime_ns() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + int64_t(ts.tv_nsec);
}

// Time dilation: a guest clock that runs `factor` times slower than `base`, counted from
// the moment it is made (config key `time-dilation`, docs/configuration.md). Devices that
// follow it (PIT, ACPI PM timer, HPET) wait `factor` real nanoseconds per clock nanosecond.
inline MonotonicClock dilated(MonotonicClock base, uint32_t factor) {
    if (factor <= 1) return base;
    const uint64_t origin = base();
    return [base = std::move(base), origin, factor] { return origin + (base() - origin) / factor; };
}

// A clock that stands still while the guest is paused (stop/cont, snapshots): `base`
// minus the time spent paused, so the devices that follow it (PIT, ACPI PM timer, HPET)
// neither jump nor fire a burst of missed ticks at resume. Any thread; never goes back.
class PausableClock {
  public:
    explicit PausableClock(MonotonicClock base) : base_(std::move(base)) {}
    uint64_t now() const {
        std::lock_guard lk(mu_);
        return (paused_ ? paused_at_ : base_()) - paused_total_;
    }
    void pause() {
        std::lock_guard lk(mu_);
        if (paused_) return;
        paused_ = true;
        paused_at_ = base_();
    }
    void resume() {
        std::lock_guard lk(mu_);
        if (!paused_) return;
        paused_ = false;
        paused_total_ += base_() - paused_at_;
    }
    // Runs on from `t` (a snapshot's restore: the devices' timestamps stay valid). The
    // arithmetic is modulo 2^64, so `t` may be ahead of `base`.
    void restart_at(uint64_t t) {
        std::lock_guard lk(mu_);
        paused_ = false;
        paused_total_ = base_() - t;
    }

  private:
    MonotonicClock base_;
    mutable std::mutex mu_;
    bool paused_ = false;        // under mu_
    uint64_t paused_at_ = 0;     // under mu_: base_() when the pause began
    uint64_t paused_total_ = 0;  // under mu_: base_ time spent paused before now
};

// Whole ticks of a `hz` clock in `ns` nanoseconds (floor). 128-bit intermediate: ns * hz
// overflows 64 bits after a few hours at MHz rates.
inline uint64_t ns_to_ticks(uint64_t ns, uint64_t hz) {
    return uint64_t((unsigned __int128)ns * hz / 1'000'000'000u);
}

// The first nanosecond at which `ticks` ticks of a `hz` clock have elapsed (ceil), so that
// ns_to_ticks(ticks_to_ns(t, hz), hz) == t.
inline uint64_t ticks_to_ns(uint64_t ticks, uint64_t hz) {
    unsigned __int128 n = (unsigned __int128)ticks * 1'000'000'000u;
    return uint64_t((n + hz - 1) / hz);
}

}  // namespace kv
