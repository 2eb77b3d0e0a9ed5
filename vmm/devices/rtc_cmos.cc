#include "vmm/devices/rtc_cmos.h"

#include <algorithm>

#include "vmm/devices/device_state.h"

namespace kv {
namespace {
constexpr uint8_t kIndexMask = 0x7F;
constexpr uint8_t kNmiMaskBit = 0x80;
constexpr uint8_t kHourPm = 0x80;
constexpr uint8_t kDividerMask = 0x70, kDividerNormal = 0x20;
constexpr int64_t kNsPerSec = 1'000'000'000;
// The update cycle takes 1984 us and UIP rises 244 us before it starts; reporting UIP for
// the last 244 us of each second is what a reader polling for the update sees.
constexpr int64_t kUipWindowNs = 244'000;

// Farther from the host's clock than any time the registers can express (year 25755).
constexpr int64_t kMaxOffsetS = 1'000'000'000'000;

int64_t floor_div(int64_t a, int64_t b) {
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}
}  // namespace

RtcCmos::RtcCmos(WallClock clock) : clock_(std::move(clock)) {
    ram_[kRegA] = 0x26;  // 32.768 kHz divider, 1024 Hz periodic rate: the firmware default
    ram_[kRegB] = kB24Hour;
    ram_[kRegD] = kDVrt;
    last_c_second_ = guest_seconds_locked();
}

bool RtcCmos::nmi_masked() const {
    std::lock_guard lk(mu_);
    return nmi_masked_;
}

int64_t RtcCmos::guest_seconds_locked(int64_t* subsec_ns) const {
    int64_t ns = clock_();
    int64_t s = floor_div(ns, kNsPerSec);
    if (subsec_ns) *subsec_ns = ns - s * kNsPerSec;
    return s + offset_s_;
}

uint8_t RtcCmos::to_reg(unsigned v) const {
    if (ram_[kRegB] & kBBinary) return uint8_t(v);
    return uint8_t(((v / 10) % 10) << 4 | (v % 10));
}

unsigned RtcCmos::from_reg(uint8_t v) const {
    if (ram_[kRegB] & kBBinary) return v;
    return (v >> 4) * 10 + (v & 0x0F);
}

void RtcCmos::format_time_locked(int64_t t) {
    time_t tt = time_t(t);
    tm f{};
    gmtime_r(&tt, &f);
    ram_[kSeconds] = to_reg(unsigned(f.tm_sec));
    ram_[kMinutes] = to_reg(unsigned(f.tm_min));
    if (ram_[kRegB] & kB24Hour) {
        ram_[kHours] = to_reg(unsigned(f.tm_hour));
    } else {
        unsigned h12 = f.tm_hour % 12 == 0 ? 12 : unsigned(f.tm_hour % 12);
        ram_[kHours] = uint8_t(to_reg(h12) | (f.tm_hour >= 12 ? kHourPm : 0));
    }
    ram_[kDayOfWeek] = to_reg(unsigned(f.tm_wday + 1));
    ram_[kDayOfMonth] = to_reg(unsigned(f.tm_mday));
    ram_[kMonth] = to_reg(unsigned(f.tm_mon + 1));
    const unsigned year = unsigned(f.tm_year + 1900);
    ram_[kYear] = to_reg(year % 100);
    ram_[kCentury] = to_reg(year / 100);
}

int64_t RtcCmos::parse_time_locked() const {
    tm f{};
    f.tm_sec = int(from_reg(ram_[kSeconds]));
    f.tm_min = int(from_reg(ram_[kMinutes]));
    if (ram_[kRegB] & kB24Hour) {
        f.tm_hour = int(from_reg(ram_[kHours]));
    } else {
        int h = int(from_reg(ram_[kHours] & ~kHourPm)) % 12;
        f.tm_hour = h + ((ram_[kHours] & kHourPm) ? 12 : 0);
    }
    f.tm_mday = int(from_reg(ram_[kDayOfMonth]));
    f.tm_mon = int(from_reg(ram_[kMonth])) - 1;
    f.tm_year = int(from_reg(ram_[kCentury]) * 100 + from_reg(ram_[kYear])) - 1900;
    return int64_t(timegm(&f));  // normalises out-of-range fields as mktime does
}

bool RtcCmos::is_time_field(uint8_t index) {
    switch (index) {
        case kSeconds:
        case kMinutes:
        case kHours:
        case kDayOfWeek:
        case kDayOfMonth:
        case kMonth:
        case kYear:
        case kCentury:
            return true;
        default:
            return false;
    }
}

void RtcCmos::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (auto& b : data) b = offset == 1 ? read_reg_locked(index_) : 0xFF;
}

