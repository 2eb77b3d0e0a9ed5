// High Precision Event Timer (IA-PC HPET specification 1.0a), as a clock: a 64-bit main
// counter at 100 MHz that the guest reads through MMIO at 0xFED00000 (the ACPI HPET table
// announces it), and three comparators without interrupt routes.
//
// Why it exists: Linux registers the HPET as a clocksource in time_init(), before the
// other CPUs start, and the clocksource watchdog then checks the TSC against it. Without
// one the watchdog's only reference until fs_initcall is jiffies, which lose ticks while a
// vCPU of a multi-node guest stalls on remote memory, and the watchdog wrongly marks the
// TSC unstable (docs/multi-node.md, "One HPET").
//
//   0x000 GCAP_ID   RO: rev 1, 3 comparators, 64-bit counter, no legacy replacement,
//                   COUNTER_CLK_PERIOD = 10 ns (in fs) in bits 63:32
//   0x010 GEN_CONF  ENABLE_CNF (bit 0) starts and stops the main counter; LEG_RT_CNF reads 0
//   0x020 GINTR_STA reads 0 (no comparator ever fires); writes ignored
//   0x0F0 MAIN_CNT  the counter; writable (while halted, as the specification asks; a write
//                   while running moves it too)
//   0x100 + 0x20 n  Tn_CONF_CAP: INT_TYPE, INT_ENB and 32MODE are stored; 64-bit capable,
//                   not periodic-capable, no FSB, INT_ROUTE_CAP = 0: the comparator has no
//                   interrupt line, so it never fires (Linux uses the HPET as a
//                   clocksource only)
//   0x108 + 0x20 n  Tn_COMPARATOR, stored (low 32 bits in 32-bit mode)
//   0x110 + 0x20 n  Tn_FSB_ROUTE reads 0
// Other offsets read 0 and ignore writes. Accesses of 1, 2, 4 or 8 bytes at any offset
// work on the 64-bit register they fall in; one access reads one counter snapshot.
//
// Over several nodes every node reads the counter itself: Counter is the whole state it
// needs, the clock is the guest TSC on every node, and on_counter (called under the
// device's mutex, in order) lets the I/O node tell the other nodes each change.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>

#include "base/result.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/clock.h"

namespace kv {

class Hpet : public Device {
  public:
    static constexpr uint64_t kBase = 0xFED00000;
    static constexpr uint64_t kSize = 0x400;
    static constexpr uint64_t kHz = 100'000'000;
    static constexpr uint32_t kPeriodFs = 10'000'000;  // 10^15 / kHz
    static constexpr unsigned kTimers = 3;
    static constexpr uint16_t kVendorId = 0x4B56;  // "KV"

    static constexpr uint64_t kCapOffset = 0x000, kConfOffset = 0x010, kIsrOffset = 0x020,
                              kCounterOffset = 0x0F0, kTimerOffset = 0x100, kTimerStride = 0x20;
    // GEN_CONF
    static constexpr uint64_t kEnable = 1u << 0;
    // Tn_CONF_CAP
    static constexpr uint64_t kTnLevel = 1u << 1, kTnEnable = 1u << 2, kTnPeriodic = 1u << 3,
                              kTnPeriodicCap = 1u << 4, kTnSizeCap = 1u << 5, kTn32Bit = 1u << 8;

    // The main counter: `value` while halted; `value` + ticks of the clock while running
    // (mod 2^64).
    struct Counter {
        bool running = false;
        uint64_t value = 0;
        uint64_t at(uint64_t ns) const { return running ? value + ns_to_ticks(ns, kHz) : value; }
        bool operator==(const Counter&) const = default;
    };
    using OnCounter = std::function<void(const Counter&)>;

    explicit Hpet(MonotonicClock clock = monotonic_ns, OnCounter on_counter = {});

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // Times are the clock's, as the PIT's; a restore announces the counter (on_counter).
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

    Counter counter() const;
    // The GCAP_ID register's value.
    static uint64_t capabilities();

  private:
    template <class V>
    void visit_state(V& v);
    struct Comparator {
        uint64_t config = 0;  // the writable bits only
        uint64_t value = 0;
    };
    uint64_t read_reg_locked(uint64_t reg, uint64_t now_ns) const;
    void write_reg_locked(uint64_t reg, uint64_t v, uint64_t now_ns);
    void set_counter_locked(Counter c);

    const MonotonicClock clock_;
    const OnCounter on_counter_;
    mutable std::mutex mu_;
    Counter counter_;
    std::array<Comparator, kTimers> timers_{};
};

}  // namespace kv
