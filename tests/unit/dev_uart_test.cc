// Register-level behaviour of the 16550A that Linux's 8250 driver relies on.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/devices/uart_8250.h"

namespace kv {
namespace {

// Records every level change; waiters can block until the line is high.
class FakeIrqChip : public IrqChip {
  public:
    void set_irq(uint32_t gsi, bool level) override {
        std::lock_guard lk(mu_);
        events.push_back({gsi, level});
        if (level && !level_) ++rising;
        level_ = level;
        cv_.notify_all();
    }
    bool level() {
        std::lock_guard lk(mu_);
        return level_;
    }
    bool wait_high(std::chrono::seconds timeout) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return level_; });
    }
    std::vector<std::pair<uint32_t, bool>> events;
    int rising = 0;

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool level_ = false;
};

class UartTest : public ::testing::Test {
  protected:
    UartTest()
        : uart(IrqLine(&chip, 4),
               [this](std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }) {}
    uint8_t in(uint64_t reg) {
        uint8_t b = 0;
        uart.read(reg, std::span<uint8_t>(&b, 1));
        return b;
    }
    void outb(uint64_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
    void push(const std::string& s) {
        uart.push_input(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    // What Linux's serial8250_startup leaves: OUT2 on (IRQ gate), FIFOs on.
    void open_port() {
        outb(Uart8250::kMcr, Uart8250::kMcrOut2 | Uart8250::kMcrRts | Uart8250::kMcrDtr);
        outb(Uart8250::kIirFcr, Uart8250::kFcrEnable | Uart8250::kFcrClearRx);
    }

    FakeIrqChip chip;
    std::vector<uint8_t> out;
    Uart8250 uart;
};

TEST_F(UartTest, ThrBytesReachTheSinkInOrder) {
    for (char c : std::string("hi\n")) outb(Uart8250::kRbrThr, uint8_t(c));
    EXPECT_EQ(std::string(out.begin(), out.end()), "hi\n");
    // The transmitter is always empty: THRE and TEMT.
    EXPECT_EQ(in(Uart8250::kLsr)&0x60, 0x60);
}

TEST_F(UartTest, ThreInterruptOnEnableAndClearedByIirRead) {
    open_port();
    EXPECT_FALSE(chip.level());
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirNone);
    outb(Uart8250::kIer, Uart8250::kIerThre);  // 0 -> 1 with THR empty raises THRE
    EXPECT_TRUE(chip.level());
    EXPECT_EQ(in(Uart8250::kIirFcr), Uart8250::kIirFifoBits | Uart8250::kIirThre);
    // That IIR read acknowledged THRE: the line drops and IIR says nothing pending.
    EXPECT_FALSE(chip.level());
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirNone);
    // Re-enabling re-asserts (Linux's start-up THRE test needs this).
    outb(Uart8250::kIer, 0);
    outb(Uart8250::kIer, Uart8250::kIerThre);
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirThre);
    // A THR write makes THR empty again at once: a new rising edge.
    const int before = chip.rising;
    outb(Uart8250::kRbrThr, 'a');
    EXPECT_TRUE(chip.level());
    EXPECT_EQ(chip.rising, before + 1);
    // Disabling the interrupt drops the line.
    outb(Uart8250::kIer, 0);
    EXPECT_FALSE(chip.level());
    for (auto& e : chip.events) EXPECT_EQ(e.first, 4u);
}

TEST_F(UartTest, LinuxTxenTestSeesThreWithoutIirRead) {
    // serial8250_do_startup: IER=THRI; read LSR; read IIR; IER=0 - IIR must show THRE.
    open_port();
    outb(Uart8250::kIer, Uart8250::kIerThre);
    EXPECT_TRUE(in(Uart8250::kLsr)&Uart8250::kLsrTemt);
    EXPECT_FALSE(in(Uart8250::kIirFcr)&Uart8250::kIirNone);
}

TEST_F(UartTest, InterruptLineGatedByOut2) {
    outb(Uart8250::kIer, Uart8250::kIerThre);
    EXPECT_FALSE(chip.level());  // OUT2 off: the PC's IRQ buffer is disabled
    outb(Uart8250::kMcr, Uart8250::kMcrOut2);
    EXPECT_TRUE(chip.level());
}

