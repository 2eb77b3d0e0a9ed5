// Cascaded 8259A pair as Linux programs and probes it: ICW1-ICW4, IMR read-back, edge and
// level (ELCR) requests, INTA, EOIs, cascade through IRQ 2, priority, OCW3 reads.
#include <gtest/gtest.h>

#include <vector>

#include "vmm/devices/pic_8259.h"

namespace kv {
namespace {

constexpr uint8_t kMasterBase = 0x30, kSlaveBase = 0x38;  // ISA_IRQ_VECTOR(0) and (8)

class PicTest : public ::testing::Test {
  protected:
    PicTest() : pic([this](bool level) { edges.push_back(level); }) {}

    // Ports are mapped as the machine inserts them: offset = port - 0x20.
    void outb(uint16_t port, uint8_t v) { pic.write(port - 0x20, std::span<const uint8_t>(&v, 1)); }
    uint8_t inb(uint16_t port) {
        uint8_t v = 0;
        pic.read(port - 0x20, std::span<uint8_t>(&v, 1));
        return v;
    }
    // Linux's init_8259A(auto_eoi = 0).
    void linux_init() {
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
        outb(0x20, 0x11);  // ICW1: edge, cascade, ICW4 needed
        outb(0x21, kMasterBase);
        outb(0x21, 0x04);  // ICW3: slave on IRQ 2
        outb(0x21, 0x01);  // ICW4: 8086 mode, normal EOI
        outb(0xA0, 0x11);
        outb(0xA1, kSlaveBase);
        outb(0xA1, 0x02);  // ICW3: cascade identity
        outb(0xA1, 0x01);
        outb(0x21, 0xFF);  // cached masks: everything masked
        outb(0xA1, 0xFF);
    }
    void unmask(int irq) {
        if (irq < 8) {
            outb(0x21, inb(0x21) & ~(1 << irq));
        } else {
            outb(0x21, inb(0x21) & ~(1 << 2));
            outb(0xA1, inb(0xA1) & ~(1 << (irq - 8)));
        }
    }
    uint8_t master_isr() {
        outb(0x20, 0x0B);
        return inb(0x20);
    }
    uint8_t master_irr() {
        outb(0x20, 0x0A);
        return inb(0x20);
    }
    uint8_t slave_isr() {
        outb(0xA0, 0x0B);
        return inb(0xA0);
    }
    uint8_t slave_irr() {
        outb(0xA0, 0x0A);
        return inb(0xA0);
    }

    std::vector<bool> edges;  // output callback calls
    Pic8259 pic;
};

TEST_F(PicTest, LinuxInitSequenceLeavesQuietMaskedChips) {
    linux_init();
    EXPECT_EQ(inb(0x21), 0xFF);
    EXPECT_EQ(inb(0xA1), 0xFF);
    EXPECT_FALSE(pic.output());
    EXPECT_EQ(master_isr(), 0);
    EXPECT_EQ(master_irr(), 0);
    EXPECT_EQ(slave_isr(), 0);
    EXPECT_EQ(slave_irr(), 0);
    EXPECT_TRUE(edges.empty());
}

TEST_F(PicTest, ImrReadBack) {
    // Linux's probe: mask everything and read it back, then the cascade-only mask.
    outb(0x21, 0xFF);
    EXPECT_EQ(inb(0x21), 0xFF);
    outb(0xA1, 0xFF);
    EXPECT_EQ(inb(0xA1), 0xFF);
    outb(0x21, 0xFB);
    EXPECT_EQ(inb(0x21), 0xFB);
    linux_init();
    outb(0x21, 0xA5);
    outb(0xA1, 0x5A);
    EXPECT_EQ(inb(0x21), 0xA5);
    EXPECT_EQ(inb(0xA1), 0x5A);
}

TEST_F(PicTest, EdgeIrqRaisesOutputAndAcknowledgeMovesItToIsr) {
    linux_init();
    unmask(1);
    pic.set_irq(1, true);
    pic.set_irq(1, false);  // a pulse is latched
    EXPECT_TRUE(pic.output());
    ASSERT_EQ(edges, std::vector<bool>{true});
    EXPECT_EQ(master_irr(), 0x02);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 1);
    EXPECT_FALSE(pic.output());
    EXPECT_EQ(edges, (std::vector<bool>{true, false}));
    EXPECT_EQ(master_isr(), 0x02);
    EXPECT_EQ(master_irr(), 0x00);
    outb(0x20, 0x20);  // non-specific EOI
    EXPECT_EQ(master_isr(), 0x00);
    EXPECT_FALSE(pic.output());
}

TEST_F(PicTest, EdgeIrqNeedsANewRisingEdge) {
    linux_init();
    unmask(4);
    pic.set_irq(4, true);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 4);
    outb(0x20, 0x20);
    pic.set_irq(4, true);  // still high: no new request
    EXPECT_FALSE(pic.output());
    EXPECT_EQ(master_irr(), 0x00);
    pic.set_irq(4, false);
    pic.set_irq(4, true);
    EXPECT_TRUE(pic.output());
}

