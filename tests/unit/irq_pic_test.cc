// Cascaded 8259A pair as Linux programs and probes it: ICW1-ICW4, IMR read-back, edge and
// level (ELCR) requests, INTA, EOIs, cascade through IRQ 2, priority, OCW3 reads.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/devices/device_state.h"
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

// Snapshots: a PIC restored from a saved state answers and interrupts as the one saved.

void pic_out(Pic8259& p, uint16_t port, uint8_t v) {
    p.write(port - 0x20, std::span<const uint8_t>(&v, 1));
}
uint8_t pic_in(Pic8259& p, uint16_t port) {
    uint8_t v = 0;
    p.read(port - 0x20, std::span<uint8_t>(&v, 1));
    return v;
}
StateJson saved(Pic8259& p) {
    StateSaver s;
    p.save_state(s);
    return s.take();
}

TEST_F(PicTest, RestoreKeepsRequestsInServiceAndPinLevels) {
    linux_init();
    unmask(1);
    unmask(4);
    unmask(10);
    outb(0x4D1, 0x04);  // IRQ 10 level
    pic.set_irq(1, true);
    ASSERT_EQ(pic.acknowledge(), kMasterBase + 1);  // in service, its pin still high
    pic.set_irq(4, true);                           // requested, below IRQ 1
    pic.set_irq(10, true);                          // through IRQ 2, below IRQ 1 too
    outb(0x20, 0x0B);                               // OCW3: the master's reads show its ISR
    ASSERT_FALSE(pic.output());
    const StateJson j = saved(pic);

    std::vector<bool> edges2;
    Pic8259 pic2([&](bool level) { edges2.push_back(level); });
    StateLoader l(j, "devices.pic");
    const Status st = pic2.restore_state(l);
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_EQ(edges2, std::vector<bool>{false});  // the output is driven: low
    EXPECT_FALSE(pic2.output());

    // The guest carries on: reads, EOIs, INTAs and pin changes, recorded.
    auto run = [](Pic8259& p) {
        std::vector<int> r;
        for (uint16_t port : {0x20, 0x21, 0xA1, 0x4D0, 0x4D1}) r.push_back(pic_in(p, port));
        pic_out(p, 0x20, 0x20);  // EOI IRQ 1: the cascade (IRQ 2) outranks IRQ 4
        r.push_back(p.output());
        r.push_back(p.acknowledge());
        p.set_irq(10, false);  // level: the request goes with the pin
        pic_out(p, 0xA0, 0x20);
        pic_out(p, 0x20, 0x20);
        r.push_back(p.acknowledge());
        pic_out(p, 0x20, 0x20);
        p.set_irq(1, true);  // still high: no new edge
        r.push_back(p.output());
        p.set_irq(1, false);
        p.set_irq(1, true);
        r.push_back(p.acknowledge());
        r.push_back(p.acknowledge());  // nothing left: spurious
        return r;
    };
    const std::vector<int> got = run(pic2);
    EXPECT_EQ(got, (std::vector<int>{0x02, 0xE9, 0xFB, 0x00, 0x04, true, kSlaveBase + 2,
                                     kMasterBase + 4, false, kMasterBase + 1, kMasterBase + 7}));
    EXPECT_EQ(got, run(pic));
}

TEST_F(PicTest, RestoreDrivesAPendingRequestToTheOutput) {
    linux_init();
    unmask(3);
    pic.set_irq(3, true);
    ASSERT_TRUE(pic.output());
    const StateJson j = saved(pic);
    std::vector<bool> edges2;
    Pic8259 pic2([&](bool level) { edges2.push_back(level); });
    StateLoader l(j, "devices.pic");
    ASSERT_TRUE(pic2.restore_state(l));
    EXPECT_EQ(edges2, std::vector<bool>{true});
    EXPECT_EQ(pic2.acknowledge(), kMasterBase + 3);
    EXPECT_EQ(edges2, (std::vector<bool>{true, false}));
}

TEST_F(PicTest, RestoreMidInitializationContinuesTheSequence) {
    outb(0x20, 0x11);  // ICW1
    outb(0x21, kMasterBase);
    const StateJson j = saved(pic);
    Pic8259 pic2(nullptr);
    StateLoader l(j, "devices.pic");
    ASSERT_TRUE(pic2.restore_state(l));
    pic_out(pic2, 0x21, 0x04);  // ICW3, then ICW4 (auto EOI), then OCW1
    pic_out(pic2, 0x21, 0x03);
    pic_out(pic2, 0x21, 0xF7);
    EXPECT_EQ(pic_in(pic2, 0x21), 0xF7);
    pic2.set_irq(3, true);
    EXPECT_EQ(pic2.acknowledge(), kMasterBase + 3);
    pic_out(pic2, 0x20, 0x0B);
    EXPECT_EQ(pic_in(pic2, 0x20), 0x00);  // auto EOI: nothing in service
}

TEST_F(PicTest, RestoreRefusesADamagedStateNamingTheField) {
    linux_init();
    const StateJson j = saved(pic);
    auto refusal = [](const StateJson& bad) -> std::string {
        Pic8259 p(nullptr);
        StateLoader l(bad, "devices.pic");
        const Status st = p.restore_state(l);
        return st ? "accepted" : st.error().message;
    };
    {
        StateJson bad = j;
        bad["slave"]["icw_step"] = 4;
        EXPECT_EQ(refusal(bad),
                  "devices.pic.slave.icw_step: 4 is not a step of the initialization sequence "
                  "(0-3)");
    }
    {
        StateJson bad = j;
        bad["master"]["lowest_priority"] = 8;
        EXPECT_EQ(refusal(bad),
                  "devices.pic.master.lowest_priority: 8 is not an IRQ of the chip (0-7)");
    }
    {
        StateJson bad = j;
        bad["master"]["elcr"] = 0x01;  // IRQ 0 (the PIT) is always edge
        EXPECT_EQ(refusal(bad),
                  "devices.pic.master.elcr: level trigger on an IRQ that is always edge");
    }
    {
        StateJson bad = j;
        bad["master"]["base"] = kMasterBase | 1;
        EXPECT_EQ(refusal(bad),
                  "devices.pic.master.base: bits 2:0 are the IRQ number and must be clear");
    }
    {
        StateJson bad = j;
        bad["slave"].erase("isr");
        EXPECT_EQ(refusal(bad), "devices.pic.slave.isr: missing");
    }
    EXPECT_EQ(refusal(j), "accepted");
}

}  // namespace
}  // namespace kv