TEST_F(UartTest, ReceivedDataRaisesRdaAndDrains) {
    open_port();
    outb(Uart8250::kIer, Uart8250::kIerRda | Uart8250::kIerRls);
    EXPECT_FALSE(chip.level());
    push("ok");
    EXPECT_TRUE(chip.level());
    EXPECT_TRUE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
    // FCR 0x03 leaves the trigger level at 1 byte: 2 bytes is RDA, not timeout.
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirRda);
    EXPECT_EQ(in(Uart8250::kRbrThr), 'o');
    EXPECT_EQ(in(Uart8250::kRbrThr), 'k');
    EXPECT_FALSE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
    EXPECT_FALSE(chip.level());
}

TEST_F(UartTest, FifoTriggerLevelAndTimeout) {
    outb(Uart8250::kMcr, Uart8250::kMcrOut2);
    outb(Uart8250::kIirFcr, 0x81);  // FIFO on, trigger level 8
    outb(Uart8250::kIer, Uart8250::kIerRda);
    push("abc");
    EXPECT_EQ(in(Uart8250::kIirFcr), Uart8250::kIirFifoBits | Uart8250::kIirTimeout);
    push("defghij");
    EXPECT_EQ(in(Uart8250::kIirFcr), Uart8250::kIirFifoBits | Uart8250::kIirRda);
    // The hardware FIFO holds 16; the rest waits in the backlog and follows in order.
    push("0123456789");
    std::string got;
    while (in(Uart8250::kLsr)&Uart8250::kLsrDr) got += char(in(Uart8250::kRbrThr));
    EXPECT_EQ(got, "abcdefghij0123456789");
}

TEST_F(UartTest, FcrClearsTheReceiveFifo) {
    outb(Uart8250::kIirFcr, Uart8250::kFcrEnable);
    push("xyz");
    outb(Uart8250::kIirFcr, Uart8250::kFcrEnable | Uart8250::kFcrClearRx);
    EXPECT_FALSE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
}

TEST_F(UartTest, NonFifoModeHoldsOneByteAndKeepsTheRest) {
    push("ab");
    EXPECT_EQ(in(Uart8250::kIirFcr)&0xC0, 0);  // no FIFO bits in IIR
    EXPECT_EQ(in(Uart8250::kRbrThr), 'a');
    EXPECT_TRUE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
    EXPECT_EQ(in(Uart8250::kRbrThr), 'b');
    EXPECT_FALSE(in(Uart8250::kLsr)&Uart8250::kLsrOe);  // nothing was overrun
}

TEST_F(UartTest, DlabSwitchesToTheDivisorLatch) {
    outb(Uart8250::kIer, 0x05);
    outb(Uart8250::kLcr, 0x83);  // DLAB, 8N1
    outb(0, 0x01);               // 115200 baud
    outb(1, 0x00);
    EXPECT_EQ(in(0), 0x01);
    EXPECT_EQ(in(1), 0x00);
    EXPECT_TRUE(out.empty());  // a DLL write is not a THR write
    outb(Uart8250::kLcr, 0x03);
    EXPECT_EQ(in(Uart8250::kIer), 0x05);  // IER untouched by the DLM write
    EXPECT_EQ(in(Uart8250::kLcr), 0x03);
}

TEST_F(UartTest, IerKeepsOnlyFourBitsAndScratchIsStored) {
    // Linux's autoconfig writes 0x0F/0xF0-style patterns and checks what sticks.
    outb(Uart8250::kIer, 0xFF);
    EXPECT_EQ(in(Uart8250::kIer), 0x0F);
    outb(Uart8250::kScr, 0xA5);
    EXPECT_EQ(in(Uart8250::kScr), 0xA5);
}

TEST_F(UartTest, LoopbackEchoesThrAndModemLines) {
    // Linux's autoconfig loopback test: MCR = LOOP | OUT2 | RTS expects MSR & 0xF0 == 0x90.
    outb(Uart8250::kMcr, Uart8250::kMcrLoop | 0x0A);
    EXPECT_EQ(in(Uart8250::kMsr)&0xF0, 0x90);
    outb(Uart8250::kRbrThr, 'L');
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
    EXPECT_EQ(in(Uart8250::kRbrThr), 'L');
    // Input from the host waits while the receiver is looped back.
    push("h");
    EXPECT_FALSE(in(Uart8250::kLsr)&Uart8250::kLsrDr);
    outb(Uart8250::kMcr, Uart8250::kMcrOut2);
    EXPECT_EQ(in(Uart8250::kRbrThr), 'h');
    EXPECT_EQ(in(Uart8250::kMsr)&0xF0, 0xB0);  // outside loopback: DCD DSR CTS
}

