// I/O APIC: registers through IOREGSEL/IOWIN, redirection entries, edge and level pins
// (Remote IRR, EOI re-delivery), and the messages it routes through a real IpiRouter.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vcpu/ipi_router.h"
#include "vmm/devices/device_state.h"
#include "vmm/devices/ioapic.h"

namespace kv {
namespace {

class FakeTarget : public InterruptTarget {
  public:
    void deliver(const InterruptMessage& m) override { got.push_back(m); }
    std::vector<InterruptMessage> got;
};

constexpr uint64_t kRegSel = 0x00, kWin = 0x10;
constexpr uint32_t kMask = 1u << 16, kLevel = 1u << 15, kRemoteIrr = 1u << 14, kLogical = 1u << 11;

// An IOAPIC with ID `id` on a router of two fake vCPUs, and register access to it.
struct IoapicRig {
    static constexpr uint32_t kN = 2;
    explicit IoapicRig(uint8_t id) : router(kN), ioapic(id, router) {
        for (uint32_t i = 0; i < kN; ++i) router.attach_local(i, &t[i]);
    }
    void w32(uint64_t off, uint32_t v) {
        uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
        ioapic.write(off, std::span<const uint8_t>(b, 4));
    }
    uint32_t r32(uint64_t off) {
        uint8_t b[4] = {};
        ioapic.read(off, std::span<uint8_t>(b, 4));
        return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
    }
    uint32_t reg(uint32_t r) {
        w32(kRegSel, r);
        return r32(kWin);
    }
    void set_reg(uint32_t r, uint32_t v) {
        w32(kRegSel, r);
        w32(kWin, v);
    }
    void program(uint32_t pin, uint32_t low, uint8_t dest) {
        set_reg(0x10 + 2 * pin + 1, uint32_t(dest) << 24);
        set_reg(0x10 + 2 * pin, low);
    }
    size_t total() const { return t[0].got.size() + t[1].got.size(); }

