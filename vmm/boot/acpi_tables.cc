#include "vmm/boot/acpi_tables.h"

#include "vmm/boot/layout.h"

namespace kv::boot::acpi {

namespace {

// Generic Address Structure address spaces and access sizes (ACPI 6.x, 5.2.3.2).
constexpr uint8_t kSystemMemory = 0, kSystemIo = 1;
constexpr uint8_t kAccessByte = 1, kAccessWord = 2, kAccessDword = 3;

void gas(ByteWriter& w, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr) {
    w.u8(space);
    w.u8(bit_width);
    w.u8(0);  // bit offset
    w.u8(access);
    w.u64(addr);
}
void gas_none(ByteWriter& w) {
    w.zeros(12);
}

// FADT fixed feature flags (5.2.9, table 5.10) and IA-PC boot architecture flags (5.2.9.3).
constexpr uint32_t kFadtWbinvd = 1u << 0;             // WBINVD works: no flush-size emulation
constexpr uint32_t kFadtProcC1 = 1u << 2;             // HLT (C1) works on every CPU
constexpr uint32_t kFadtPwrButton = 1u << 4;          // power button absent or control method
constexpr uint32_t kFadtSlpButton = 1u << 5;          // no fixed-feature sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;       // RESET_REG is valid
constexpr uint16_t kBootArchLegacyDevices = 1u << 0;  // ISA devices (UART, RTC, PIC, PIT)
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;  // do not probe VGA
// 8042 (bit 1) stays clear: there is no keyboard controller.

// FADT C-state latencies above these values mean "C2/C3 not supported" (5.2.9).
constexpr uint16_t kNoC2Latency = 101;
constexpr uint16_t kNoC3Latency = 1001;

// MADT entry types and flags (5.2.12).
constexpr uint8_t kMadtLocalApic = 0, kMadtIoApic = 1, kMadtIso = 2, kMadtLapicNmi = 4;
constexpr uint32_t kMadtPcatCompat = 1u << 0;  // an 8259 pair is present (and masked later)
constexpr uint32_t kLapicEnabled = 1u << 0;
// MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2.
constexpr uint16_t kIntiConforming = 0x0;
constexpr uint16_t kIntiActiveHigh = 0x1;
constexpr uint16_t kIntiLevel = 0x3 << 2;
constexpr uint8_t kAllProcessors = 0xFF;

// SRAT entry types and flags (5.2.16).
constexpr uint8_t kSratCpu = 0, kSratMemory = 1;
constexpr uint32_t kSratEnabled = 1u << 0;

}  // namespace

ByteWriter begin_table(std::string_view signature, uint8_t revision) {
    ByteWriter w;
    w.fixed(signature, 4);
    w.u32(0);  // length, finish_table()
    w.u8(revision);
    w.u8(0);  // checksum, finish_table()
    w.fixed(kOemId, 6);
    w.fixed(kOemTableId, 8);
    w.u32(kOemRevision);
    w.fixed(kCreatorId, 4);
    w.u32(kCreatorRevision);
    return w;
}

std::vector<uint8_t> finish_table(ByteWriter& w) {
    w.put_u32_at(4, static_cast<uint32_t>(w.size()));
    auto& b = w.data();
    b[9] = static_cast<uint8_t>(-acpi_checksum(b.data(), b.size()));
    return std::move(b);
}

std::vector<uint8_t> facs() {
    // Not a checksummed table and no standard header: Linux wants one for a
    // non-hardware-reduced platform (global lock, waking vector), even if unused.
    ByteWriter w;
    w.fixed("FACS", 4);
    w.u32(64);  // length
    w.u32(0);   // hardware signature: never changes, no S4 hibernation to firmware
    w.u32(0);   // firmware waking vector (no S3)
    w.u32(0);   // global lock: free
    w.u32(0);   // flags: no S4BIOS, no 64-bit wake
    w.u64(0);   // X firmware waking vector
    w.u8(2);    // version
    w.zeros(3);
    w.u32(0);  // OSPM flags
    w.zeros(24);
    return std::move(w.data());
}

std::vector<uint8_t> fadt(uint64_t facs_gpa, uint64_t dsdt_gpa, bool fixed_power_button) {
    ByteWriter w = begin_table("FACP", 6);
    w.u32(static_cast<uint32_t>(facs_gpa));  // 36 FIRMWARE_CTRL
    w.u32(static_cast<uint32_t>(dsdt_gpa));  // 40 DSDT
    w.u8(0);                                 // 44 reserved
    w.u8(0);                                 // 45 preferred PM profile: unspecified
    w.u16(kSciIrq);                          // 46 SCI_INT
    w.u32(0);                 // 48 SMI_CMD: none; ACPI mode is permanently on (SCI_EN reads 1)
    w.u8(0);                  // 52 ACPI_ENABLE
    w.u8(0);                  // 53 ACPI_DISABLE
    w.u8(0);                  // 54 S4BIOS_REQ
    w.u8(0);                  // 55 PSTATE_CNT
    w.u32(kPm1aEvtPort);      // 56 PM1a_EVT_BLK
    w.u32(0);                 // 60 PM1b_EVT_BLK
    w.u32(kPm1aCntPort);      // 64 PM1a_CNT_BLK
    w.u32(0);                 // 68 PM1b_CNT_BLK
    w.u32(0);                 // 72 PM2_CNT_BLK
    w.u32(kPmTmrPort);        // 76 PM_TMR_BLK
    w.u32(kGpe0Port);         // 80 GPE0_BLK
    w.u32(0);                 // 84 GPE1_BLK
    w.u8(4);                  // 88 PM1_EVT_LEN: 2 status + 2 enable bytes
    w.u8(2);                  // 89 PM1_CNT_LEN
    w.u8(0);                  // 90 PM2_CNT_LEN
    w.u8(4);                  // 91 PM_TMR_LEN
    w.u8(8);                  // 92 GPE0_BLK_LEN: 4 status + 4 enable bytes, GPEs 0-31
    w.u8(0);                  // 93 GPE1_BLK_LEN
    w.u8(0);                  // 94 GPE1_BASE
    w.u8(0);                  // 95 CST_CNT: no _CST notification
    w.u16(kNoC2Latency);      // 96 P_LVL2_LAT
    w.u16(kNoC3Latency);      // 98 P_LVL3_LAT
    w.u16(0);                 // 100 FLUSH_SIZE (WBINVD flag set)
    w.u16(0);                 // 102 FLUSH_STRIDE
    w.u8(0);                  // 104 DUTY_OFFSET: no throttling
    w.u8(0);                  // 105 DUTY_WIDTH
    w.u8(0);                  // 106 DAY_ALRM: no day-of-month alarm
    w.u8(0);                  // 107 MON_ALRM
    w.u8(kCmosCenturyIndex);  // 108 CENTURY
    w.u16(kBootArchLegacyDevices | kBootArchVgaNotPresent);  // 109 IAPC_BOOT_ARCH
    w.u8(0);                                                 // 111 reserved
    w.u32(kFadtWbinvd | kFadtProcC1 | (fixed_power_button ? 0 : kFadtPwrButton) | kFadtSlpButton |
          kFadtResetRegSup);                           // 112 flags
    gas(w, kSystemIo, 8, kAccessByte, kResetPort);     // 116 RESET_REG
    w.u8(kResetValue);                                 // 128 RESET_VALUE
    w.u16(0);                                          // 129 ARM_BOOT_ARCH
    w.u8(0);                                           // 131 FADT minor version
    w.u64(facs_gpa);                                   // 132 X_FIRMWARE_CTRL
    w.u64(dsdt_gpa);                                   // 140 X_DSDT
    gas(w, kSystemIo, 32, kAccessWord, kPm1aEvtPort);  // 148 X_PM1a_EVT_BLK
    gas_none(w);                                       // 160 X_PM1b_EVT_BLK
    gas(w, kSystemIo, 16, kAccessWord, kPm1aCntPort);  // 172 X_PM1a_CNT_BLK
    gas_none(w);                                       // 184 X_PM1b_CNT_BLK
    gas_none(w);                                       // 196 X_PM2_CNT_BLK
    gas(w, kSystemIo, 32, kAccessDword, kPmTmrPort);   // 208 X_PM_TMR_BLK
    gas(w, kSystemIo, 64, kAccessByte, kGpe0Port);     // 220 X_GPE0_BLK
    gas_none(w);                                       // 232 X_GPE1_BLK
    gas_none(w);                                       // 244 SLEEP_CONTROL_REG (HW-reduced only)
    gas_none(w);                                       // 256 SLEEP_STATUS_REG
    w.u64(0);                                          // 268 hypervisor vendor identity
    return finish_table(w);                            // 276 bytes
}

std::vector<uint8_t> madt(const AcpiConfig& cfg, uint8_t ioapic_id) {
    ByteWriter w = begin_table("APIC", 5);
    w.u32(static_cast<uint32_t>(kLapicGpa));
    w.u32(kMadtPcatCompat);
    for (size_t uid = 0; uid < cfg.cpus.size(); ++uid) {
        w.u8(kMadtLocalApic);
        w.u8(8);
        w.u8(static_cast<uint8_t>(uid));  // ACPI processor UID
        w.u8(cfg.cpus[uid].apic_id);
        w.u32(kLapicEnabled);
    }
    w.u8(kMadtIoApic);
    w.u8(12);
    w.u8(ioapic_id);
    w.u8(0);
    w.u32(static_cast<uint32_t>(cfg.ioapic_address));
    w.u32(cfg.ioapic_gsi_base);
    // The PIT's IRQ 0 is wired to IOAPIC pin 2, as on every PC since the first IOAPICs.
    w.u8(kMadtIso);
    w.u8(10);
    w.u8(0);  // bus: ISA
    w.u8(0);  // source IRQ
    w.u32(cfg.ioapic_gsi_base + 2);
    w.u16(kIntiConforming);
    // The SCI is level-triggered; active high because the PM device drives it that way.
    w.u8(kMadtIso);
    w.u8(10);
    w.u8(0);
    w.u8(kSciIrq);
    w.u32(cfg.ioapic_gsi_base + kSciIrq);
    w.u16(kIntiActiveHigh | kIntiLevel);
    // NMI arrives on every LAPIC's LINT1.
    w.u8(kMadtLapicNmi);
    w.u8(6);
    w.u8(kAllProcessors);
    w.u16(kIntiConforming);
    w.u8(1);  // LINT1
    return finish_table(w);
}

std::vector<uint8_t> srat(const AcpiConfig& cfg) {
    ByteWriter w = begin_table("SRAT", 3);
    w.u32(1);  // reserved, must be 1 for backward compatibility
    w.u64(0);
    for (const auto& cpu : cfg.cpus) {
        w.u8(kSratCpu);
        w.u8(16);
        w.u8(static_cast<uint8_t>(cpu.node));  // proximity domain bits 7:0
        w.u8(cpu.apic_id);
        w.u32(kSratEnabled);
        w.u8(0);                                    // local SAPIC EID
        w.u8(static_cast<uint8_t>(cpu.node >> 8));  // proximity domain bits 31:8
        w.u8(static_cast<uint8_t>(cpu.node >> 16));
        w.u8(static_cast<uint8_t>(cpu.node >> 24));
        w.u32(0);  // clock domain
    }
    for (const auto& node : cfg.nodes) {
        for (const auto& r : node.memory) {
            w.u8(kSratMemory);
            w.u8(40);
            w.u32(node.id);
            w.u16(0);
            w.u64(r.base);  // as two 32-bit halves, low first: same bytes
            w.u64(r.size);
            w.u32(0);
            w.u32(kSratEnabled);
            w.u64(0);
        }
    }
    return finish_table(w);
}

std::vector<uint8_t> slit(const std::vector<std::vector<uint8_t>>& distances) {
    ByteWriter w = begin_table("SLIT", 1);
    w.u64(distances.size());
    for (const auto& row : distances) w.bytes(row);
    return finish_table(w);
}

std::vector<uint8_t> hpet(const AcpiHpet& h) {
    ByteWriter w = begin_table("HPET", 1);
    w.u32(h.block_id);
    gas(w, kSystemMemory, 64, 0, h.address);
    w.u8(0);     // HPET number
    w.u16(128);  // minimum tick in periodic mode (no comparator is periodic-capable)
    w.u8(0);     // page protection: none announced
    return finish_table(w);
}

std::vector<uint8_t> xsdt(const std::vector<uint64_t>& tables) {
    ByteWriter w = begin_table("XSDT", 1);
    for (uint64_t t : tables) w.u64(t);
    return finish_table(w);
}

std::vector<uint8_t> rsdp(uint64_t xsdt_gpa) {
    ByteWriter w;
    w.fixed("RSD PTR ", 8);
    w.u8(0);  // checksum of the first 20 bytes (ACPI 1.0 part)
    w.fixed(kOemId, 6);
    w.u8(2);   // revision: ACPI 2.0+ RSDP with XSDT
    w.u32(0);  // RSDT: none, the XSDT is used
    w.u32(36);
    w.u64(xsdt_gpa);
    w.u8(0);  // extended checksum of all 36 bytes
    w.zeros(3);
    auto& b = w.data();
    b[8] = static_cast<uint8_t>(-acpi_checksum(b.data(), 20));
    b[32] = static_cast<uint8_t>(-acpi_checksum(b.data(), b.size()));
    return std::move(b);
}

}  // namespace kv::boot::acpi
