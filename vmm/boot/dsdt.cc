// The DSDT: the AML namespace of the platform. It only describes what Linux cannot find
// by itself: the soft-off sleep type, and the ISA devices so that their I/O ports and
// IRQs are claimed by PNP (and not handed out to anything else).
#include "vmm/boot/acpi_tables.h"
#include "vmm/boot/aml.h"
#include "vmm/boot/layout.h"

namespace kv::boot::acpi {

std::vector<uint8_t> dsdt() {
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
    w.bytes(scope("\\_SB", {com1, rtc}));
    return finish_table(w);
}

}  // namespace kv::boot::acpi
