#include "vmm/devices/pit_8254.h"

#include <chrono>

#include "vmm/devices/device_state.h"

namespace kv {
namespace {
constexpr uint64_t kRefreshPeriodNs = 15'085;  // port 0x61 bit 4 toggles at ~66 kHz
constexpr uint8_t kReadBack = 3;               // SC field value of the read-back command

uint32_t modulus(bool bcd) {
    return bcd ? 10000 : 65536;
}

uint32_t from_bcd(uint16_t v) {
    return (v >> 12 & 0xF) * 1000 + (v >> 8 & 0xF) * 100 + (v >> 4 & 0xF) * 10 + (v & 0xF);
}
uint16_t to_bcd(uint32_t v) {
    return uint16_t((v / 1000 % 10) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10);
}
bool periodic(uint8_t mode) {
    return mode == 2 || mode == 3;
}
bool gate_triggered(uint8_t mode) {
    return mode == 1 || mode == 5;
}
}  // namespace

Pit8254::Pit8254(IrqLine irq0, MonotonicClock clock, uint32_t real_ns_per_clock_ns)
    : irq0_(irq0), clock_(std::move(clock)), real_ns_per_clock_ns_(real_ns_per_clock_ns) {}

Pit8254::~Pit8254() {
    stop();
}

Status Pit8254::start() {
    if (thread_.joinable()) return Error{"pit: timer thread already running"};
    thread_ = std::jthread([this](std::stop_token st) { run(st); });
    return {};
}

void Pit8254::stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();  // wakes cv_.wait through the stop token
    thread_.join();
}

void Pit8254::run(std::stop_token stop) {
    std::unique_lock lk(mu_);
    while (!stop.stop_requested()) {
        const uint64_t now = clock_();
        const std::optional<uint64_t> due = poll_locked(now);
        reprogrammed_ = false;
        auto woken = [this] { return reprogrammed_; };
        // The wait ends at the deadline, when the guest reprograms channel 0, or on stop.
        if (due)
            cv_.wait_for(
                lk, stop,
                std::chrono::nanoseconds(*due > now ? (*due - now) * real_ns_per_clock_ns_ : 0),
                woken);
        else
            cv_.wait(lk, stop, woken);
    }
}

Pit8254::Stats Pit8254::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

bool Pit8254::running(const Channel& c) const {
    if (!c.armed) return false;
    return gate_triggered(c.mode) ? c.triggered : c.gate;
}

uint64_t Pit8254::elapsed(const Channel& c, uint64_t now) const {
    if (!running(c)) return c.base_ticks;
    return c.base_ticks + ns_to_ticks(now > c.start_ns ? now - c.start_ns : 0, kHz);
}

uint64_t Pit8254::advance_locked(Channel& c, uint64_t now) {
    if (!periodic(c.mode) || !running(c)) return 0;
    const uint64_t t = elapsed(c, now);
    if (t - c.period_start < c.n) return 0;
    uint64_t ends = 0;
    if (c.next_n) {
        // The count written during the last period takes over at its end.
        c.period_start += c.n;
        c.n = c.next_n;
        c.next_n = 0;
        ++ends;
    }
    const uint64_t periods = (t - c.period_start) / c.n;
    c.period_start += periods * c.n;
    return ends + periods;
}

std::optional<uint64_t> Pit8254::poll(uint64_t now) {
    std::lock_guard lk(mu_);
    return poll_locked(now);
}

std::optional<uint64_t> Pit8254::poll_locked(uint64_t now) {
    for (size_t i = 1; i < ch_.size(); ++i) advance_locked(ch_[i], now);
    Channel& c = ch_[0];
    if (!running(c)) return std::nullopt;
    uint64_t ends = 0;
    if (periodic(c.mode)) {
        ends = advance_locked(c, now);
    } else if ((c.mode == 0 || c.mode == 4) && !c.fired && elapsed(c, now) >= c.n) {
        // Modes 1 and 5 never trigger on channel 0: its gate is tied high.
        c.fired = true;
        ends = 1;
    }
    if (ends) {
        irq0_.pulse();
        ++stats_.interrupts;
        stats_.coalesced += ends - 1;
    }
    uint64_t due_tick;
    if (periodic(c.mode)) {
        due_tick = c.period_start + c.n;
    } else if ((c.mode == 0 || c.mode == 4) && !c.fired) {
        due_tick = c.n;
    } else {
        return std::nullopt;
    }
    return c.start_ns + ticks_to_ns(due_tick - c.base_ticks, kHz);
}

