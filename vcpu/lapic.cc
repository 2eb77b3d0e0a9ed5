#include "vcpu/lapic.h"

#include <algorithm>
#include <bit>

namespace kv {

namespace {
constexpr uint32_t kMasked = 1u << 16;
constexpr uint32_t kSvrEnable = 1u << 8;
constexpr uint32_t kVersion = 0x00050014;  // integrated APIC, 6 LVT entries
enum : int { kLvtCmci, kLvtTimer, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError };
int lvt_index(uint32_t off) {
    switch (off) {
        case 0x2F0:
            return kLvtCmci;
        case 0x320:
            return kLvtTimer;
        case 0x330:
            return kLvtThermal;
        case 0x340:
            return kLvtPerf;
        case 0x350:
            return kLvtLint0;
        case 0x360:
            return kLvtLint1;
        case 0x370:
            return kLvtError;
        default:
            return -1;
    }
}
}  // namespace

Lapic::Lapic(uint32_t vcpu_index, uint32_t apic_id, Callbacks cb)
    : vcpu_index_(vcpu_index), id_(apic_id), cb_(std::move(cb)) {
    reset();
}

void Lapic::reset() {
    std::lock_guard lk(mu_);
    tpr_ = ldr_ = esr_ = icr_low_ = icr_high_ = 0;
    dfr_ = 0xFFFFFFFF;
    svr_ = 0xFF;
    for (auto& l : lvt_) l = kMasked;
    for (int i = 0; i < 8; ++i) isr_[i] = tmr_[i] = irr_[i] = 0;
    timer_initial_ = timer_divide_ = 0;
    timer_start_ns_ = timer_deadline_ns_ = 0;
}

int Lapic::highest(const uint32_t* bits) const {
    for (int i = 7; i >= 0; --i)
        if (bits[i]) return i * 32 + 31 - std::countl_zero(bits[i]);
    return -1;
}

uint32_t Lapic::ppr_locked() const {
    int isrv = highest(isr_);
    uint32_t isr_class = isrv < 0 ? 0 : uint32_t(isrv) & 0xF0;
    return (tpr_ & 0xF0) >= isr_class ? tpr_ : isr_class;
}

uint64_t Lapic::period_ns_locked(uint32_t count) const {
    uint32_t d = (timer_divide_ & 3) | ((timer_divide_ & 8) >> 1);
    uint64_t divide = 1ull << ((d + 1) & 7);
    return uint64_t(count) * divide * (1'000'000'000ull / kBusHz);
}

uint32_t Lapic::current_count_locked(uint64_t now_ns) const {
    if (timer_initial_ == 0 || timer_deadline_ns_ == 0) return 0;
    uint64_t per_count = period_ns_locked(1);
    uint64_t elapsed = (now_ns - timer_start_ns_) / per_count;
    bool periodic = ((lvt_[kLvtTimer] >> 17) & 3) == 1;
    if (periodic) return timer_initial_ - uint32_t(elapsed % timer_initial_);
    if (elapsed >= timer_initial_ || timer_deadline_ns_ == 0) return 0;
    return timer_initial_ - uint32_t(elapsed);
}

uint32_t Lapic::read(uint32_t off, uint64_t now_ns) {
    std::lock_guard lk(mu_);
    if (off >= 0x100 && off < 0x280) {
        uint32_t idx = (off & 0x7F) >> 4;
        const uint32_t* bank = off < 0x180 ? isr_ : off < 0x200 ? tmr_ : irr_;
        return bank[idx];
    }
    if (int i = lvt_index(off); i >= 0) return lvt_[i];
    switch (off) {
        case 0x20:
            return id_ << 24;
        case 0x30:
            return kVersion;
        case 0x80:
            return tpr_;
        case 0x90:
            return 0;
        case 0xA0:
            return ppr_locked();
        case 0xD0:
            return ldr_;
        case 0xE0:
            return dfr_;
        case 0xF0:
            return svr_;
        case 0x280:
            return esr_;
        case 0x300:
            return icr_low_ & ~(1u << 12);  // delivery is instantaneous: idle
        case 0x310:
            return icr_high_;
        case 0x380:
            return timer_initial_;
        case 0x390:
            return current_count_locked(now_ns);
        case 0x3E0:
            return timer_divide_;
        default:
            return 0;
    }
}

void Lapic::write(uint32_t off, uint32_t v, uint64_t now_ns) {
    std::unique_lock lk(mu_);
    if (int i = lvt_index(off); i >= 0) {
        if (!(svr_ & kSvrEnable)) v |= kMasked;  // software-disabled: LVTs stay masked
        // A mode or vector change does not restart the count: only a write of the initial
        // count arms the timer (a fired one-shot stays stopped).
        lvt_[i] = v;
        return;
    }
    switch (off) {
        case 0x20:
            id_ = v >> 24;
            lk.unlock();
            if (cb_.addressing_changed) cb_.addressing_changed();
            return;
        case 0x80:
            tpr_ = v & 0xFF;
            return;
        case 0xB0: {  // EOI: retire the highest in-service vector
            int vec = highest(isr_);
            if (vec < 0) return;
            isr_[vec / 32] &= ~(1u << (vec % 32));
            bool level = tmr_[vec / 32] & (1u << (vec % 32));
            lk.unlock();
            if (level && cb_.eoi_level) cb_.eoi_level(uint8_t(vec));
            return;
        }
        case 0xD0:
            ldr_ = v & 0xFF000000;
            lk.unlock();
            if (cb_.addressing_changed) cb_.addressing_changed();
            return;
        case 0xE0:
            dfr_ = v | 0x0FFFFFFF;
            lk.unlock();
            if (cb_.addressing_changed) cb_.addressing_changed();
            return;
        case 0xF0: {
            bool was = svr_ & kSvrEnable;
            svr_ = v & 0x03FF;  // no EOI-broadcast suppression (not in the version register)
            if (!(svr_ & kSvrEnable))
                for (auto& l : lvt_) l |= kMasked;
            lk.unlock();
            if (was != bool(v & kSvrEnable) && cb_.addressing_changed) cb_.addressing_changed();
            return;
        }
        case 0x280:
            esr_ = 0;
            return;
        case 0x300: {
            icr_low_ = v;
            InterruptMessage m = decode_icr(icr_low_, icr_high_, vcpu_index_);
            lk.unlock();
            if (cb_.send_ipi) cb_.send_ipi(m);
            return;
        }
        case 0x310:
            icr_high_ = v & 0xFF000000;
            return;
        case 0x380:
            timer_initial_ = v;
            timer_start_ns_ = now_ns;
            update_timer_locked(now_ns);
            return;
        case 0x3E0:
            timer_divide_ = v & 0xB;
            return;
        default:
            return;  // read-only or reserved
    }
}

void Lapic::update_timer_locked(uint64_t now_ns) {
    (void)now_ns;
    if (timer_initial_ == 0) {
        timer_deadline_ns_ = 0;
        return;
    }
    // The deadline follows from the start time; a mode change keeps the count running.
    timer_deadline_ns_ = timer_start_ns_ + period_ns_locked(timer_initial_);
}

uint64_t Lapic::poll_timer(uint64_t now_ns) {
    std::lock_guard lk(mu_);
    if (timer_deadline_ns_ == 0 || now_ns < timer_deadline_ns_) return timer_deadline_ns_;
    uint32_t lvt = lvt_[kLvtTimer];
    bool periodic = ((lvt >> 17) & 3) == 1;
    if (!(lvt & kMasked)) {
        uint8_t vec = uint8_t(lvt & 0xFF);
        if (vec >= 16) {
            irr_[vec / 32] |= 1u << (vec % 32);
            tmr_[vec / 32] &= ~(1u << (vec % 32));
        }
    }
    if (periodic) {
        uint64_t period = period_ns_locked(timer_initial_);
        // Skip periods that were missed entirely: one interrupt for them, as a late CPU sees.
        uint64_t missed = (now_ns - timer_deadline_ns_) / period;
        timer_deadline_ns_ += (missed + 1) * period;
        timer_start_ns_ = timer_deadline_ns_ - period;
    } else {
        timer_deadline_ns_ = 0;
    }
    return timer_deadline_ns_;
}

uint64_t Lapic::timer_deadline() const {
    std::lock_guard lk(mu_);
    return timer_deadline_ns_;
}

bool Lapic::accept(uint8_t vector, bool level_triggered) {
    std::lock_guard lk(mu_);
    if (!(svr_ & kSvrEnable)) return false;
    if (vector < 16) {
        esr_ |= 1u << 6;  // received illegal vector
        return false;
    }
    irr_[vector / 32] |= 1u << (vector % 32);
    if (level_triggered)
        tmr_[vector / 32] |= 1u << (vector % 32);
    else
        tmr_[vector / 32] &= ~(1u << (vector % 32));
    return true;
}

std::optional<uint8_t> Lapic::pending_vector() {
    std::lock_guard lk(mu_);
    int v = highest(irr_);
    if (v < 0) return std::nullopt;
    if ((uint32_t(v) & 0xF0) <= (ppr_locked() & 0xF0)) return std::nullopt;
    return uint8_t(v);
}

void Lapic::ack(uint8_t vector) {
    std::lock_guard lk(mu_);
    irr_[vector / 32] &= ~(1u << (vector % 32));
    isr_[vector / 32] |= 1u << (vector % 32);
}

bool Lapic::lint0_extint() const {
    std::lock_guard lk(mu_);
    // A disabled APIC passes INTR straight through (virtual wire); else LINT0 must be
    // unmasked ExtINT.
    if (!(svr_ & kSvrEnable)) return true;
    uint32_t l = lvt_[kLvtLint0];
    return !(l & kMasked) && ((l >> 8) & 7) == 7;
}

Lapic::Addressing Lapic::addressing() const {
    std::lock_guard lk(mu_);
    return Addressing{uint8_t(id_), uint8_t(ldr_ >> 24), (dfr_ >> 28) == 0xF,
                      bool(svr_ & kSvrEnable)};
}

void Lapic::set_tpr(uint8_t tpr) {
    std::lock_guard lk(mu_);
    tpr_ = tpr;
}

uint8_t Lapic::tpr() const {
    std::lock_guard lk(mu_);
    return uint8_t(tpr_);
}

void Lapic::shift_timer(uint64_t ns) {
    std::lock_guard lk(mu_);
    if (timer_deadline_ns_ == 0) return;
    timer_start_ns_ += ns;
    timer_deadline_ns_ += ns;
}

LapicState Lapic::save(uint64_t now_ns) const {
    std::lock_guard lk(mu_);
    LapicState s;
    s.id = id_;
    s.tpr = tpr_;
    s.ldr = ldr_;
    s.dfr = dfr_;
    s.svr = svr_;
    s.esr = esr_;
    s.icr_low = icr_low_;
    s.icr_high = icr_high_;
    std::copy(std::begin(lvt_), std::end(lvt_), s.lvt);
    std::copy(std::begin(isr_), std::end(isr_), s.isr);
    std::copy(std::begin(tmr_), std::end(tmr_), s.tmr);
    std::copy(std::begin(irr_), std::end(irr_), s.irr);
    s.timer_initial = timer_initial_;
    s.timer_divide = timer_divide_;
    if (timer_deadline_ns_ != 0) {
        s.timer_running = 1;
        s.timer_elapsed_ns = now_ns > timer_start_ns_ ? now_ns - timer_start_ns_ : 0;
        s.timer_remaining_ns = timer_deadline_ns_ > now_ns ? timer_deadline_ns_ - now_ns : 0;
    }
    return s;
}

void Lapic::restore(const LapicState& s, uint64_t now_ns) {
    std::lock_guard lk(mu_);
    id_ = s.id;
    tpr_ = s.tpr;
    ldr_ = s.ldr;
    dfr_ = s.dfr;
    svr_ = s.svr;
    esr_ = s.esr;
    icr_low_ = s.icr_low;
    icr_high_ = s.icr_high;
    std::copy(std::begin(s.lvt), std::end(s.lvt), lvt_);
    std::copy(std::begin(s.isr), std::end(s.isr), isr_);
    std::copy(std::begin(s.tmr), std::end(s.tmr), tmr_);
    std::copy(std::begin(s.irr), std::end(s.irr), irr_);
    timer_initial_ = s.timer_initial;
    timer_divide_ = s.timer_divide;
    if (s.timer_running) {
        timer_start_ns_ = now_ns - std::min(now_ns, s.timer_elapsed_ns);
        // At least 1 ns ahead: a deadline of 0 means "none".
        timer_deadline_ns_ = now_ns + std::max<uint64_t>(s.timer_remaining_ns, 1);
    } else {
        timer_start_ns_ = timer_deadline_ns_ = 0;
    }
}

}  // namespace kv
