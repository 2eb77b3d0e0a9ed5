// The cascaded 8259A pair (master 0x20/0x21, slave 0xA0/0xA1, ELCR 0x4D0/0x4D1).
// Linux masks it once the IOAPIC runs, but probes it, and falls back to it (through the
// BSP's LINT0 as ExtINT) if the IOAPIC timer check fails, so it must behave.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "vmm/devices/bus.h"

namespace kv {

class Pic8259 : public Device {
  public:
    // `output` is called (outside the lock) when the master's INT line changes.
    explicit Pic8259(std::function<void(bool)> output);

    // Device interface: offsets are port - 0x20, so insert the ranges 0x20-0x21,
    // 0xA0-0xA1 and 0x4D0-0x4D1 with dev_offset = base - 0x20.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    void set_irq(uint32_t irq, bool level);
    // INTA cycle: the vector to inject (spurious 7/15 if nothing is pending).
    uint8_t acknowledge();
    bool output() const;

    // Both chips' registers and pin levels; the INT output is driven again on restore.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    struct Chip {
        uint8_t irr = 0, isr = 0, imr = 0xFF, last = 0, elcr = 0;
        uint8_t base = 0, icw_step = 0, lowest_priority = 7;
        bool icw4 = false, read_isr = false, auto_eoi = false, poll = false;
        int highest(uint8_t bits) const;
        int pending() const;  // highest unmasked request above in-service priority, or -1
        void set(int irq, bool level);
        void write(int port, uint8_t v);
        uint8_t read(int port);
        void eoi_nonspecific();
    };
    template <class V>
    void visit_state(V& v);
    void update_locked(bool& changed, bool& level);
    Chip& chip_for(uint64_t off);

    mutable std::mutex mu_;
    Chip master_, slave_;
    bool out_ = false;
    std::function<void(bool)> output_cb_;
};

}  // namespace kv
