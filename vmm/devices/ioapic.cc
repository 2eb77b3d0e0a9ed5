#include "vmm/devices/ioapic.h"

#include <string>

#include "vmm/devices/device_state.h"

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

// Not saved: raised_ (a statistic). The ID is the guest's (it may have rewritten it, and
// the MADT in guest memory names it), so a restore replaces the one given at construction.
template <class V>
void Ioapic::visit_state(V& v) {
    v("id", id_);
    v("select", select_);
    v("redir", redir_);
    v("level", level_);
}

void Ioapic::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

// Nothing is delivered: the messages sent before the save are in the LAPICs' state (the
// vCPUs' parts) and each level pin they are for still has Remote IRR set, so EOIs and pin
// changes carry on from where the guest was. The pins' inputs are driven by the devices,
// whose levels are saved here and which drive them again on their own restore (an edge pin
// already high sees no new edge). An unmasked level pin that is asserted without Remote
// IRR would have been delivered at once, so no save holds one: it is refused.
Status Ioapic::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    if (select_ > 0xFF)
        return Error{in.where() + ".select: " + std::to_string(select_) +
                     " is wider than IOREGSEL's 8 bits"};
    for (uint32_t pin = 0; pin < kPins; ++pin) {
        const uint64_t e = redir_[pin];
        const std::string w = in.where() + ".redir[" + std::to_string(pin) + "]";
        if (e & ~(kWritable | kRemoteIrr)) return Error{w + ": sets reserved or read-only bits"};
        if ((e & kRemoteIrr) && !(e & kLevel))
            return Error{w + ": Remote IRR on an edge-triggered pin"};
        if ((e & kLevel) && !(e & kMask) && !(e & kRemoteIrr) && level_[pin])
            return Error{w + ": a level pin asserted and unmasked without Remote IRR"};
    }
    return {};
}

}  // namespace kv
