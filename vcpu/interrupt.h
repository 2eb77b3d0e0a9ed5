// Interrupt messages as they travel from a source (ICR write, IOAPIC, MSI, PIC) through
// the IPI router to a vCPU. The same record crosses the interconnect for remote vCPUs.
#pragma once

#include <cstdint>

namespace kv {

enum class DeliveryMode : uint8_t {
    Fixed = 0,
    LowestPriority = 1,
    Smi = 2,
    Nmi = 4,
    Init = 5,
    StartUp = 6,
    ExtInt = 7,
};

enum class Shorthand : uint8_t { None = 0, Self = 1, AllIncludingSelf = 2, AllExcludingSelf = 3 };

struct InterruptMessage {
    uint8_t vector = 0;
    DeliveryMode mode = DeliveryMode::Fixed;
    bool logical = false;  // destination mode
    bool level_triggered = false;
    bool assert = true;  // INIT level de-assert carries assert=false
    Shorthand shorthand = Shorthand::None;
    uint32_t dest = 0;         // 8-bit xAPIC destination (physical id or logical mask)
    uint32_t source_vcpu = 0;  // for shorthands
};

// Decodes a LAPIC ICR (low and high dwords) into a message.
inline InterruptMessage decode_icr(uint32_t low, uint32_t high, uint32_t source_vcpu) {
    InterruptMessage m;
    m.vector = uint8_t(low & 0xFF);
    m.mode = DeliveryMode((low >> 8) & 7);
    m.logical = (low >> 11) & 1;
    m.assert = (low >> 14) & 1;
    m.level_triggered = (low >> 15) & 1;
    m.shorthand = Shorthand((low >> 18) & 3);
    m.dest = high >> 24;
    m.source_vcpu = source_vcpu;
    return m;
}

}  // namespace kv
