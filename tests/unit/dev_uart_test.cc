// Register-level behaviour of the 16550A that Linux's 8250 driver relies on.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/devices/device_state.h"
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

// Snapshots: a UART restored from a saved state answers as the one saved.

uint8_t read_reg(Uart8250& u, uint64_t reg) {
    uint8_t b = 0;
    u.read(reg, std::span<uint8_t>(&b, 1));
    return b;
}
void write_reg(Uart8250& u, uint64_t reg, uint8_t v) {
    u.write(reg, std::span<const uint8_t>(&v, 1));
}

// What a guest sees reading everything back and draining the receiver, in order.
std::vector<uint8_t> read_back(Uart8250& u) {
    std::vector<uint8_t> r;
    for (uint64_t reg : {Uart8250::kIer, Uart8250::kLcr, Uart8250::kMcr, Uart8250::kScr})
        r.push_back(read_reg(u, reg));
    const uint8_t lcr = read_reg(u, Uart8250::kLcr);
    write_reg(u, Uart8250::kLcr, lcr | Uart8250::kLcrDlab);
    r.push_back(read_reg(u, 0));  // DLL
    r.push_back(read_reg(u, 1));  // DLM
    write_reg(u, Uart8250::kLcr, lcr);
    r.push_back(u.irq_level());
    for (int i = 0; i < 64; ++i) {
        const uint8_t iir = read_reg(u, Uart8250::kIirFcr);
        const uint8_t lsr = read_reg(u, Uart8250::kLsr);
        r.insert(r.end(), {iir, lsr, read_reg(u, Uart8250::kMsr), uint8_t(u.irq_level())});
        if (!(lsr & Uart8250::kLsrDr) && (iir & Uart8250::kIirNone)) break;
        if (lsr & Uart8250::kLsrDr) r.push_back(read_reg(u, Uart8250::kRbrThr));
    }
    return r;
}

TEST_F(UartTest, RestoreKeepsRegistersFifoBacklogAndTheLine) {
    open_port();
    outb(Uart8250::kIirFcr, 0x41);  // FIFO on, trigger level 4
    outb(Uart8250::kLcr, Uart8250::kLcrDlab | 0x1B);
    outb(0, 0x01);
    outb(1, 0x02);
    outb(Uart8250::kLcr, 0x1B);
    outb(Uart8250::kScr, 0x5A);
    outb(Uart8250::kIer, Uart8250::kIerRda | Uart8250::kIerThre);  // THRE pending too
    push("abcdefghijklmnopqrst");  // 16 in the FIFO, 4 in the backlog
    ASSERT_TRUE(chip.level());
    StateSaver s;
    uart.save_state(s);
    const StateJson j = s.take();

    FakeIrqChip chip2;
    std::vector<uint8_t> out2;
    Uart8250 uart2(IrqLine(&chip2, 4), [&](std::span<const uint8_t> b) {
        out2.insert(out2.end(), b.begin(), b.end());
    });
    StateLoader l(j, "devices.uart");
    const Status st = uart2.restore_state(l);
    ASSERT_TRUE(st) << st.error().message;
    // The line is driven from the restored state, nothing is sent to the host.
    EXPECT_TRUE(chip2.level());
    EXPECT_TRUE(uart2.irq_level());
    EXPECT_TRUE(out2.empty());
    EXPECT_EQ(uart2.pending_input(), 20u);

    const std::vector<uint8_t> got = read_back(uart2);
    EXPECT_EQ(got, read_back(uart));
    ASSERT_GE(got.size(), 7u);
    EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.begin() + 7),
              (std::vector<uint8_t>{Uart8250::kIerRda | Uart8250::kIerThre, 0x1B,
                                    Uart8250::kMcrOut2 | Uart8250::kMcrRts | Uart8250::kMcrDtr,
                                    0x5A, 0x01, 0x02, 1}));
    // Each round: IIR, LSR, MSR, the line, and RBR while LSR.DR was set.
    std::vector<uint8_t> iirs;
    std::string data;
    for (size_t i = 7; i + 4 <= got.size();) {
        iirs.push_back(got[i]);
        const bool dr = got[i + 1] & Uart8250::kLsrDr;
        i += 4;
        if (dr && i < got.size()) data += char(got[i++]);
    }
    EXPECT_EQ(data, "abcdefghijklmnopqrst");
    // 16 bytes reach the trigger level and received data outranks THRE, which was still
    // pending: reported once the receiver is empty, then nothing.
    ASSERT_GE(iirs.size(), 3u);
    EXPECT_EQ(iirs.front(), Uart8250::kIirFifoBits | Uart8250::kIirRda);
    EXPECT_EQ(iirs[iirs.size() - 2], Uart8250::kIirFifoBits | Uart8250::kIirThre);
    EXPECT_EQ(iirs.back(), Uart8250::kIirFifoBits | Uart8250::kIirNone);
    EXPECT_EQ(read_reg(uart2, Uart8250::kIirFcr), Uart8250::kIirFifoBits | Uart8250::kIirNone);
    EXPECT_FALSE(chip2.level());
    EXPECT_EQ(uart2.pending_input(), 0u);
}

