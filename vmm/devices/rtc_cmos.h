// MC146818 real-time clock and its 128 bytes of CMOS RAM, at I/O 0x70 (index) and 0x71
// (data); insert at kBase with length kSize.
//
// Port 0x70 is write-only on a PC: bits 6:0 select a register, bit 7 masks NMI. The mask bit
// is remembered (nmi_masked()) but nothing acts on it, and it never changes which register
// is selected. Reading 0x70 returns 0xFF.
//
// Registers:
//   0x00-0x09  seconds, alarm seconds, minutes, alarm minutes, hours, alarm hours, day of
//              week (1 = Sunday), day of month, month, year (00-99)
//   0x0A  A    bit 7 UIP (read-only): set during the last 244 us of every second, when the
//              divider runs (bits 6:4 = 010) and B.SET is clear; bits 6:0 are stored
//   0x0B  B    SET (bit 7) freezes the clock so the guest can write a new time, which takes
//              effect when SET is cleared; DM (bit 2) 1 = binary, 0 = BCD; 24/12 (bit 1)
//              1 = 24-hour, 0 = 12-hour with bit 7 of the hour meaning PM
//   0x0C  C    flags, cleared by reading: UF (bit 4, and IRQF if UIE) when a second has
//              passed since the last read. No interrupt is raised: IRQ 8 is not wired.
//   0x0D  D    VRT (bit 7) always set: RAM and time are valid
//   0x32       century (BCD or binary like the other fields), the FADT's CENTURY index
//   others     CMOS RAM, kept as written
//
// The time is the host's UTC clock (WallClock) plus an offset the guest sets by writing the
// time registers (hwclock --systohc), so the guest never changes the host's clock. Fields
// are formatted on each read, so changing DM or 24/12 converts the values at once (a real
// chip would keep the old bytes until the next update).
//
// Threading: index and data accesses from any vCPU under one mutex. Linux takes rtc_lock
// around each index/data pair, so pairs from different vCPUs do not interleave.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <mutex>

#include "base/result.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/clock.h"

namespace kv {

class RtcCmos : public Device {
  public:
    static constexpr uint64_t kBase = 0x70;
    static constexpr uint64_t kSize = 2;
    // Register indices.
    static constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kDayOfWeek = 0x06,
                             kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09, kRegA = 0x0A,
                             kRegB = 0x0B, kRegC = 0x0C, kRegD = 0x0D, kCentury = 0x32;
    // Register A/B/C/D bits.
    static constexpr uint8_t kAUip = 0x80, kBSet = 0x80, kBUie = 0x10, kBBinary = 0x04,
                             kB24Hour = 0x02, kCIrqf = 0x80, kCUf = 0x10, kDVrt = 0x80;

    explicit RtcCmos(WallClock clock = realtime_ns);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    bool nmi_masked() const;

    // Snapshots: registers, CMOS RAM and the guest's offset from the host's wall clock.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    template <class V>
    void visit_state(V& v);
    uint8_t read_reg_locked(uint8_t index);
    void write_reg_locked(uint8_t index, uint8_t v);
    static bool is_time_field(uint8_t index);
    // Guest time (host time plus offset) in whole seconds, and the nanoseconds into it.
    int64_t guest_seconds_locked(int64_t* subsec_ns = nullptr) const;
    // The time fields of `t`, in the current format, stored into ram_.
    void format_time_locked(int64_t t);
    // The time the time fields in ram_ describe, in the current format.
    int64_t parse_time_locked() const;
    uint8_t to_reg(unsigned v) const;
    unsigned from_reg(uint8_t v) const;

    const WallClock clock_;
    mutable std::mutex mu_;
    uint8_t index_ = 0;
    bool nmi_masked_ = false;
    int64_t offset_s_ = 0;            // guest time minus host time
    int64_t last_c_second_ = 0;       // guest second at the last read of register C
    std::array<uint8_t, 128> ram_{};  // time fields are refreshed from the clock on read
};

}  // namespace kv