uint16_t Pit8254::count_locked(Channel& c, uint64_t now) {
    if (!c.armed) return c.cr;
    const uint32_t m = modulus(c.bcd);
    const uint64_t t = elapsed(c, now);
    uint32_t v;
    if (gate_triggered(c.mode) && !c.triggered) {
        v = c.n % m;
    } else if (c.mode == 2) {
        advance_locked(c, now);
        v = uint32_t(c.n - (t - c.period_start)) % m;
    } else if (c.mode == 3) {
        // Counts down by two through each half period.
        advance_locked(c, now);
        const uint64_t in = t - c.period_start;
        const uint64_t high = (c.n + 1) / 2;
        const uint64_t h = in < high ? in : in - high;
        v = uint32_t((c.n - 2 * h) & ~uint64_t(1)) % m;
    } else {
        // Modes 0, 1, 4, 5: down from n, wrapping after the terminal count.
        v = uint32_t((uint64_t(c.n) + m - t % m) % m);
    }
    return c.bcd ? to_bcd(v) : uint16_t(v);
}

bool Pit8254::out_locked(Channel& c, uint64_t now) {
    if (!c.armed) return c.mode != 0;  // a control word sets OUT low in mode 0, high otherwise
    const uint64_t t = elapsed(c, now);
    switch (c.mode) {
        case 0:
            return t >= c.n;
        case 1:
            return !c.triggered || t >= c.n;
        case 2:
            if (!running(c)) return true;
            advance_locked(c, now);
            return t - c.period_start != c.n - 1u;  // low for the tick before the reload
        case 3:
            if (!running(c)) return true;
            advance_locked(c, now);
            return t - c.period_start < (c.n + 1) / 2;
        case 4:
            return t != c.n;  // a one-tick strobe at the terminal count
        default:              // 5
            return !c.triggered || t != c.n;
    }
}

uint8_t Pit8254::status_locked(Channel& c, uint64_t now) {
    return uint8_t((out_locked(c, now) ? 0x80 : 0) | (c.null_count ? 0x40 : 0) | c.rw << 4 |
                   c.mode << 1 | (c.bcd ? 1 : 0));
}

void Pit8254::load_locked(Channel& c, uint64_t now) {
    uint32_t n = c.bcd ? from_bcd(c.cr) : c.cr;
    if (n == 0) n = modulus(c.bcd);
    // Modes 2 and 3 divide by n and need n >= 2; a count of 1 is illegal there.
    if (periodic(c.mode) && n < 2) n = 2;
    c.null_count = false;
    // A running rate generator finishes its period first; a gate-triggered mode keeps its
    // run and uses the new count from the next trigger (set_gate_locked applies next_n).
    if (c.armed && ((periodic(c.mode) && running(c)) || gate_triggered(c.mode))) {
        c.next_n = n;
        return;
    }
    c.n = n;
    c.next_n = 0;
    c.fired = false;
    c.armed = true;
    c.base_ticks = 0;
    c.period_start = 0;
    c.start_ns = now;
}

uint8_t Pit8254::read_channel_locked(Channel& c, uint64_t now) {
    if (c.status_latched) {
        c.status_latched = false;
        return c.latched_status;
    }
    const bool latched = c.count_latched;
    const uint16_t v = latched ? c.latched_count : count_locked(c, now);
    uint8_t b;
    if (c.rw == 1) {
        b = uint8_t(v);
        c.count_latched = false;
    } else if (c.rw == 2) {
        b = uint8_t(v >> 8);
        c.count_latched = false;
    } else {
        b = c.read_hi_next ? uint8_t(v >> 8) : uint8_t(v);
        if (c.read_hi_next) c.count_latched = false;
        c.read_hi_next = !c.read_hi_next;
    }
    return b;
}

void Pit8254::write_channel_locked(Channel& c, uint8_t v, uint64_t now) {
    if (c.rw == 1) {
        c.cr = v;
    } else if (c.rw == 2) {
        c.cr = uint16_t(v << 8);
    } else if (!c.write_hi_next) {
        c.cr = uint16_t((c.cr & 0xFF00) | v);
        c.write_hi_next = true;
        // Mode 0: the first byte of a two-byte count stops the count in progress.
        if (c.mode == 0) c.armed = false;
        c.null_count = true;
        return;
    } else {
        c.cr = uint16_t((c.cr & 0x00FF) | v << 8);
        c.write_hi_next = false;
    }
    load_locked(c, now);
}