TEST_F(UartTest, RestoreKeepsLoopbackOverrunAndModemDeltas) {
    outb(Uart8250::kMcr, Uart8250::kMcrLoop | Uart8250::kMcrRts);  // DCD, DSR deltas
    outb(Uart8250::kIer, Uart8250::kIerRls | Uart8250::kIerMsi);
    outb(Uart8250::kRbrThr, '1');
    outb(Uart8250::kRbrThr, '2');  // overruns the 1-byte receiver
    push("h");                     // waits while looped back
    StateSaver s;
    uart.save_state(s);
    const StateJson j = s.take();

    FakeIrqChip chip2;
    Uart8250 uart2(IrqLine(&chip2, 4), nullptr);
    StateLoader l(j, "devices.uart");
    const Status st = uart2.restore_state(l);
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_FALSE(chip2.level());  // loopback gates the line
    EXPECT_EQ(read_reg(uart2, Uart8250::kIirFcr), Uart8250::kIirRls);
    EXPECT_EQ(read_reg(uart2, Uart8250::kLsr),
              Uart8250::kLsrOe | Uart8250::kLsrDr | Uart8250::kLsrThre | Uart8250::kLsrTemt);
    EXPECT_EQ(read_reg(uart2, Uart8250::kIirFcr), Uart8250::kIirMsi);
    EXPECT_EQ(read_reg(uart2, Uart8250::kMsr),
              Uart8250::kMsrCts | Uart8250::kMsrDdcd | Uart8250::kMsrDdsr);
    EXPECT_EQ(read_reg(uart2, Uart8250::kIirFcr), Uart8250::kIirNone);
    EXPECT_EQ(read_reg(uart2, Uart8250::kRbrThr), '1');
    // Leaving loopback lets the saved backlog in.
    write_reg(uart2, Uart8250::kMcr, 0);
    EXPECT_EQ(read_reg(uart2, Uart8250::kRbrThr), 'h');
    EXPECT_EQ(uart2.pending_input(), 0u);
    // The original, driven the same way, answered the same.
    EXPECT_EQ(in(Uart8250::kIirFcr), Uart8250::kIirRls);
    in(Uart8250::kLsr);
    in(Uart8250::kMsr);
    EXPECT_EQ(in(Uart8250::kRbrThr), '1');
    outb(Uart8250::kMcr, 0);
    EXPECT_EQ(in(Uart8250::kRbrThr), 'h');
}

TEST_F(UartTest, RestoreRefusesADamagedStateNamingTheField) {
    StateSaver s;
    uart.save_state(s);  // FIFOs off: a 1-byte receiver
    const StateJson j = s.take();
    auto refusal = [](const StateJson& bad) -> std::string {
        Uart8250 u(IrqLine(), nullptr);
        StateLoader l(bad, "devices.uart");
        const Status st = u.restore_state(l);
        return st ? "accepted" : st.error().message;
    };
    {
        StateJson bad = j;
        bad["rx_trigger"] = 5;
        EXPECT_EQ(refusal(bad),
                  "devices.uart.rx_trigger: 5 is not a trigger level (1, 4, 8 or 14; 1 with "
                  "FIFOs off)");
        bad["rx_trigger"] = 8;  // a level, but the FIFOs are off
        EXPECT_EQ(refusal(bad).rfind("devices.uart.rx_trigger: 8 ", 0), 0u) << refusal(bad);
    }
    {
        StateJson bad = j;
        bad["rx_fifo"] = StateJson::array({0x61, 0x62});
        EXPECT_EQ(refusal(bad), "devices.uart.rx_fifo: 2 bytes, the receiver holds at most 1");
    }
    {
        StateJson bad = j;
        bad["ier"] = 0x10;
        EXPECT_EQ(refusal(bad), "devices.uart.ier: bits 7:4 are not writable");
        bad["ier"] = 256;
        EXPECT_EQ(refusal(bad), "devices.uart.ier: 256 is out of range for a 8-bit field");
    }
    {
        StateJson bad = j;
        bad.erase("mcr");
        EXPECT_EQ(refusal(bad), "devices.uart.mcr: missing");
    }
    EXPECT_EQ(refusal(j), "accepted");
}

}  // namespace
}  // namespace kv
