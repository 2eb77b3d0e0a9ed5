// PCI configuration mechanism #1, the host bridge, absent functions and the CF9 reset.
#include <gtest/gtest.h>

#include "vmm/devices/pci_host.h"

namespace kv {
namespace {

class PciTest : public ::testing::Test {
  protected:
    PciTest() : pci([this] { ++resets; }) {}
    uint32_t in(uint64_t port, size_t width) {
        uint8_t b[4] = {};
        pci.read(port - PciHost::kBase, std::span<uint8_t>(b, width));
        return uint32_t(load_le(std::span<const uint8_t>(b, width)));
    }
    void out(uint64_t port, size_t width, uint32_t v) {
        uint8_t b[4];
        store_le(std::span<uint8_t>(b, width), v);
        pci.write(port - PciHost::kBase, std::span<const uint8_t>(b, width));
    }
    uint32_t cfg(unsigned bus, unsigned dev, unsigned fn, unsigned reg, size_t width = 4) {
        out(0xCF8, 4, 1u << 31 | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC));
        return in(0xCFC + (reg & 3), width);
    }
    void set_cfg(unsigned dev, unsigned fn, unsigned reg, size_t width, uint32_t v) {
        out(0xCF8, 4, 1u << 31 | dev << 11 | fn << 8 | (reg & 0xFC));
        out(0xCFC + (reg & 3), width, v);
    }

    int resets = 0;
    PciHost pci;
};

TEST_F(PciTest, HostBridgeIdentity) {
    EXPECT_EQ(cfg(0, 0, 0, 0x00),
              uint32_t(PciHost::kDefaultDevice) << 16 | PciHost::kDefaultVendor);
    EXPECT_EQ(cfg(0, 0, 0, 0x0A, 2), 0x0600u);  // class: host bridge
    EXPECT_EQ(cfg(0, 0, 0, 0x0E, 1), 0x00u);    // header type 0
    EXPECT_EQ(cfg(0, 0, 0, 0x02, 2), PciHost::kDefaultDevice);
}

TEST_F(PciTest, Type1ProbeReadsBackTheAddress) {
    // pci_check_type1: a byte write to 0xCFB is not CONFIG_ADDRESS; the dword reads back.
    out(0xCFB, 1, 0x01);
    out(0xCF8, 4, 0x80000000);
    EXPECT_EQ(in(0xCF8, 4), 0x80000000u);
    out(0xCF8, 4, 0xFFFFFFFF);
    EXPECT_EQ(in(0xCF8, 4), 0x80FFFFFCu);  // reserved bits read 0
}

TEST_F(PciTest, AbsentFunctionsReadAllOnes) {
    EXPECT_EQ(cfg(0, 1, 0, 0), 0xFFFFFFFFu);
    EXPECT_EQ(cfg(0, 0, 1, 0), 0xFFFFFFFFu);
    EXPECT_EQ(cfg(1, 0, 0, 0), 0xFFFFFFFFu);
    EXPECT_EQ(cfg(0, 31, 7, 0x3C, 1), 0xFFu);
    // Enable bit clear: no configuration cycle.
    out(0xCF8, 4, 0x00000000);
    EXPECT_EQ(in(0xCFC, 4), 0xFFFFFFFFu);
}

TEST_F(PciTest, HostBridgeReadOnlyRegistersIgnoreWrites) {
    set_cfg(0, 0, 0x00, 4, 0x12345678);
    EXPECT_EQ(cfg(0, 0, 0, 0x00, 2), PciHost::kDefaultVendor);
    set_cfg(0, 0, 0x10, 4, 0xFFFFFFFF);  // BAR sizing: no BARs
    EXPECT_EQ(cfg(0, 0, 0, 0x10), 0u);
    set_cfg(0, 0, 0x3C, 1, 0x0B);  // interrupt line is a scratch register
    EXPECT_EQ(cfg(0, 0, 0, 0x3C, 1), 0x0Bu);
}

TEST_F(PciTest, Cf9ResetOnBit2) {
    out(0xCF9, 1, 0x02);  // Linux reboot=pci: first 0x02 ...
    EXPECT_EQ(resets, 0);
    EXPECT_EQ(in(0xCF9, 1), 0x02u);
    out(0xCF9, 1, 0x06);  // ... then 0x06 (also the FADT RESET_VALUE)
    EXPECT_EQ(resets, 1);
}

class FakeFunction : public PciDevice {
  public:
    FakeFunction() {
        cfg.set16(PciConfigSpace::kVendorId, 0x1AF4);
        cfg.set16(PciConfigSpace::kDeviceId, 0x1042);
        cfg.set32(0x10, 0x0);
        cfg.set_writable(0x10, 4);
        cfg.set_writable(0x10, 1, 0x00);
        cfg.set_writable(0x11, 1, 0xF0);  // a 4 KiB memory BAR
    }
    void config_read(uint32_t off, std::span<uint8_t> d) override { cfg.read(off, d); }
    void config_write(uint32_t off, std::span<const uint8_t> d) override { cfg.write(off, d); }
    PciConfigSpace cfg;
};

TEST_F(PciTest, AttachedFunctionsAreReachable) {
    auto fn = std::make_shared<FakeFunction>();
    ASSERT_TRUE(pci.attach(3, 0, fn).ok());
    EXPECT_FALSE(pci.attach(3, 0, fn).ok());  // taken
    EXPECT_FALSE(pci.attach(0, 0, fn).ok());  // the host bridge
    EXPECT_FALSE(pci.attach(32, 0, fn).ok());
    EXPECT_EQ(cfg(0, 3, 0, 0), 0x10421AF4u);
    EXPECT_EQ(cfg(0, 3, 0, 2, 2), 0x1042u);
    set_cfg(3, 0, 0x10, 4, 0xFFFFFFFF);
    EXPECT_EQ(cfg(0, 3, 0, 0x10), 0xFFFFF000u);  // BAR size from the write mask
}

}  // namespace
}  // namespace kv