void Pit8254::write_control_locked(uint8_t v, uint64_t now) {
    const unsigned sc = v >> 6;
    if (sc == kReadBack) {
        // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 3:1
        // select channels 2..0. A latch that was not read yet is kept.
        for (unsigned i = 0; i < 3; ++i) {
            if (!(v & (2u << i))) continue;
            Channel& c = ch_[i];
            if (!(v & 0x20) && !c.count_latched) {
                c.latched_count = count_locked(c, now);
                c.count_latched = true;
            }
            if (!(v & 0x10) && !c.status_latched) {
                c.latched_status = status_locked(c, now);
                c.status_latched = true;
            }
        }
        return;
    }
    Channel& c = ch_[sc];
    const uint8_t rw = (v >> 4) & 3;
    if (rw == 0) {
        // Counter latch command.
        if (!c.count_latched) {
            c.latched_count = count_locked(c, now);
            c.count_latched = true;
            c.read_hi_next = false;
        }
        return;
    }
    uint8_t mode = (v >> 1) & 7;
    if (mode > 5) mode -= 4;  // 6 and 7 are 2 and 3
    const bool gate = c.gate;
    c = Channel{};
    c.gate = gate;
    c.mode = mode;
    c.rw = rw;
    c.bcd = v & 1;
}

void Pit8254::set_gate_locked(Channel& c, bool gate, uint64_t now) {
    if (gate == c.gate) return;
    if (!gate) {
        // Falling edge: modes 0/4 pause, modes 2/3 stop (and reload on the next rise).
        if (running(c) && !gate_triggered(c.mode)) c.base_ticks = elapsed(c, now);
        c.gate = false;
        return;
    }
    c.gate = true;
    if (!c.armed) return;
    if (c.mode == 0 || c.mode == 4) {
        c.start_ns = now;  // resume where the count stopped
    } else {
        // Modes 1, 2, 3, 5: a rising edge (re)starts the count from n.
        if (c.next_n) {
            c.n = c.next_n;
            c.next_n = 0;
        }
        c.triggered = true;
        c.base_ticks = 0;
        c.period_start = 0;
        c.start_ns = now;
    }
}

void Pit8254::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    const uint64_t now = clock_();
    poll_locked(now);
    for (uint8_t& b : data) {
        if (offset < 3) {
            b = read_channel_locked(ch_[offset], now);
        } else if (offset == kPort61Offset) {
            const bool refresh = (now / kRefreshPeriodNs) & 1;
            b = uint8_t((port61_ & 0x0F) | (refresh ? kP61Refresh : 0) |
                        (out_locked(ch_[2], now) ? kP61Out2 : 0));
        } else {
            b = 0xFF;  // the control word register cannot be read
        }
    }
}

void Pit8254::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lk(mu_);
    const uint64_t now = clock_();
    // Deliver what was due under the old programming before changing it.
    poll_locked(now);
    const uint8_t v = data[0];
    if (offset < 3) {
        write_channel_locked(ch_[offset], v, now);
    } else if (offset == kControlOffset) {
        write_control_locked(v, now);
    } else if (offset == kPort61Offset) {
        port61_ = v & 0x0F;
        set_gate_locked(ch_[2], v & kP61Gate2, now);
    }
    // Any write may move channel 0's next deadline; the timer thread recomputes it.
    reprogrammed_ = true;
    cv_.notify_all();
}

template <class V>
void Pit8254::visit_state(V& v) {
    for (size_t i = 0; i < ch_.size(); ++i)
        v.object("ch" + std::to_string(i), [&](auto& w) {
            Channel& c = ch_[i];
            w("mode", c.mode);
            w("rw", c.rw);
            w("bcd", c.bcd);
            w("cr", c.cr);
            w("write_hi_next", c.write_hi_next);
            w("read_hi_next", c.read_hi_next);
            w("count_latched", c.count_latched);
            w("latched_count", c.latched_count);
            w("status_latched", c.status_latched);
            w("latched_status", c.latched_status);
            w("armed", c.armed);
            w("null_count", c.null_count);
            w("triggered", c.triggered);
            w("gate", c.gate);
            w("n", c.n);
            w("next_n", c.next_n);
            w("start_ns", c.start_ns);
            w("base_ticks", c.base_ticks);
            w("period_start", c.period_start);
            w("fired", c.fired);
        });
    v("port61", port61_);
}

void Pit8254::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status Pit8254::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    for (size_t i = 0; i < ch_.size(); ++i) {
        const Channel& c = ch_[i];
        if (c.mode > 5 || c.rw < 1 || c.rw > 3 || c.n > 65536 || c.next_n > 65536)
            return Error{in.where() + ".ch" + std::to_string(i) +
                         ": mode, access or count out of range"};
    }
    reprogrammed_ = true;  // the timer thread recomputes channel 0's deadline
    cv_.notify_all();
    return {};
}

}  // namespace kv
