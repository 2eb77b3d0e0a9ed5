// PCI configuration mechanism #1, the host bridge, absent functions, the CF9 reset and
// snapshots.
#include <gtest/gtest.h>

#include <mutex>

#include "vmm/devices/device_state.h"
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

// A function whose state is its header (HeaderPciFunction), as a real one (virtio-pci)
// would have: a BAR, the command register, the interrupt line.
class SnapshotFunction : public HeaderPciFunction {
  public:
    explicit SnapshotFunction(uint16_t device_id = 0x1042) {
        cfg_.set16(PciConfigSpace::kVendorId, 0x1AF4);
        cfg_.set16(PciConfigSpace::kDeviceId, device_id);
        cfg_.set_writable(PciConfigSpace::kCommand, 2, 0x07);  // I/O, memory, bus master
        cfg_.set_writable(0x11, 1, 0xF0);                      // a 4 KiB memory BAR
        cfg_.set_writable(0x12, 2);
        cfg_.set_writable(PciConfigSpace::kInterruptLine, 1);
    }
};

// Config accesses to any host, for the restored ones.
uint32_t config_read(PciHost& h, unsigned dev, unsigned reg, size_t width = 4) {
    uint8_t b[4];
    store_le(std::span<uint8_t>(b, 4), 1u << 31 | dev << 11 | (reg & 0xFC));
    h.write(0, std::span<const uint8_t>(b, 4));
    h.read(4 + (reg & 3), std::span<uint8_t>(b, width));
    return uint32_t(load_le(std::span<const uint8_t>(b, width)));
}

// Snapshots: the restored bridge has the same CONFIG_ADDRESS selected, RST_CNT, and each
// function's header (the bridge's interrupt line, a function's BAR and command register).
TEST_F(PciTest, RestoredStateReadsTheSameConfigSpace) {
    ASSERT_TRUE(pci.attach(3, 0, std::make_shared<SnapshotFunction>()).ok());
    set_cfg(0, 0, 0x3C, 1, 0x0B);
    set_cfg(3, 0, 0x10, 4, 0xFEB01000);
    set_cfg(3, 0, 0x04, 2, 0x0006);
    set_cfg(3, 0, 0x3C, 1, 0x0A);
    out(0xCF9, 1, 0x0A);                        // SYS_RST | FULL_RST, no reset yet
    out(0xCF8, 4, 1u << 31 | 3u << 11 | 0x10);  // the guest was between address and data
    StateSaver s;
    pci.save_state(s);
    const StateJson j = s.take();

    int resets2 = 0;
    PciHost pci2([&] { ++resets2; });
    ASSERT_TRUE(pci2.attach(3, 0, std::make_shared<SnapshotFunction>()).ok());
    StateLoader l(j, "devices.pci");
    ASSERT_TRUE(pci2.restore_state(l)) << pci2.restore_state(l).error().message;
    uint8_t b[4] = {};
    pci2.read(4, std::span<uint8_t>(b, 4));  // CONFIG_DATA of the saved address
    EXPECT_EQ(load_le(std::span<const uint8_t>(b, 4)), 0xFEB01000u);
    pci2.read(0, std::span<uint8_t>(b, 4));
    EXPECT_EQ(load_le(std::span<const uint8_t>(b, 4)), 1u << 31 | 3u << 11 | 0x10);
    pci2.read(1, std::span<uint8_t>(b, 1));
    EXPECT_EQ(b[0], 0x0Au);
    EXPECT_EQ(config_read(pci2, 0, 0x3C, 1), 0x0Bu);
    EXPECT_EQ(config_read(pci2, 0, 0x00),
              uint32_t(PciHost::kDefaultDevice) << 16 | PciHost::kDefaultVendor);
    for (unsigned reg = 0; reg < 0x40; reg += 4)
        EXPECT_EQ(config_read(pci2, 3, reg), cfg(0, 3, 0, reg)) << reg;
    EXPECT_EQ(config_read(pci2, 3, 0x04, 2), 0x0006u);
    EXPECT_EQ(config_read(pci2, 3, 0x3C, 1), 0x0Au);
    // The write mask is the function's own, not the snapshot's: BAR sizing still works.
    config_read(pci2, 3, 0x10);  // selects the BAR again
    uint8_t ones[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    pci2.write(4, std::span<const uint8_t>(ones, 4));
    EXPECT_EQ(config_read(pci2, 3, 0x10), 0xFFFFF000u);
    EXPECT_EQ(resets2, 0);
}

TEST_F(PciTest, RestoreRefusesADamagedStateNamingTheField) {
    ASSERT_TRUE(pci.attach(3, 0, std::make_shared<SnapshotFunction>()).ok());
    StateSaver s;
    pci.save_state(s);
    const StateJson j = s.take();
    // `fn` at 00:03.0 of the restoring host, or nothing there.
    auto refused = [](const StateJson& state, std::shared_ptr<PciDevice> fn) {
        PciHost h([] {});
        if (fn) {
            EXPECT_TRUE(h.attach(3, 0, std::move(fn)).ok());
        }
        StateLoader l(state, "devices.pci");
        const Status st = h.restore_state(l);
        return st ? std::string("accepted") : st.error().message;
    };
    EXPECT_EQ(refused(j, std::make_shared<SnapshotFunction>()), "accepted");
    EXPECT_EQ(refused(j, nullptr), "devices.pci.slot3_fn0: unknown field");
    EXPECT_EQ(refused(j, std::make_shared<SnapshotFunction>(0x1041)),
              "devices.pci.slot3_fn0.config[2]: identity byte 66 differs from this "
              "function's 65 (another function)");
    StateJson bad = j;
    bad["address"] = 0x7F000000;
    EXPECT_EQ(refused(bad, std::make_shared<SnapshotFunction>()),
              "devices.pci.address: reserved bits (30:24, 1:0) set");
    bad = j;
    bad["slot0_fn0"]["config"].erase(255);
    EXPECT_EQ(refused(bad, std::make_shared<SnapshotFunction>()),
              "devices.pci.slot0_fn0.config: expected 256 elements, found 255");
    bad = j;
    bad["slot0_fn0"]["config"][0] = 0x86;  // another vendor's bridge
    EXPECT_EQ(refused(bad, std::make_shared<SnapshotFunction>())
                  .find("devices.pci.slot0_fn0.config[0]: "),
              0u);
}

}  // namespace
}  // namespace kv
