// Builders for the individual ACPI tables; internal to vmm/boot (acpi.cc places them).
// Each returns a complete table with a correct checksum.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "vmm/boot/acpi.h"
#include "vmm/boot/byte_writer.h"

namespace kv::boot::acpi {

// Identification written into every table header.
inline constexpr std::string_view kOemId = "KRVSR ";
inline constexpr std::string_view kOemTableId = "KERRVISR";
inline constexpr std::string_view kCreatorId = "KRVS";
inline constexpr uint32_t kOemRevision = 1;
inline constexpr uint32_t kCreatorRevision = 1;
inline constexpr size_t kHeaderSize = 36;

// Starts a table: the 36-byte header with length and checksum still zero.
ByteWriter begin_table(std::string_view signature, uint8_t revision);
// Fills in the length and the checksum; returns the finished bytes.
std::vector<uint8_t> finish_table(ByteWriter& w);

std::vector<uint8_t> facs();
std::vector<uint8_t> dsdt(const AcpiConfig& cfg);
std::vector<uint8_t> fadt(uint64_t facs_gpa, uint64_t dsdt_gpa, bool fixed_power_button);
std::vector<uint8_t> madt(const AcpiConfig& cfg, uint8_t ioapic_id);
std::vector<uint8_t> srat(const AcpiConfig& cfg);
std::vector<uint8_t> slit(const std::vector<std::vector<uint8_t>>& distances);
std::vector<uint8_t> hpet(const AcpiHpet& hpet);
std::vector<uint8_t> xsdt(const std::vector<uint64_t>& tables);
std::vector<uint8_t> rsdp(uint64_t xsdt_gpa);

}  // namespace kv::boot::acpi
