// Emulated local APIC (xAPIC, MMIO at 0xFEE00000), one per vCPU, in user space.
//
// Threading: the owning vCPU thread does register reads/writes, acknowledges interrupts
// and polls the timer; any thread may accept() an interrupt for it. One mutex guards the
// state; callbacks are invoked with the mutex released.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "vcpu/interrupt.h"

namespace kv {

// Everything guest-visible of one LAPIC, its timer relative to the moment of the save
// (not to this host's clock), so that it restores on another host (vcpu/cpu_state.h). A
// fixed little-endian layout: it travels as is.
struct LapicState {
    uint32_t id = 0, tpr = 0, ldr = 0, dfr = 0, svr = 0, esr = 0;
    uint32_t icr_low = 0, icr_high = 0;
    uint32_t lvt[7] = {};
    uint32_t reserved0 = 0;
    uint32_t isr[8] = {}, tmr[8] = {}, irr[8] = {};
    uint32_t timer_initial = 0, timer_divide = 0;
    uint32_t timer_running = 0, reserved = 0;  // 1: the deadline below is set
    uint64_t timer_elapsed_ns = 0;             // since the current period began
    uint64_t timer_remaining_ns = 0;           // until the deadline
};
static_assert(sizeof(LapicState) == 192);  // no padding: every field is named

class Lapic {
  public:
    static constexpr uint64_t kBase = 0xFEE00000;
    static constexpr uint64_t kSize = 0x1000;
    // The timer counts at this rate before the divider (a 1 GHz APIC bus, as QEMU uses).
    static constexpr uint64_t kBusHz = 1'000'000'000;

    struct Callbacks {
        // An ICR write: send this interrupt message.
        std::function<void(const InterruptMessage&)> send_ipi;
        // EOI of a level-triggered vector: the IOAPIC clears Remote IRR.
        std::function<void(uint8_t vector)> eoi_level;
        // APIC ID, LDR, DFR or the software-enable bit changed (addressing table update).
        std::function<void()> addressing_changed;
    };

    Lapic(uint32_t vcpu_index, uint32_t apic_id, Callbacks cb);

    // MMIO from the owning vCPU. `now_ns` is CLOCK_MONOTONIC time.
    uint32_t read(uint32_t offset, uint64_t now_ns);
    void write(uint32_t offset, uint32_t value, uint64_t now_ns);

    // Any thread: request a fixed/lowest-priority interrupt. Returns false if the APIC
    // is software-disabled (the interrupt is dropped, as on hardware).
    bool accept(uint8_t vector, bool level_triggered);

    // Owning thread: highest vector that may be delivered now (IRR above PPR), if any.
    std::optional<uint8_t> pending_vector();
    // Owning thread: the CPU took `vector` (IRR -> ISR).
    void ack(uint8_t vector);

    // Owning thread: fires an expired timer (sets IRR) and returns the next deadline in
    // ns (0 = none).
    uint64_t poll_timer(uint64_t now_ns);
    uint64_t timer_deadline() const;

    // LINT0/LINT1 configuration (for ExtINT from the PIC and NMI).
    bool lint0_extint() const;

    // Addressing state for destination matching.
    struct Addressing {
        uint8_t apic_id;
        uint8_t ldr;   // logical APIC ID (LDR bits 31:24)
        bool flat;     // DFR model: flat (true) or cluster
        bool enabled;  // software enabled (SVR bit 8)
    };
    Addressing addressing() const;

    // INIT: registers back to their reset values (APIC ID kept).
    void reset();
    // The vCPU was paused for `ns`: a running timer resumes where it stood (its count and
    // deadline move by the pause), so a pause does not make it fire early or in bursts.
    void shift_timer(uint64_t ns);
    // The whole state at `now_ns`, and back: the timer resumes with the same elapsed and
    // remaining time at the restore's `now_ns`. restore() keeps the callbacks and index.
    LapicState save(uint64_t now_ns) const;
    void restore(const LapicState& s, uint64_t now_ns);
    void set_tpr(uint8_t tpr);
    uint8_t tpr() const;

  private:
    uint32_t ppr_locked() const;
    int highest(const uint32_t* bits) const;
    void update_timer_locked(uint64_t now_ns);
    uint32_t current_count_locked(uint64_t now_ns) const;
    uint64_t period_ns_locked(uint32_t count) const;

    mutable std::mutex mu_;
    uint32_t vcpu_index_;
    uint32_t id_;
    uint32_t tpr_ = 0, ldr_ = 0, dfr_ = 0xFFFFFFFF, svr_ = 0xFF, esr_ = 0;
    uint32_t icr_low_ = 0, icr_high_ = 0;
    uint32_t lvt_[7];  // CMCI, timer, thermal, perf, LINT0, LINT1, error
    uint32_t isr_[8] = {}, tmr_[8] = {}, irr_[8] = {};
    uint32_t timer_initial_ = 0, timer_divide_ = 0;
    uint64_t timer_start_ns_ = 0, timer_deadline_ns_ = 0;
    Callbacks cb_;
};

}  // namespace kv
