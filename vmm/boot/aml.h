// A small AML (ACPI Machine Language) encoder: just the terms Kerrvisor's DSDT uses.
// Each function returns the encoded bytes of one term; containers take their children
// already encoded. Encodings follow ACPI 6.x chapter 20 (AML grammar) and 6.4 (resource
// descriptors).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace kv::boot::aml {

using Bytes = std::vector<uint8_t>;

// A NameString: "\\_SB_.COM1", "_HID", "RTC" (segments shorter than 4 are '_'-padded).
Bytes name_string(std::string_view path);
// The shortest integer encoding: ZeroOp, OneOp, Byte/Word/DWord/QWord prefix.
Bytes integer(uint64_t v);
Bytes string(std::string_view s);
// EISAID("PNP0501"): the compressed 32-bit EISA id, as a DWord integer.
Bytes eisa_id(std::string_view id);

// Name (NAME, object)
Bytes name(std::string_view nm, const Bytes& object);
// Scope (PATH) { terms }
Bytes scope(std::string_view path, const std::vector<Bytes>& terms);
// Device (NAME) { terms }
Bytes device(std::string_view nm, const std::vector<Bytes>& terms);
// Package () { elements }
Bytes package(const std::vector<Bytes>& elements);
// Buffer () { bytes }
Bytes buffer(const Bytes& data);

// PkgLength for a body of `body_len` bytes (the encoding counts its own bytes).
Bytes pkg_length(size_t body_len);

// ResourceTemplate () { ... } for _CRS.
class ResourceTemplate {
  public:
    // IO (Decode16, min, max, align, len)
    ResourceTemplate& io(uint16_t min, uint16_t max, uint8_t align, uint8_t len);
    // IRQNoFlags () { irq }: edge-triggered, active-high, exclusive ISA IRQ.
    ResourceTemplate& irq_no_flags(uint8_t irq);
    // WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, len)
    ResourceTemplate& word_bus_number(uint16_t min, uint16_t max);
    // WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...)
    ResourceTemplate& word_io(uint16_t min, uint16_t max);
    // DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
    // ReadWrite, ...)
    ResourceTemplate& dword_memory(uint32_t min, uint32_t max);
    // Buffer with the descriptors and an end tag.
    Bytes build() const;

  private:
    Bytes descriptors_;
};

}  // namespace kv::boot::aml
