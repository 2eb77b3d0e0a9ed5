#include "vmm/devices/ioapic.h"

namespace kv {

namespace {
constexpr uint64_t kMask = 1ull << 16;
constexpr uint64_t kLevel = 1ull << 15;
constexpr uint64_t kRemoteIrr = 1ull << 14;
constexpr uint64_t kWritable = 0xFF000000'0001AFFFull;  // dest, mask, trigger, polarity,
                                                        // dest mode, delivery mode, vector
InterruptMessage message_for(uint64_t e) {
    InterruptMessage m;
    m.vector = uint8_t(e & 0xFF);
    m.mode = DeliveryMode((e >> 8) & 7);
    m.logical = (e >> 11) & 1;
    m.level_triggered = e & kLevel;
    m.dest = uint32_t(e >> 56);
    return m;
}
}  // namespace

Ioapic::Ioapic(uint8_t id, IpiRouter& router) : router_(router), id_(id) {
    redir_.fill(kMask);
}

void Ioapic::read(uint64_t off, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    uint32_t v = 0;
    if (off == 0x00)
        v = select_;
    else if (off == 0x10)
        v = read_reg_locked(select_);
    store_le(data, v);
}

void Ioapic::write(uint64_t off, std::span<const uint8_t> data) {
    std::unique_lock lk(mu_);
    uint32_t v = uint32_t(load_le(data));
    if (off == 0x00) {
        select_ = v & 0xFF;
    } else if (off == 0x10) {
        write_reg_locked(select_, v);
    }
}

uint32_t Ioapic::read_reg_locked(uint32_t reg) const {
    switch (reg) {
        case 0:
            return uint32_t(id_) << 24;
        case 1:
            return ((kPins - 1) << 16) | 0x11;
        case 2:
            return uint32_t(id_) << 24;
        default:
            if (reg >= 0x10 && reg < 0x10 + 2 * kPins) {
                uint64_t e = redir_[(reg - 0x10) / 2];
                return (reg & 1) ? uint32_t(e >> 32) : uint32_t(e);
            }
            return 0;
    }
}

void Ioapic::write_reg_locked(uint32_t reg, uint32_t v) {
    if (reg == 0) {
        id_ = uint8_t((v >> 24) & 0xF);
        return;
    }
    if (reg < 0x10 || reg >= 0x10 + 2 * kPins) return;
    uint32_t pin = (reg - 0x10) / 2;
    uint64_t e = redir_[pin];
    uint64_t nv =
        (reg & 1) ? (e & 0xFFFFFFFFull) | (uint64_t(v) << 32) : (e & 0xFFFFFFFF'00000000ull) | v;
    redir_[pin] = (nv & kWritable) | (e & kRemoteIrr);
    // Rewriting a pin as edge clears Remote IRR: Linux relies on this to unstick a level
    // pin on IOAPICs without an EOI register (version < 0x20, like this one).
    if (!(redir_[pin] & kLevel)) redir_[pin] &= ~kRemoteIrr;
    // Unmasking a level pin that is still asserted delivers it now.
    if ((redir_[pin] & kLevel) && !(redir_[pin] & kMask) && level_[pin] &&
        !(redir_[pin] & kRemoteIrr))
        deliver_locked(pin);
}

void Ioapic::deliver_locked(uint32_t pin) {
    uint64_t e = redir_[pin];
    if (e & kLevel) redir_[pin] |= kRemoteIrr;
    raised_.fetch_add(1, std::memory_order_relaxed);
    InterruptMessage m = message_for(e);
    // Routing may kick vCPU threads and take their locks; it never calls back into the
    // IOAPIC synchronously (EOIs come from vCPU threads later), so holding mu_ is safe and
    // keeps Remote IRR and delivery ordered.
    router_.route(m);
}

void Ioapic::set_pin(uint32_t pin, bool level) {
    if (pin >= kPins) return;
    std::lock_guard lk(mu_);
    bool was = level_[pin];
    level_[pin] = level;
    uint64_t e = redir_[pin];
    if (e & kMask) return;
    if (e & kLevel) {
        if (level && !(e & kRemoteIrr)) deliver_locked(pin);
    } else if (level && !was) {
        deliver_locked(pin);
    }
}

void Ioapic::eoi(uint8_t vector) {
    std::lock_guard lk(mu_);
    for (uint32_t pin = 0; pin < kPins; ++pin) {
        uint64_t& e = redir_[pin];
        if ((e & kLevel) && (e & kRemoteIrr) && (e & 0xFF) == vector) {
            e &= ~kRemoteIrr;
            if (level_[pin] && !(e & kMask)) deliver_locked(pin);
        }
    }
}

uint64_t Ioapic::redirection(uint32_t pin) const {
    std::lock_guard lk(mu_);
    return redir_.at(pin);
}

}  // namespace kv