TEST_F(UartTest, ModemStatusDeltasInLoopback) {
    outb(Uart8250::kMcr, Uart8250::kMcrLoop);
    in(Uart8250::kMsr);  // clear the deltas from entering loopback
    outb(Uart8250::kMcr, Uart8250::kMcrLoop | Uart8250::kMcrRts);
    EXPECT_EQ(in(Uart8250::kMsr), Uart8250::kMsrCts | Uart8250::kMsrDcts);
    EXPECT_EQ(in(Uart8250::kMsr), Uart8250::kMsrCts);  // deltas clear on read
    outb(Uart8250::kIer, Uart8250::kIerMsi);
    outb(Uart8250::kMcr, Uart8250::kMcrLoop);
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirMsi);
}

TEST_F(UartTest, LoopbackOverrunIsAReceiverLineStatusInterrupt) {
    outb(Uart8250::kMcr, Uart8250::kMcrLoop);
    outb(Uart8250::kIer, Uart8250::kIerRls | Uart8250::kIerRda | Uart8250::kIerThre);
    outb(Uart8250::kRbrThr, '1');
    outb(Uart8250::kRbrThr, '2');  // non-FIFO mode: one byte of room, this one overruns
    // Priority: line status above received data above THRE.
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirRls);
    EXPECT_EQ(in(Uart8250::kLsr) & (Uart8250::kLsrOe | Uart8250::kLsrDr),
              Uart8250::kLsrOe | Uart8250::kLsrDr);
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirRda);
    EXPECT_EQ(in(Uart8250::kRbrThr), '1');
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirThre);
}

TEST_F(UartTest, ThreIsNotAcknowledgedByIirReportingSomethingElse) {
    open_port();
    outb(Uart8250::kIer, Uart8250::kIerThre | Uart8250::kIerRda);
    push("z");
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirRda);
    in(Uart8250::kRbrThr);
    EXPECT_EQ(in(Uart8250::kIirFcr)&0x0F, Uart8250::kIirThre);  // still pending
}

TEST_F(UartTest, InputPushedFromAnotherThreadRaisesTheLine) {
    open_port();
    outb(Uart8250::kIer, Uart8250::kIerRda);
    std::thread pusher([this] { push("q"); });
    EXPECT_TRUE(chip.wait_high(std::chrono::seconds(10)));
    pusher.join();
    EXPECT_EQ(in(Uart8250::kRbrThr), 'q');
    EXPECT_FALSE(chip.level());
}

TEST(UartBacklog, PusherBlocksWhenFullUntilTheGuestReads) {
    FakeIrqChip chip;
    Uart8250 uart(IrqLine(&chip, 4), nullptr, /*backlog_capacity=*/4);
    // FIFO off: 1 byte in RBR + 4 in the backlog; the sixth byte must wait.
    const std::string data = "abcdef";
    constexpr size_t kNotReturned = 99;
    std::atomic<size_t> pushed{kNotReturned};
    std::thread pusher([&] {
        pushed = uart.push_input(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), 6));
    });
    while (uart.pending_input() < 5) std::this_thread::yield();
    // RBR and backlog are full with one byte still to queue: the call cannot have returned.
    EXPECT_EQ(pushed.load(), kNotReturned);
    std::string got;
    uint8_t b = 0;
    while (got.size() < data.size()) {
        uart.read(Uart8250::kLsr, std::span<uint8_t>(&b, 1));
        if (!(b & Uart8250::kLsrDr)) {
            std::this_thread::yield();  // the pusher has not queued more yet
            continue;
        }
        uart.read(Uart8250::kRbrThr, std::span<uint8_t>(&b, 1));
        got += char(b);
    }
    pusher.join();
    EXPECT_EQ(pushed.load(), 6u);
    EXPECT_EQ(got, data);
}

TEST(UartBacklog, StopTokenReleasesABlockedPusher) {
    Uart8250 uart(IrqLine(), nullptr, /*backlog_capacity=*/1);
    std::stop_source stop;
    std::atomic<size_t> pushed{99};
    const uint8_t data[4] = {1, 2, 3, 4};
    std::thread pusher([&] { pushed = uart.push_input(data, stop.get_token()); });
    // RBR holds 1 and the backlog 1: the call cannot finish until stopped.
    while (uart.pending_input() < 2) std::this_thread::yield();
    stop.request_stop();
    pusher.join();
    EXPECT_EQ(pushed.load(), 2u);  // the two bytes that fit, the rest refused
}

}  // namespace
}  // namespace kv
