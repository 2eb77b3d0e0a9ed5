#include "vmm/devices/hpet.h"

#include <string>

#include "vmm/devices/device_state.h"

namespace kv {
namespace {
constexpr uint64_t kTnWritable = Hpet::kTnLevel | Hpet::kTnEnable | Hpet::kTn32Bit;

// The offset of the 8-byte register that `offset` falls in.
uint64_t reg_of(uint64_t offset) {
    return offset & ~uint64_t{7};
}
}  // namespace

Hpet::Hpet(MonotonicClock clock, OnCounter on_counter)
    : clock_(std::move(clock)), on_counter_(std::move(on_counter)) {}

uint64_t Hpet::capabilities() {
    return uint64_t{1}                   // REV_ID
           | uint64_t{kTimers - 1} << 8  // NUM_TIM_CAP
           | uint64_t{1} << 13           // COUNT_SIZE_CAP: 64 bits
           | uint64_t{kVendorId} << 16   // VENDOR_ID
           | uint64_t{kPeriodFs} << 32;  // COUNTER_CLK_PERIOD
}

Hpet::Counter Hpet::counter() const {
    std::lock_guard lk(mu_);
    return counter_;
}

void Hpet::read(uint64_t offset, std::span<uint8_t> data) {
    const uint64_t now = clock_();
    std::lock_guard lk(mu_);
    // An access within one register (the usual case) reads it once: one counter snapshot.
    uint64_t reg = reg_of(offset), v = read_reg_locked(reg, now);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        if (reg_of(at) != reg) v = read_reg_locked(reg = reg_of(at), now);
        data[i] = uint8_t(v >> (8 * (at - reg)));
    }
}

void Hpet::write(uint64_t offset, std::span<const uint8_t> data) {
    const uint64_t now = clock_();
    std::lock_guard lk(mu_);
    size_t i = 0;
    while (i < data.size()) {
        const uint64_t reg = reg_of(offset + i);
        uint64_t v = read_reg_locked(reg, now);
        for (; i < data.size() && reg_of(offset + i) == reg; ++i) {
            const unsigned shift = unsigned(8 * (offset + i - reg));
            v = (v & ~(uint64_t{0xFF} << shift)) | (uint64_t{data[i]} << shift);
        }
        write_reg_locked(reg, v, now);
    }
}

uint64_t Hpet::read_reg_locked(uint64_t reg, uint64_t now_ns) const {
    if (reg == kCapOffset) return capabilities();
    if (reg == kConfOffset) return counter_.running ? kEnable : 0;
    if (reg == kCounterOffset) return counter_.at(now_ns);
    if (reg >= kTimerOffset && reg < kTimerOffset + kTimers * kTimerStride) {
        const Comparator& t = timers_[(reg - kTimerOffset) / kTimerStride];
        switch ((reg - kTimerOffset) % kTimerStride) {
            case 0:
                return t.config | kTnSizeCap;  // INT_ROUTE_CAP (bits 63:32) = 0
            case 8:
                return (t.config & kTn32Bit) ? t.value & 0xFFFFFFFFu : t.value;
            default:
                return 0;  // FSB route: no FSB delivery
        }
    }
    return 0;  // GINTR_STA and the reserved space
}

void Hpet::write_reg_locked(uint64_t reg, uint64_t v, uint64_t now_ns) {
    if (reg == kConfOffset) {
        const bool run = (v & kEnable) != 0;
        if (run == counter_.running) return;
        // Starting: the counter goes on from where it stood; stopping: it holds its value.
        const uint64_t ticks = ns_to_ticks(now_ns, kHz);
        set_counter_locked(run ? Counter{true, counter_.value - ticks}
                               : Counter{false, counter_.value + ticks});
    } else if (reg == kCounterOffset) {
        set_counter_locked(counter_.running ? Counter{true, v - ns_to_ticks(now_ns, kHz)}
                                            : Counter{false, v});
    } else if (reg >= kTimerOffset && reg < kTimerOffset + kTimers * kTimerStride) {
        Comparator& t = timers_[(reg - kTimerOffset) / kTimerStride];
        switch ((reg - kTimerOffset) % kTimerStride) {
            case 0:
                t.config = v & kTnWritable;
                break;
            case 8:
                t.value = (t.config & kTn32Bit) ? v & 0xFFFFFFFFu : v;
                break;
            default:
                break;
        }
    }
}

void Hpet::set_counter_locked(Counter c) {
    if (c == counter_) return;
    counter_ = c;
    if (on_counter_) on_counter_(c);
}

// counter_.value is relative to the clock while running (Counter::at), and the clock reads
// at the restore what it read at the save, so it is saved as it is.
template <class V>
void Hpet::visit_state(V& v) {
    v.object("counter", [&](auto& w) {
        w("running", counter_.running);
        w("value", counter_.value);
    });
    for (size_t i = 0; i < timers_.size(); ++i)
        v.object("timer" + std::to_string(i), [&](auto& w) {
            w("config", timers_[i].config);
            w("value", timers_[i].value);
        });
}

void Hpet::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status Hpet::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    for (size_t i = 0; i < timers_.size(); ++i)
        if (timers_[i].config & ~kTnWritable)
            return Error{in.where() + ".timer" + std::to_string(i) +
                         ".config: bits other than INT_TYPE, INT_ENB and 32MODE set"};
    // The comparators have no interrupt route, so there is no level or deadline to
    // re-evaluate; the other nodes of a multi-node guest serve counter reads from the state
    // they were last told, so tell them this one even if it equals the default.
    if (on_counter_) on_counter_(counter_);
    return {};
}

}  // namespace kv
