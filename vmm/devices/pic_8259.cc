#include "vmm/devices/pic_8259.h"

#include <string>

#include "vmm/devices/device_state.h"

namespace kv {

int Pic8259::Chip::highest(uint8_t bits) const {
    // Priority rotates: the line after lowest_priority is the highest.
    for (int i = 1; i <= 8; ++i) {
        int irq = (lowest_priority + i) & 7;
        if (bits & (1 << irq)) return irq;
    }
    return -1;
}

int Pic8259::Chip::pending() const {
    int req = highest(uint8_t(irr & ~imr));
    if (req < 0) return -1;
    int srv = highest(isr);
    if (srv < 0) return req;
    // Request must have higher priority than the highest in service.
    int rp = (req - lowest_priority - 1) & 7, sp = (srv - lowest_priority - 1) & 7;
    return rp < sp ? req : -1;
}

void Pic8259::Chip::set(int irq, bool level) {
    uint8_t bit = uint8_t(1 << irq);
    if (elcr & bit) {  // level triggered
        if (level)
            irr |= bit;
        else
            irr &= ~bit;
    } else if (level && !(last & bit)) {
        irr |= bit;
    }
    if (level)
        last |= bit;
    else
        last &= ~bit;
}

void Pic8259::Chip::eoi_nonspecific() {
    int srv = highest(isr);
    if (srv >= 0) isr &= uint8_t(~(1 << srv));
}

void Pic8259::Chip::write(int port, uint8_t v) {
    if (port == 0) {
        if (v & 0x10) {  // ICW1
            icw_step = 1;
            icw4 = v & 1;
            imr = 0;
            isr = irr = 0;
            lowest_priority = 7;
            read_isr = false;
            return;
        }
        if (v & 0x08) {  // OCW3
            if (v & 0x04) poll = true;
            if (v & 0x02) read_isr = v & 1;
            return;
        }
        // OCW2
        int cmd = v >> 5;
        switch (cmd) {
            case 1:
                eoi_nonspecific();
                break;  // non-specific EOI
            case 3:
                isr &= uint8_t(~(1 << (v & 7)));
                break;  // specific EOI
            case 5: {   // rotate on non-specific EOI
                int srv = highest(isr);
                if (srv >= 0) {
                    isr &= uint8_t(~(1 << srv));
                    lowest_priority = uint8_t(srv);
                }
                break;
            }
            case 6:
                lowest_priority = v & 7;
                break;  // set priority
            case 7:     // rotate on specific EOI
                isr &= uint8_t(~(1 << (v & 7)));
                lowest_priority = v & 7;
                break;
            default:
                break;
        }
        return;
    }
    switch (icw_step) {
        case 1:
            base = v & 0xF8;
            icw_step = 2;
            return;  // ICW2
        case 2:
            icw_step = icw4 ? 3 : 0;
            return;  // ICW3 (cascade wiring is fixed)
        case 3:
            auto_eoi = v & 2;
            icw_step = 0;
            return;  // ICW4
        default:
            imr = v;
            return;  // OCW1
    }
}

uint8_t Pic8259::Chip::read(int port) {
    if (port == 1) return imr;
    return read_isr ? isr : irr;
}

Pic8259::Pic8259(std::function<void(bool)> output) : output_cb_(std::move(output)) {
    slave_.lowest_priority = 7;
}

Pic8259::Chip& Pic8259::chip_for(uint64_t off) {
    return off >= 0x80 ? slave_ : master_;
}

void Pic8259::update_locked(bool& changed, bool& level) {
    // The slave's INT is the master's IRQ 2 (always treated as a level).
    bool slave_int = slave_.pending() >= 0;
    if (slave_int)
        master_.irr |= 0x04;
    else
        master_.irr &= ~0x04;
    bool now = master_.pending() >= 0;
    changed = now != out_;
    out_ = now;
    level = now;
}

void Pic8259::read(uint64_t off, std::span<uint8_t> data) {
    bool changed = false, level = false;
    {
        std::lock_guard lk(mu_);
        uint8_t v = 0xFF;
        if (off == 0x4B0)
            v = master_.elcr;
        else if (off == 0x4B1)
            v = slave_.elcr;
        else if (off <= 1 || (off >= 0x80 && off <= 0x81)) {
            Chip& c = chip_for(off);
            if (c.poll) {
                c.poll = false;
                int p = c.pending();
                v = p < 0 ? 0 : uint8_t(0x80 | p);
                if (p >= 0) {
                    c.irr &= uint8_t(~(1 << p));
                    c.isr |= uint8_t(1 << p);
                }
            } else {
                v = c.read(int(off & 1));
            }
        }
        store_le(data, v);
        for (size_t i = 1; i < data.size(); ++i) data[i] = 0xFF;
        update_locked(changed, level);  // a poll read acknowledges like INTA
    }
    if (changed && output_cb_) output_cb_(level);
}

void Pic8259::write(uint64_t off, std::span<const uint8_t> data) {
    bool changed, level;
    {
        std::lock_guard lk(mu_);
        uint8_t v = data[0];
        if (off == 0x4B0)
            master_.elcr = v & 0xF8;  // IRQ 0-2 are always edge
        else if (off == 0x4B1)
            slave_.elcr = v & 0xDE;  // IRQ 8 and 13 are always edge
        else if (off <= 1 || (off >= 0x80 && off <= 0x81))
            chip_for(off).write(int(off & 1), v);
        update_locked(changed, level);
    }
    if (changed && output_cb_) output_cb_(level);
}

void Pic8259::set_irq(uint32_t irq, bool level) {
    if (irq >= 16 || irq == 2) return;
    bool changed, lvl;
    {
        std::lock_guard lk(mu_);
        if (irq < 8)
            master_.set(int(irq), level);
        else
            slave_.set(int(irq - 8), level);
        update_locked(changed, lvl);
    }
    if (changed && output_cb_) output_cb_(lvl);
}

uint8_t Pic8259::acknowledge() {
    uint8_t vec;
    bool changed, level;
    {
        std::lock_guard lk(mu_);
        auto take = [](Chip& c, int irq) {
            uint8_t bit = uint8_t(1 << irq);
            if (!(c.elcr & bit)) c.irr &= ~bit;
            if (!c.auto_eoi) c.isr |= bit;
        };
        int m = master_.pending();
        if (m < 0) {
            vec = master_.base | 7;  // spurious
        } else if (m == 2) {
            int s = slave_.pending();
            take(master_, 2);
            if (s < 0) {
                vec = slave_.base | 7;
            } else {
                take(slave_, s);
                vec = uint8_t(slave_.base | s);
            }
        } else {
            take(master_, m);
            vec = uint8_t(master_.base | m);
        }
        update_locked(changed, level);
    }
    if (changed && output_cb_) output_cb_(level);
    return vec;
}

bool Pic8259::output() const {
    std::lock_guard lk(mu_);
    return out_;
}

// Everything but out_, the master's INT level, which follows from the rest (and the
// master's IRR bit 2, the slave's INT, which update_locked() recomputes too). `last` is the
// level of each input pin, which edge detection needs.
template <class V>
void Pic8259::visit_state(V& v) {
    auto chip = [](auto& w, Chip& c) {
        w("irr", c.irr);
        w("isr", c.isr);
        w("imr", c.imr);
        w("last", c.last);
        w("elcr", c.elcr);
        w("base", c.base);
        w("icw_step", c.icw_step);
        w("lowest_priority", c.lowest_priority);
        w("icw4", c.icw4);
        w("read_isr", c.read_isr);
        w("auto_eoi", c.auto_eoi);
        w("poll", c.poll);
    };
    v.object("master", [&](auto& w) { chip(w, master_); });
    v.object("slave", [&](auto& w) { chip(w, slave_); });
}

void Pic8259::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status Pic8259::restore_state(StateLoader& in) {
    bool changed, level;
    {
        std::lock_guard lk(mu_);
        visit_state(in);
        if (auto st = in.finish(); !st) return st;
        auto check = [&](const char* name, const Chip& c, uint8_t edge_only) -> Status {
            const std::string w = in.where() + "." + name;
            if (c.icw_step > 3)
                return Error{w + ".icw_step: " + std::to_string(c.icw_step) +
                             " is not a step of the initialization sequence (0-3)"};
            if (c.lowest_priority > 7)
                return Error{w + ".lowest_priority: " + std::to_string(c.lowest_priority) +
                             " is not an IRQ of the chip (0-7)"};
            if (c.base & 7)
                return Error{w + ".base: bits 2:0 are the IRQ number and must be clear"};
            if (c.elcr & edge_only)
                return Error{w + ".elcr: level trigger on an IRQ that is always edge"};
            return {};
        };
        if (auto st = check("master", master_, 0x07); !st) return st;  // IRQ 0-2
        if (auto st = check("slave", slave_, 0x21); !st) return st;    // IRQ 8 and 13
        update_locked(changed, level);
    }
    // The INT pin (the BSP's LINT0) is driven whether or not it changed: the receiver of a
    // restored machine starts low, or was restored on its own (the vCPU state carries it).
    if (output_cb_) output_cb_(level);
    return {};
}

}  // namespace kv