void RtcCmos::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lk(mu_);
    if (offset == 0) {
        index_ = data[0] & kIndexMask;
        nmi_masked_ = (data[0] & kNmiMaskBit) != 0;
    } else if (offset == 1) {
        write_reg_locked(index_, data[0]);
    }
}

uint8_t RtcCmos::read_reg_locked(uint8_t index) {
    const bool set = ram_[kRegB] & kBSet;
    if (is_time_field(index)) {
        // While SET is on, the guest reads back what it wrote.
        if (!set) format_time_locked(guest_seconds_locked());
        return ram_[index];
    }
    switch (index) {
        case kRegA: {
            int64_t subsec = 0;
            guest_seconds_locked(&subsec);
            bool running = (ram_[kRegA] & kDividerMask) == kDividerNormal && !set;
            bool uip = running && subsec >= kNsPerSec - kUipWindowNs;
            return uint8_t((ram_[kRegA] & ~kAUip) | (uip ? kAUip : 0));
        }
        case kRegC: {
            // Flags are worked out lazily from the time since the last read (no interrupt).
            int64_t now = guest_seconds_locked();
            uint8_t c = 0;
            if (now != last_c_second_ && !set) c |= kCUf;
            if ((c & kCUf) && (ram_[kRegB] & kBUie)) c |= kCIrqf;
            last_c_second_ = now;
            return c;
        }
        case kRegD:
            return kDVrt;
        default:
            return ram_[index];
    }
}

void RtcCmos::write_reg_locked(uint8_t index, uint8_t v) {
    const bool set = ram_[kRegB] & kBSet;
    if (is_time_field(index)) {
        // Outside SET, one field changes and the clock keeps running from the new time.
        if (!set) format_time_locked(guest_seconds_locked());
        ram_[index] = v;
        if (!set) offset_s_ += parse_time_locked() - guest_seconds_locked();
        return;
    }
    switch (index) {
        case kRegA:
            ram_[kRegA] = v & ~kAUip;
            return;
        case kRegB: {
            const bool new_set = v & kBSet;
            if (new_set && !set) {
                // Freeze: the fields hold the time at this moment until SET is cleared.
                format_time_locked(guest_seconds_locked());
            }
            if (set && !new_set) {
                // The guest's new time starts now; parse it in the format it was written in
                // (the old register B).
                offset_s_ += parse_time_locked() - guest_seconds_locked();
            }
            if (new_set) v &= uint8_t(~kBUie);  // setting SET clears UIE on the chip
            ram_[kRegB] = v;
            return;
        }
        case kRegC:
        case kRegD:
            return;  // read-only
        default:
            ram_[index] = v;
    }
}

// The guest's time is saved as its offset from the host's wall clock, not as a date: a
// guest restored an hour later reads a time an hour on, as under QEMU's default
// `-rtc base=utc` (the RTC follows the host's clock plus what the guest set). While SET is
// on, the frozen fields are in ram_ and stay frozen. last_c_second_ is a guest second too:
// a restore after time has passed reports UF on the next read of register C, as it should.
template <class V>
void RtcCmos::visit_state(V& v) {
    v("index", index_);
    v("nmi_masked", nmi_masked_);
    v("offset_s", offset_s_);
    v("last_c_second", last_c_second_);
    v("ram", ram_);
}

void RtcCmos::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status RtcCmos::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    if (index_ > kIndexMask)
        return Error{in.where() + ".index: " + std::to_string(index_) +
                     " is not a register (0..127)"};
    if (offset_s_ > kMaxOffsetS || offset_s_ < -kMaxOffsetS)
        return Error{in.where() + ".offset_s: " + std::to_string(offset_s_) +
                     " s from the host's clock is beyond any date the RTC can hold"};
    // Nothing to recompute: the time and register C's flags are worked out on each read,
    // and IRQ 8 is not wired (no periodic, alarm or update interrupt to re-arm).
    return {};
}

}  // namespace kv
