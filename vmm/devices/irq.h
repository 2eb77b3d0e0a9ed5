// Interrupt wiring between devices and the interrupt controllers.
#pragma once

#include <cstdint>

namespace kv {

// Something that accepts level changes on global system interrupts (the PIC+IOAPIC pair).
class IrqChip {
  public:
    virtual ~IrqChip() = default;
    virtual void set_irq(uint32_t gsi, bool level) = 0;
};

// One device's interrupt line. Edge devices call pulse(); level devices call set().
class IrqLine {
  public:
    IrqLine() = default;
    IrqLine(IrqChip* chip, uint32_t gsi) : chip_(chip), gsi_(gsi) {}
    void set(bool level) const {
        if (chip_) chip_->set_irq(gsi_, level);
    }
    void pulse() const {
        set(true);
        set(false);
    }
    uint32_t gsi() const { return gsi_; }

  private:
    IrqChip* chip_ = nullptr;
    uint32_t gsi_ = 0;
};

}  // namespace kv
