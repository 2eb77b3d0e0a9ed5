// Emulated I/O APIC (82093AA-style, version 0x11, 24 pins) at 0xFEC00000.
// Pins raise interrupt messages through the IPI router, so a device interrupt reaches a
// vCPU on whichever node runs it. Level-triggered pins use Remote IRR and are re-raised
// on EOI while still asserted (the LAPIC broadcasts EOIs of level vectors to eoi()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "vcpu/ipi_router.h"
#include "vmm/devices/bus.h"

namespace kv {

class Ioapic : public Device {
  public:
    static constexpr uint64_t kBase = 0xFEC00000;
    static constexpr uint32_t kPins = 24;

    Ioapic(uint8_t id, IpiRouter& router);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    void set_pin(uint32_t pin, bool level);
    void eoi(uint8_t vector);

    uint64_t redirection(uint32_t pin) const;
    uint64_t raised() const { return raised_.load(); }

    // ID, IOREGSEL, redirection entries and pin levels; restoring delivers nothing.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    template <class V>
    void visit_state(V& v);
    void deliver_locked(uint32_t pin);  // called with mu_ held; routes without it
    uint32_t read_reg_locked(uint32_t reg) const;
    void write_reg_locked(uint32_t reg, uint32_t v);

    mutable std::mutex mu_;
    IpiRouter& router_;
    uint8_t id_;
    uint32_t select_ = 0;
    std::array<uint64_t, kPins> redir_;
    std::array<bool, kPins> level_{};
    std::atomic<uint64_t> raised_{0};
};

}  // namespace kv
