// The DSDT: the AML namespace of the platform. It only describes what Linux cannot find
// by itself: the soft-off sleep type, and the ISA devices so that their I/O ports and
// IRQs are claimed by PNP (and not handed out to anything else).
#include "vmm/boot/acpi_tables.h"
#include "vmm/boot/aml.h"
#include "vmm/boot/layout.h"

namespace kv::boot::acpi {

namespace {

// \_SB.PCI0: a PCI host bridge for bus 0 with config mechanism #1. Its _CRS gives the
// windows it forwards: all bus numbers, the I/O space except its own 0xCF8-0xCFF, and the
// 32-bit MMIO hole; _PRT routes each slot's INTA-D to IOAPIC pins 16-19.
aml::Bytes pci_root_bridge() {
    using namespace aml;
    auto crs = ResourceTemplate()
                   .word_bus_number(0, 0xFF)
                   .io(0xCF8, 0xCF8, 1, 8)
                   .word_io(0x0000, 0x0CF7)
                   .word_io(0x0D00, 0xFFFF)
                   .dword_memory(kPciMmioBase, kPciMmioLast)
                   .build();
    std::vector<Bytes> prt;
    for (uint32_t slot = 1; slot < 32; ++slot)
        for (uint32_t pin = 0; pin < 4; ++pin)
            // {address (slot, any function), pin, source 0 = a GSI, the GSI}
            prt.push_back(package({integer(slot << 16 | 0xFFFF), integer(pin), integer(0),
                                   integer(kPciIntxGsiBase + (slot + pin) % 4)}));
    return device("PCI0", {
                              name("_HID", eisa_id("PNP0A03")),
                              name("_UID", integer(0)),
                              name("_BBN", integer(0)),
                              name("_CRS", crs),
                              name("_PRT", package(prt)),
                          });
}

}  // namespace

std::vector<uint8_t> dsdt(const AcpiConfig& cfg) {
    using namespace aml;
    // Revision 2: AML integers are 64 bits wide.
    ByteWriter w = begin_table("DSDT", 2);

    // \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved}. Linux writes SLP_TYPa with SLP_EN to
    // PM1a_CNT to power off; the VMM exits when it sees that write.
    w.bytes(
        name("\\_S5", package({integer(kSlpTypS5), integer(kSlpTypS5), integer(0), integer(0)})));

    auto com1 = device(
        "COM1", {
                    name("_HID", eisa_id("PNP0501")),  // 16550A-compatible UART
                    name("_UID", integer(1)),
                    name("_STA", integer(0xF)),  // present, enabled, shown, functioning
                    name("_CRS", ResourceTemplate().io(0x3F8, 0x3F8, 1, 8).irq_no_flags(4).build()),
                });
    auto rtc = device(
        "RTC", {
                   name("_HID", eisa_id("PNP0B00")),  // AT real-time clock
                   name("_CRS", ResourceTemplate().io(0x70, 0x70, 1, 2).irq_no_flags(8).build()),
               });
    // pvpanic (QEMU's ACPI id, which Linux's pvpanic-mmio driver binds to): port 0x505.
    auto pvpanic =
        device("PEVT", {
                           name("_HID", string("QEMU0001")),
                           name("_STA", integer(0xF)),
                           name("_CRS", ResourceTemplate().io(0x505, 0x505, 1, 1).build()),
                       });
    std::vector<aml::Bytes> sb{com1, rtc, pvpanic};
    if (cfg.pci_root_bridge) sb.push_back(pci_root_bridge());
    w.bytes(scope("\\_SB", sb));
    return finish_table(w);
}

}  // namespace kv::boot::acpi