TEST_F(PicTest, SpecificEoiClearsTheNamedIrq) {
    linux_init();
    unmask(1);
    unmask(4);
    pic.set_irq(4, true);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 4);
    pic.set_irq(1, true);  // higher priority: nests
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 1);
    EXPECT_EQ(master_isr(), 0x12);
    outb(0x20, 0x60 | 4);  // specific EOI for IRQ 4, not the highest in service
    EXPECT_EQ(master_isr(), 0x02);
    outb(0x20, 0x60 | 1);
    EXPECT_EQ(master_isr(), 0x00);
}

TEST_F(PicTest, NonSpecificEoiClearsHighestPriorityInService) {
    linux_init();
    unmask(1);
    unmask(4);
    pic.set_irq(4, true);
    pic.acknowledge();
    pic.set_irq(1, true);
    pic.acknowledge();
    outb(0x20, 0x20);
    EXPECT_EQ(master_isr(), 0x10);
}

TEST_F(PicTest, SlaveIrqCascadesThroughMasterIrq2) {
    linux_init();
    unmask(12);
    pic.set_irq(12, true);
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(slave_irr(), 0x10);
    EXPECT_EQ(master_irr() & 0x04, 0x04);
    EXPECT_EQ(pic.acknowledge(), kSlaveBase + 4);
    EXPECT_FALSE(pic.output());
    EXPECT_EQ(slave_isr(), 0x10);
    EXPECT_EQ(master_isr(), 0x04);
    EXPECT_EQ(slave_irr(), 0x00);
    EXPECT_EQ(master_irr() & 0x04, 0x00);
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
    EXPECT_EQ(slave_isr(), 0x00);
    EXPECT_EQ(master_isr(), 0x00);
}

TEST_F(PicTest, SlaveIrqNeedsCascadeUnmasked) {
    linux_init();
    outb(0xA1, 0xEF);  // IRQ 12 unmasked on the slave, IRQ 2 masked on the master
    pic.set_irq(12, true);
    EXPECT_FALSE(pic.output());
    outb(0x21, 0xFB);
    EXPECT_TRUE(pic.output());
}

TEST_F(PicTest, MaskedIrqDoesNotRaiseOutputUntilUnmasked) {
    linux_init();
    pic.set_irq(3, true);
    EXPECT_FALSE(pic.output());
    EXPECT_TRUE(edges.empty());
    EXPECT_EQ(master_irr(), 0x08);  // latched in IRR regardless of the mask
    unmask(3);
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 3);
}

TEST_F(PicTest, LowerIrqNumberHasPriority) {
    linux_init();
    unmask(3);
    unmask(5);
    pic.set_irq(5, true);
    pic.set_irq(3, true);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 3);
    // IRQ 5 waits behind IRQ 3 in service.
    EXPECT_FALSE(pic.output());
    outb(0x20, 0x20);
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 5);
}

TEST_F(PicTest, CascadedIrqsRankAsIrq2) {
    linux_init();
    unmask(3);
    unmask(9);
    pic.set_irq(3, true);
    pic.set_irq(9, true);
    EXPECT_EQ(pic.acknowledge(), kSlaveBase + 1);  // IRQ 2 (slave) before IRQ 3
}

