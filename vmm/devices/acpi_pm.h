// ACPI fixed-hardware power management registers (PM1a event/control, PM timer, GPE0) of
// a platform without SMI (the OS finds ACPI mode on). One device decodes I/O 0x600..0x627
// (kSize bytes); the gaps between the blocks read all-ones and ignore writes.
//
//   0x600 PM1_STS  16 bits, write 1 to clear     0x602 PM1_EN   16 bits
//   0x604 PM1_CNT  16 bits: SCI_EN (bit 0) always reads 1 because the FADT has no SMI
//                  command port (the OS finds ACPI already enabled); SLP_TYP bits 10-12;
//                  SLP_EN bit 13 is write-only: SLP_EN with SLP_TYP = 5 (the DSDT's \_S5)
//                  calls the power-off callback, other sleep types are logged and ignored
//   0x608 PM_TMR   24-bit free-running counter at 3.579545 MHz (FADT TMR_VAL_EXT = 0)
//   0x620 GPE0_STS 4 bytes, write 1 to clear     0x624 GPE0_EN  4 bytes
//
// Every register may be accessed with any width: accesses are handled byte by byte, and a
// PM_TMR read takes one snapshot of the counter for all its bytes.
//
// SCI (GSI 9): the line is driven as a level, high while (PM1_STS & PM1_EN) has an event
// bit or (GPE0_STS & GPE0_EN) is non-zero. Events generated today: the power button
// (press_power_button(), e.g. on SIGTERM) and GPEs raised by set_gpe() (nothing calls it
// yet). TMR_STS is set when the counter's bit 23 toggles, but only noticed lazily when
// PM1_STS is read: no thread watches the timer, so TMR_EN never raises an SCI. Linux does not
// use the timer-overflow event (it reads PM_TMR as a clocksource), so nothing is lost.
//
// Threading: vCPU threads and the integrator's threads (press_power_button, set_gpe) call
// in concurrently; state is under one mutex. The SCI level is driven under the mutex so that
// level changes reach the interrupt controller in order (the IrqChip must not call back
// into devices). The power-off callback runs after the mutex is released, once per
// qualifying write: it must be idempotent and must not wait for the writing vCPU.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "base/result.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/clock.h"
#include "vmm/devices/irq.h"

namespace kv {

class AcpiPm : public Device {
  public:
    static constexpr uint64_t kBase = 0x600;  // the FADT's PM1a_EVT_BLK
    static constexpr uint64_t kSize = 0x28;   // through the end of GPE0_BLK
    static constexpr uint64_t kPm1EvtOffset = 0x00, kPm1CntOffset = 0x04, kPmTmrOffset = 0x08,
                              kGpe0Offset = 0x20;
    static constexpr uint64_t kTimerHz = 3'579'545;
    static constexpr uint16_t kSlpTypS5 = 5;

    // PM1_STS / PM1_EN bits.
    static constexpr uint16_t kTmrSts = 1u << 0;     // timer bit 23 toggled
    static constexpr uint16_t kBmSts = 1u << 4;      // bus master (status only)
    static constexpr uint16_t kGblSts = 1u << 5;     // global lock release
    static constexpr uint16_t kPwrBtnSts = 1u << 8;  // fixed power button
    static constexpr uint16_t kSlpBtnSts = 1u << 9;  // fixed sleep button
    static constexpr uint16_t kRtcSts = 1u << 10;    // RTC alarm
    static constexpr uint16_t kWakSts = 1u << 15;    // woke from sleep (status only)

    // PM1_CNT bits.
    static constexpr uint16_t kSciEn = 1u << 0;
    static constexpr uint16_t kSlpTypShift = 10, kSlpTypMask = 7u << kSlpTypShift;
    static constexpr uint16_t kSlpEn = 1u << 13;

    // The counter reads 0 at `origin_ns` of `clock` (default: at construction).
    AcpiPm(IrqLine sci, std::function<void()> on_power_off, MonotonicClock clock = monotonic_ns,
           std::optional<uint64_t> origin_ns = std::nullopt);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // The registers and the counter's origin (a clock time, as the PIT's); a restore drives SCI.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

    // Sets PWRBTN_STS: with PWRBTN_EN the guest gets an SCI and (under Linux's ACPI button
    // driver) starts an orderly shutdown.
    void press_power_button();
    // Sets GPE0_STS bit `n` (0..31), for future hot-plug notifications.
    void set_gpe(unsigned n);

    // The 24-bit PM_TMR value now (as the guest would read it).
    uint32_t timer_value() const;
    // The PM_TMR value `ns` after the counter's origin.
    static uint32_t timer_at(uint64_t ns) { return uint32_t(ns_to_ticks(ns, kTimerHz) & 0xFFFFFF); }

  private:
    template <class V>
    void visit_state(V& v);
    uint8_t read_byte_locked(uint64_t offset, uint32_t tmr);
    // Returns true when the write asks for S5.
    bool write_byte_locked(uint64_t offset, uint8_t v);
    void update_tmr_sts_locked();
    void update_sci_locked();
    uint64_t ticks_now() const;

    const IrqLine sci_;
    const std::function<void()> on_power_off_;
    const MonotonicClock clock_;
    // The counter reads 0 here. Read without mu_ by vCPU threads: only restore_state()
    // changes it, before any vCPU runs.
    uint64_t origin_ns_;

    std::mutex mu_;
    uint16_t pm1_sts_ = 0;
    uint16_t pm1_en_ = 0;
    uint16_t pm1_cnt_ = kSciEn;
    uint32_t gpe_sts_ = 0;
    uint32_t gpe_en_ = 0;
    uint64_t tmr_epoch_ = 0;  // counter value >> 23 when TMR_STS was last brought up to date
    bool sci_level_ = false;
};

}  // namespace kv
