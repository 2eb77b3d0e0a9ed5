// Intel 8254 programmable interval timer, ports 0x40-0x43, and the PC's system control
// port B at 0x61 (channel 2 gate and output, speaker enable, refresh toggle).
//
// The device decodes 0x40..0x43 at offsets 0..3 and port 0x61 at kPort61Offset (0x21):
// insert it at kBase with length kSize, and at 0x61 (length 1) with dev_offset
// kPort61Offset (or as PortWindow(pit, kPort61Offset)).
//
// What Linux uses:
//   - channel 0, IRQ 0: mode 2 (rate generator) as its periodic tick before the LAPIC
//     timer takes over, and mode 4 (0x38; mode 0 works the same here) as a one-shot
//     clockevent; "shutdown" is a control word (0x30) with no count, which stops the
//     channel. Interrupts are IrqLine::pulse() on the line given (the ISA pin is edge).
//   - channel 2 with the gate from port 0x61 bit 0, in mode 0, for TSC calibration: the
//     fast path reads the count's MSB as it falls (lohi reads without latching), the slow
//     path polls port 0x61 bit 5 (OUT2) until the terminal count.
// Implemented: channels 0-2, modes 0-5 (6 and 7 alias 2 and 3), lobyte / hibyte / lohi
// access, BCD counting, the counter-latch command and the 8254 read-back command (count
// and/or status), gates (channel 2 only; 0 and 1 are tied high), counts that follow the
// injected clock at 1.193182 MHz. Simplifications: a written count takes effect at once
// rather than on the next input clock edge; a new count in modes 2/3 takes effect at the
// end of the current period, in modes 1/5 at the next gate trigger.
//
// Timing: poll(now) brings the channels up to `now`, pulses IRQ 0 if channel 0 reached a
// terminal count since the last poll, and returns when it is next due. Missed periods are
// coalesced into one pulse (an edge-triggered pin cannot carry more) and counted in
// stats(). Every port access polls first, so reprogramming never drops an interrupt that
// was already due, and the next deadline is recomputed from the new state: a stopped or
// reprogrammed channel has no stale timer. The timer thread (start()) sleeps on a
// condition variable until the next deadline or until the guest reprograms channel 0, and
// calls the same poll(); tests call poll() themselves with a fake clock instead.
//
// Threading: vCPU threads (read/write), the timer thread and test code share the state
// under mu_; IRQ pulses are sent under mu_ (the IrqChip must not call back into devices).
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "base/result.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/clock.h"
#include "vmm/devices/irq.h"

namespace kv {

class Pit8254 : public Device {
  public:
    static constexpr uint64_t kBase = 0x40;
    static constexpr uint64_t kSize = 4;
    static constexpr uint64_t kPort61Offset = 0x61 - kBase;
    static constexpr uint64_t kHz = 1'193'182;
    static constexpr uint64_t kControlOffset = 3;
    // Port 0x61 bits.
    static constexpr uint8_t kP61Gate2 = 0x01, kP61Speaker = 0x02, kP61Refresh = 0x10,
                             kP61Out2 = 0x20;

    struct Stats {
        uint64_t interrupts = 0;  // pulses sent on IRQ 0
        uint64_t coalesced = 0;   // channel 0 periods that ended without a pulse of their own
    };

    // `clock` is the PIT's input time base; a wait of d clock nanoseconds takes
    // d * real_ns_per_clock_ns real ones (more than 1 with time dilation, clock.h).
    explicit Pit8254(IrqLine irq0, MonotonicClock clock = monotonic_ns,
                     uint32_t real_ns_per_clock_ns = 1);
    ~Pit8254() override;
    Pit8254(const Pit8254&) = delete;
    Pit8254& operator=(const Pit8254&) = delete;

    // Starts the timer thread. Stopped and joined by stop() or the destructor.
    Status start();
    void stop();

    // See the header comment. Returns the clock time at which channel 0 next needs a poll,
    // or nothing when it will not interrupt without being reprogrammed.
    std::optional<uint64_t> poll(uint64_t now);

    Stats stats() const;

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // Times are the clock's: restored under a clock that reads what it read at the save.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    template <class V>
    void visit_state(V& v);
    struct Channel {
        // Programming (control word).
        uint8_t mode = 0;  // 0..5
        uint8_t rw = 3;    // 1 = low byte, 2 = high byte, 3 = low then high
        bool bcd = false;
        // Count register and the write / read byte flip-flops for rw = 3.
        uint16_t cr = 0;
        bool write_hi_next = false;
        bool read_hi_next = false;
        // Latches.
        bool count_latched = false;
        uint16_t latched_count = 0;
        bool status_latched = false;
        uint8_t latched_status = 0;
        // Counting. Time t (in input-clock ticks) of the current run is
        // base_ticks + ticks since start_ns while the channel runs, base_ticks while it is
        // paused by its gate.
        bool armed = false;      // a count was loaded since the control word
        bool null_count = true;  // for the status byte
        bool triggered = false;  // modes 1 and 5: a gate rising edge started the run
        bool gate = true;
        uint32_t n = 0;       // the count of the current run, 1..65536 (10000 in BCD)
        uint32_t next_n = 0;  // modes 2/3: count for the next period, 0 = none
        uint64_t start_ns = 0;
        uint64_t base_ticks = 0;
        uint64_t period_start = 0;  // modes 2/3: t at which the current period began
        bool fired = false;         // modes 0/4 (channel 0): the one-shot interrupt was sent
    };

    bool running(const Channel& c) const;
    uint64_t elapsed(const Channel& c, uint64_t now) const;
    // Brings periodic bookkeeping up to `now`; returns the number of period ends crossed.
    uint64_t advance_locked(Channel& c, uint64_t now);
    std::optional<uint64_t> poll_locked(uint64_t now);
    uint16_t count_locked(Channel& c, uint64_t now);
    bool out_locked(Channel& c, uint64_t now);
    uint8_t status_locked(Channel& c, uint64_t now);
    uint8_t read_channel_locked(Channel& c, uint64_t now);
    void write_channel_locked(Channel& c, uint8_t v, uint64_t now);
    void write_control_locked(uint8_t v, uint64_t now);
    void load_locked(Channel& c, uint64_t now);
    void set_gate_locked(Channel& c, bool gate, uint64_t now);
    void run(std::stop_token stop);

    const IrqLine irq0_;
    const MonotonicClock clock_;
    const uint32_t real_ns_per_clock_ns_;

    mutable std::mutex mu_;
    std::condition_variable_any cv_;  // the timer thread waits here
    bool reprogrammed_ = false;       // channel 0 changed: the thread recomputes its deadline
    std::array<Channel, 3> ch_;
    uint8_t port61_ = 0;  // bits 3:0 as written
    Stats stats_;
    std::jthread thread_;  // last: destroyed (joined) before the state it uses
};

}  // namespace kv