TEST_F(PicTest, ElcrRegistersReadBackWithFixedEdgeLines) {
    outb(0x4D0, 0xFF);
    outb(0x4D1, 0xFF);
    EXPECT_EQ(inb(0x4D0), 0xF8);  // IRQ 0-2 edge only
    EXPECT_EQ(inb(0x4D1), 0xDE);  // IRQ 8 and 13 edge only
    outb(0x4D0, 0x20);
    outb(0x4D1, 0x0C);
    EXPECT_EQ(inb(0x4D0), 0x20);
    EXPECT_EQ(inb(0x4D1), 0x0C);
}

TEST_F(PicTest, LevelTriggeredIrqStaysInIrrWhileAsserted) {
    linux_init();
    outb(0x4D0, 0x20);  // IRQ 5 level
    unmask(5);
    pic.set_irq(5, true);
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 5);
    EXPECT_EQ(master_irr(), 0x20);  // still requested
    EXPECT_EQ(master_isr(), 0x20);
    EXPECT_FALSE(pic.output());  // but not above itself in service
    outb(0x20, 0x20);
    EXPECT_TRUE(pic.output());  // still asserted after EOI: raised again
    pic.set_irq(5, false);
    EXPECT_EQ(master_irr(), 0x00);
    EXPECT_FALSE(pic.output());
}

TEST_F(PicTest, LevelTriggeredSlaveIrq) {
    linux_init();
    outb(0x4D1, 0x08);  // IRQ 11 level
    unmask(11);
    pic.set_irq(11, true);
    EXPECT_EQ(pic.acknowledge(), kSlaveBase + 3);
    EXPECT_EQ(slave_irr(), 0x08);
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
    EXPECT_TRUE(pic.output());
    pic.set_irq(11, false);
    EXPECT_FALSE(pic.output());
}

TEST_F(PicTest, Ocw3SelectsIsrOrIrr) {
    linux_init();
    unmask(6);
    unmask(7);
    pic.set_irq(6, true);
    pic.set_irq(7, true);
    pic.acknowledge();  // IRQ 6 in service, IRQ 7 requested
    outb(0x20, 0x0B);
    EXPECT_EQ(inb(0x20), 0x40);
    EXPECT_EQ(inb(0x20), 0x40);  // the selection sticks
    outb(0x20, 0x0A);
    EXPECT_EQ(inb(0x20), 0x80);
    outb(0x20, 0x08);  // OCW3 without RR: selection unchanged
    EXPECT_EQ(inb(0x20), 0x80);
    EXPECT_EQ(inb(0x21), 0x3F);  // the data port still reads the IMR
}

TEST_F(PicTest, SpuriousVectorWhenNothingPending) {
    linux_init();
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 7);
    EXPECT_EQ(master_isr(), 0x00);
    // A masked request is not taken either.
    pic.set_irq(4, true);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 7);
    EXPECT_EQ(master_isr(), 0x00);
    EXPECT_EQ(master_irr(), 0x10);
}

TEST_F(PicTest, AutoEoiLeavesIsrClear) {
    outb(0x20, 0x11);
    outb(0x21, kMasterBase);
    outb(0x21, 0x04);
    outb(0x21, 0x03);  // ICW4: 8086 mode, auto EOI
    outb(0x21, 0xFF);
    unmask(3);
    pic.set_irq(3, true);
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 3);
    EXPECT_EQ(master_isr(), 0x00);
    unmask(5);
    pic.set_irq(5, true);  // nothing in service blocks it
    EXPECT_TRUE(pic.output());
    EXPECT_EQ(pic.acknowledge(), kMasterBase + 5);
}

TEST_F(PicTest, PollCommandReturnsAndTakesHighestRequest) {
    linux_init();
    unmask(5);
    pic.set_irq(5, true);
    outb(0x20, 0x0C);  // OCW3 poll
    EXPECT_EQ(inb(0x20), 0x85);
    EXPECT_FALSE(pic.output());  // the poll read acts as the acknowledge
    EXPECT_EQ(edges, (std::vector<bool>{true, false}));
    EXPECT_EQ(master_isr(), 0x20);
    outb(0x20, 0x20);
    outb(0x20, 0x0C);
    EXPECT_EQ(inb(0x20), 0x00);
}

}  // namespace
}  // namespace kv