    IpiRouter router;
    Ioapic ioapic;
    FakeTarget t[kN];
};

class IoapicTest : public ::testing::Test, protected IoapicRig {
  protected:
    IoapicTest() : IoapicRig(1) {}
};

TEST_F(IoapicTest, IdAndVersionRegisters) {
    EXPECT_EQ(reg(0), 1u << 24);
    EXPECT_EQ(reg(1), 0x00170011u);  // 24 pins, version 0x11
    EXPECT_EQ(r32(kRegSel), 1u);     // IOREGSEL reads back
    set_reg(0, 0x05000000);
    EXPECT_EQ(reg(0), 0x05000000u);
    set_reg(1, 0);  // read-only
    EXPECT_EQ(reg(1), 0x00170011u);
}

TEST_F(IoapicTest, RedirectionEntriesResetMasked) {
    for (uint32_t pin = 0; pin < Ioapic::kPins; ++pin) {
        EXPECT_EQ(reg(0x10 + 2 * pin), kMask) << pin;
        EXPECT_EQ(reg(0x11 + 2 * pin), 0u) << pin;
    }
}

TEST_F(IoapicTest, RedirectionEntryReadsBackWrittenValue) {
    // Vector 0x31, lowest priority, logical, active low, level, masked; the delivery
    // status (12) and Remote IRR (14) bits written as 1 are read-only.
    const uint32_t low =
        0x31 | (1u << 8) | kLogical | (1u << 12) | (1u << 13) | kRemoteIrr | kLevel | kMask;
    set_reg(0x10 + 2 * 5, low);
    set_reg(0x11 + 2 * 5, 0xAB123456);
    EXPECT_EQ(reg(0x10 + 2 * 5), low & ~((1u << 12) | kRemoteIrr));
    EXPECT_EQ(reg(0x11 + 2 * 5), 0xAB000000u);
    EXPECT_EQ(ioapic.redirection(5), (uint64_t(0xAB) << 56) | (low & ~((1u << 12) | kRemoteIrr)));
    // The other half is untouched by a write to one half.
    set_reg(0x10 + 2 * 5, 0x42 | kMask);
    EXPECT_EQ(reg(0x11 + 2 * 5), 0xAB000000u);
    EXPECT_EQ(reg(0x10 + 2 * 4), kMask);
}

TEST_F(IoapicTest, MaskedPinDoesNotDeliver) {
    program(3, 0x33 | kMask, 0);
    ioapic.set_pin(3, true);
    ioapic.set_pin(3, false);
    ioapic.set_pin(3, true);
    EXPECT_EQ(total(), 0u);
    program(4, 0x34 | kLevel | kMask, 0);
    ioapic.set_pin(4, true);
    EXPECT_EQ(total(), 0u);
    EXPECT_EQ(ioapic.redirection(4) & kRemoteIrr, 0u);
}

TEST_F(IoapicTest, EdgePinDeliversOnRisingEdgesOnly) {
    program(2, 0x30, 1);
    ioapic.set_pin(2, true);
    EXPECT_EQ(t[1].got.size(), 1u);
    ioapic.set_pin(2, true);  // still high: no edge
    EXPECT_EQ(t[1].got.size(), 1u);
    ioapic.set_pin(2, false);
    EXPECT_EQ(t[1].got.size(), 1u);
    ioapic.set_pin(2, true);
    EXPECT_EQ(t[1].got.size(), 2u);
    EXPECT_EQ(t[0].got.size(), 0u);
    EXPECT_FALSE(t[1].got[0].level_triggered);
    EXPECT_EQ(ioapic.redirection(2) & kRemoteIrr, 0u);
    EXPECT_EQ(ioapic.raised(), 2u);
}

TEST_F(IoapicTest, LevelPinUsesRemoteIrr) {
    program(9, 0x49 | kLevel, 0);
    ioapic.set_pin(9, true);
    ASSERT_EQ(t[0].got.size(), 1u);
    EXPECT_TRUE(t[0].got[0].level_triggered);
    EXPECT_NE(ioapic.redirection(9) & kRemoteIrr, 0u);
    EXPECT_NE(reg(0x10 + 2 * 9) & kRemoteIrr, 0u);
    // Still asserted, or re-asserted, while Remote IRR is set: nothing new.
    ioapic.set_pin(9, true);
    ioapic.set_pin(9, false);
    ioapic.set_pin(9, true);
    EXPECT_EQ(t[0].got.size(), 1u);
    // An EOI of another vector changes nothing.
    ioapic.eoi(0x48);
    EXPECT_NE(ioapic.redirection(9) & kRemoteIrr, 0u);
    EXPECT_EQ(t[0].got.size(), 1u);
    // EOI while still asserted: Remote IRR cleared and the interrupt raised again.
    ioapic.eoi(0x49);
    EXPECT_EQ(t[0].got.size(), 2u);
    EXPECT_NE(ioapic.redirection(9) & kRemoteIrr, 0u);
    // De-asserted, then EOI: Remote IRR clears and nothing is delivered.
    ioapic.set_pin(9, false);
    ioapic.eoi(0x49);
    EXPECT_EQ(t[0].got.size(), 2u);
    EXPECT_EQ(ioapic.redirection(9) & kRemoteIrr, 0u);
    // The next assertion is delivered.
    ioapic.set_pin(9, true);
    EXPECT_EQ(t[0].got.size(), 3u);
}

TEST_F(IoapicTest, UnmaskingAssertedLevelPinDelivers) {
    program(11, 0x51 | kLevel | kMask, 1);
    ioapic.set_pin(11, true);
    EXPECT_EQ(total(), 0u);
    set_reg(0x10 + 2 * 11, 0x51 | kLevel);
    ASSERT_EQ(t[1].got.size(), 1u);
    EXPECT_EQ(t[1].got[0].vector, 0x51);
    EXPECT_NE(ioapic.redirection(11) & kRemoteIrr, 0u);
    // Rewriting the entry while Remote IRR is set does not deliver again.
    set_reg(0x10 + 2 * 11, 0x51 | kLevel);
    EXPECT_EQ(t[1].got.size(), 1u);
}

TEST_F(IoapicTest, UnmaskingDeassertedLevelPinDoesNotDeliver) {
    program(12, 0x52 | kLevel | kMask, 0);
    ioapic.set_pin(12, true);
    ioapic.set_pin(12, false);
    set_reg(0x10 + 2 * 12, 0x52 | kLevel);
    EXPECT_EQ(total(), 0u);
}

// Linux clears a stuck Remote IRR on IOAPICs older than version 0x20 (no EOI register;
// this one reports 0x11) by rewriting the entry as masked edge and then restoring it
// (__eoi_ioapic_pin). Remote IRR has no meaning for an edge entry, and the restored level
// entry must be able to deliver again.
TEST_F(IoapicTest, RewritingAsEdgeClearsRemoteIrr) {
    program(10, 0x5A | kLevel, 0);
    ioapic.set_pin(10, true);
    ASSERT_EQ(t[0].got.size(), 1u);
    ASSERT_NE(ioapic.redirection(10) & kRemoteIrr, 0u);
    ioapic.set_pin(10, false);
    set_reg(0x10 + 2 * 10, 0x5A | kMask);  // masked, edge
    EXPECT_EQ(ioapic.redirection(10) & kRemoteIrr, 0u);
    set_reg(0x10 + 2 * 10, 0x5A | kLevel);  // restored
    EXPECT_EQ(ioapic.redirection(10) & kRemoteIrr, 0u);
    ioapic.set_pin(10, true);
    EXPECT_EQ(t[0].got.size(), 2u);
}

TEST_F(IoapicTest, MessageCarriesEntryFields) {
    for (uint32_t i = 0; i < kN; ++i)
        router.update_addressing(i, Lapic::Addressing{uint8_t(i), uint8_t(1u << i), true, true});
    // Logical destination 0x02 (vCPU 1), lowest priority, vector 0x61, edge.
    program(7, 0x61 | (1u << 8) | kLogical, 0x02);
    ioapic.set_pin(7, true);
    ASSERT_EQ(t[1].got.size(), 1u);
    const auto& m = t[1].got[0];
    EXPECT_EQ(m.vector, 0x61);
    EXPECT_EQ(m.mode, DeliveryMode::LowestPriority);
    EXPECT_TRUE(m.logical);
    EXPECT_EQ(m.dest, 0x02u);
    EXPECT_FALSE(m.level_triggered);
    EXPECT_EQ(m.shorthand, Shorthand::None);
    EXPECT_EQ(t[0].got.size(), 0u);
    // Physical destination 0, fixed, NMI mode on another pin.
    program(8, 0x02 | (4u << 8), 0);
    ioapic.set_pin(8, true);
    ASSERT_EQ(t[0].got.size(), 1u);
    EXPECT_EQ(t[0].got[0].mode, DeliveryMode::Nmi);
    EXPECT_FALSE(t[0].got[0].logical);
    EXPECT_EQ(t[0].got[0].dest, 0u);
}

TEST_F(IoapicTest, PinsOutOfRangeAreIgnored) {
    ioapic.set_pin(Ioapic::kPins, true);
    EXPECT_EQ(total(), 0u);
    EXPECT_EQ(reg(0x10 + 2 * Ioapic::kPins), 0u);
}

// Snapshots: an IOAPIC restored from a saved state, on a router of its own, built with
// another ID (the restore brings the saved one).
struct SecondIoapic : IoapicRig {
    SecondIoapic() : IoapicRig(9) {}
};

TEST_F(IoapicTest, RestoreKeepsEntriesRemoteIrrAndPinLevels) {
    set_reg(0, 0x05000000);        // the guest's ID
    program(9, 0x49 | kLevel, 1);  // level, delivered, Remote IRR set
    ioapic.set_pin(9, true);
    program(5, 0x45, 0);  // edge, delivered, pin still high
    ioapic.set_pin(5, true);
    program(11, 0x51 | kLevel | kMask, 0);  // masked, asserted
    ioapic.set_pin(11, true);
    w32(kRegSel, 0x10 + 2 * 5 + 1);  // IOREGSEL left on an entry's high half
    ASSERT_EQ(total(), 2u);
    StateSaver s;
    ioapic.save_state(s);
    const StateJson j = s.take();

    SecondIoapic b;
    StateLoader l(j, "devices.ioapic");
    const Status st = b.ioapic.restore_state(l);
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_EQ(b.total(), 0u);  // nothing is delivered again
    EXPECT_EQ(b.ioapic.raised(), 0u);
    EXPECT_EQ(b.r32(kRegSel), 0x10u + 2 * 5 + 1);
    EXPECT_EQ(b.r32(kWin), 0u);  // pin 5's destination
    for (uint32_t pin = 0; pin < Ioapic::kPins; ++pin)
        EXPECT_EQ(b.ioapic.redirection(pin), ioapic.redirection(pin)) << "pin " << pin;
    EXPECT_EQ(b.reg(0), 0x05000000u);
    EXPECT_EQ(b.reg(1), 0x00170011u);

    // Pin 5 is still high: no edge until it falls and rises.
    b.ioapic.set_pin(5, true);
    EXPECT_EQ(b.total(), 0u);
    b.ioapic.set_pin(5, false);
    b.ioapic.set_pin(5, true);
    ASSERT_EQ(b.t[0].got.size(), 1u);
    EXPECT_EQ(b.t[0].got[0].vector, 0x45);
    // Pin 9 waits for its EOI, and is re-raised by it while still asserted.
    b.ioapic.set_pin(9, true);
    EXPECT_EQ(b.t[1].got.size(), 0u);
    b.ioapic.eoi(0x49);
    ASSERT_EQ(b.t[1].got.size(), 1u);
    EXPECT_EQ(b.t[1].got[0].vector, 0x49);
    EXPECT_TRUE(b.t[1].got[0].level_triggered);
    // Pin 11 was asserted while masked: unmasking it delivers.
    b.set_reg(0x10 + 2 * 11, 0x51 | kLevel);
    ASSERT_EQ(b.t[0].got.size(), 2u);
    EXPECT_EQ(b.t[0].got[1].vector, 0x51);
}

TEST_F(IoapicTest, RestoreRefusesADamagedStateNamingTheField) {
    program(9, 0x49 | kLevel, 0);
    ioapic.set_pin(9, true);  // Remote IRR set
    StateSaver s;
    ioapic.save_state(s);
    const StateJson j = s.take();
    auto refusal = [](const StateJson& bad) -> std::string {
        IpiRouter r(2);
        Ioapic io(1, r);
        StateLoader l(bad, "devices.ioapic");
        const Status st = io.restore_state(l);
        return st ? "accepted" : st.error().message;
    };
    {
        StateJson bad = j;
        bad["redir"][3] = bad["redir"][3].get<uint64_t>() | (1u << 12);  // delivery status
        EXPECT_EQ(refusal(bad), "devices.ioapic.redir[3]: sets reserved or read-only bits");
    }
    {
        StateJson bad = j;
        bad["redir"][9] = bad["redir"][9].get<uint64_t>() & ~uint64_t(kLevel);
        EXPECT_EQ(refusal(bad), "devices.ioapic.redir[9]: Remote IRR on an edge-triggered pin");
    }
    {
        StateJson bad = j;
        bad["redir"][9] = bad["redir"][9].get<uint64_t>() & ~uint64_t(kRemoteIrr);
        EXPECT_EQ(refusal(bad),
                  "devices.ioapic.redir[9]: a level pin asserted and unmasked without Remote IRR");
    }
    {
        StateJson bad = j;
        bad["select"] = 0x100;
        EXPECT_EQ(refusal(bad), "devices.ioapic.select: 256 is wider than IOREGSEL's 8 bits");
    }
    {
        StateJson bad = j;
        bad["level"].erase(bad["level"].size() - 1);
        EXPECT_EQ(refusal(bad), "devices.ioapic.level: expected 24 elements, found 23");
        bad.erase("level");
        EXPECT_EQ(refusal(bad), "devices.ioapic.level: missing");
    }
    EXPECT_EQ(refusal(j), "accepted");
}

}  // namespace
}  // namespace kv
