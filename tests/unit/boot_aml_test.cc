// The AML encoder's primitive encodings, against values worked out from the ACPI spec.
#include <gtest/gtest.h>

#include "vmm/boot/aml.h"

namespace {

using namespace kv::boot::aml;

TEST(BootAml, PkgLengthEncodings) {
    EXPECT_EQ(pkg_length(0), (Bytes{0x01}));
    EXPECT_EQ(pkg_length(62), (Bytes{0x3F}));  // largest one-byte length: 63
    // 63 + 2 = 65 = 0x41: low nibble 1 in the lead byte (count 1 in bits 7:6), then 0x04.
    EXPECT_EQ(pkg_length(63), (Bytes{0x41, 0x04}));
    EXPECT_EQ(pkg_length(4093), (Bytes{0x4F, 0xFF}));        // 4095: largest two-byte length
    EXPECT_EQ(pkg_length(4094), (Bytes{0x81, 0x00, 0x01}));  // 4097 = 0x1001
}

TEST(BootAml, IntegersUseShortestEncoding) {
    EXPECT_EQ(integer(0), (Bytes{0x00}));
    EXPECT_EQ(integer(1), (Bytes{0x01}));
    EXPECT_EQ(integer(5), (Bytes{0x0A, 0x05}));
    EXPECT_EQ(integer(0x3F8), (Bytes{0x0B, 0xF8, 0x03}));
    EXPECT_EQ(integer(0xFEC00000), (Bytes{0x0C, 0x00, 0x00, 0xC0, 0xFE}));
    EXPECT_EQ(integer(0x100000000), (Bytes{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}));
}

TEST(BootAml, NameStrings) {
    EXPECT_EQ(name_string("_HID"), (Bytes{'_', 'H', 'I', 'D'}));
    EXPECT_EQ(name_string("RTC"), (Bytes{'R', 'T', 'C', '_'}));
    EXPECT_EQ(name_string("\\_SB"), (Bytes{'\\', '_', 'S', 'B', '_'}));
    EXPECT_EQ(name_string("\\_SB.COM1"),
              (Bytes{'\\', 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'}));
    EXPECT_EQ(name_string("\\_SB.PCI0.ISA"),
              (Bytes{'\\', 0x2F, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_'}));
}

TEST(BootAml, EisaIdCompression) {
    EXPECT_EQ(eisa_id("PNP0501"), (Bytes{0x0C, 0x41, 0xD0, 0x05, 0x01}));
    EXPECT_EQ(eisa_id("PNP0A03"), (Bytes{0x0C, 0x41, 0xD0, 0x0A, 0x03}));
}

TEST(BootAml, StringAndPackage) {
    EXPECT_EQ(string("AB"), (Bytes{0x0D, 'A', 'B', 0x00}));
    EXPECT_EQ(package({integer(5), integer(0)}), (Bytes{0x12, 0x05, 0x02, 0x0A, 0x05, 0x00}));
}

TEST(BootAml, ResourceTemplateWithEndTag) {
    Bytes crs = ResourceTemplate().io(0x70, 0x70, 1, 2).irq_no_flags(8).build();
    EXPECT_EQ(crs, (Bytes{0x11, 0x10, 0x0A, 0x0D,                          // Buffer (13)
                          0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02,  // IO
                          0x22, 0x00, 0x01,                                // IRQNoFlags {8}
                          0x79, 0x00}));                                   // end tag
}

TEST(BootAml, AddressSpaceDescriptors) {
    Bytes crs =
        ResourceTemplate().word_io(0x0D00, 0xFFFF).dword_memory(0xC0000000, 0xFEBFFFFF).build();
    Bytes want{0x11, 0x2F, 0x0A, 0x2C,  // Buffer (44)
                                        // WordIO: tag, length 13, I/O, producer+fixed, EntireRange,
                                        // granularity, min, max, translation, length
               0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x0D, 0xFF, 0xFF, 0x00, 0x00,
               0x00, 0xF3,
               // DWordMemory: tag, length 23, memory, producer+fixed, read/write
               0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0,
               0xFF, 0xFF, 0xBF, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x3E, 0x79, 0x00};
    EXPECT_EQ(crs, want);
}

TEST(BootAml, DeviceWrapsNameAndBody) {
    Bytes d = device("RTC", {name("_UID", integer(1))});
    EXPECT_EQ(d, (Bytes{0x5B, 0x82, 0x0B, 'R', 'T', 'C', '_', 0x08, '_', 'U', 'I', 'D', 0x01}));
}

}  // namespace
