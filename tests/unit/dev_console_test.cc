// Console: escapes, the reader thread feeding the UART, stopping, raw mode on a pty.
#include <gtest/gtest.h>
#include <pty.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/devices/console.h"

namespace kv {
namespace {

std::string feed(ConsoleEscape& e, const std::string& in, bool* exit = nullptr) {
    std::vector<uint8_t> out;
    bool x = e.feed(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.data()), in.size()), out);
    if (exit) *exit = x;
    return std::string(out.begin(), out.end());
}

TEST(ConsoleEscape, CtrlAXRequestsExit) {
    ConsoleEscape e;
    bool exit = false;
    EXPECT_EQ(feed(e, "ls\x01x", &exit), "ls");
    EXPECT_TRUE(exit);
}

TEST(ConsoleEscape, CtrlACtrlASendsOneCtrlA) {
    ConsoleEscape e;
    bool exit = true;
    EXPECT_EQ(feed(e, "\x01\x01", &exit), "\x01");
    EXPECT_FALSE(exit);
}

TEST(ConsoleEscape, EscapeSplitAcrossReadsAndUnknownEscapesPassThrough) {
    ConsoleEscape e;
    bool exit = false;
    EXPECT_EQ(feed(e, "a\x01", &exit), "a");
    EXPECT_EQ(feed(e, "x", &exit), "");
    EXPECT_TRUE(exit);
    EXPECT_EQ(feed(e,
                   "\x01"
                   "b",
                   &exit),
              "\x01"
              "b");
    EXPECT_FALSE(exit);
}

// Waits for a condition another thread signals.
struct Flag {
    void set() {
        std::lock_guard lk(mu);
        value = true;
        cv.notify_all();
    }
    bool wait() {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, std::chrono::seconds(30), [&] { return value; });
    }
    std::mutex mu;
    std::condition_variable cv;
    bool value = false;
};

class IrqFlag : public IrqChip {
  public:
    void set_irq(uint32_t, bool level) override {
        if (level) raised.set();
    }
    Flag raised;
};

TEST(Console, PipeInputReachesTheUartAndCtrlAXCallsExit) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    IrqFlag chip;
    Uart8250 uart(IrqLine(&chip, 4), nullptr);
    uint8_t v = Uart8250::kMcrOut2;
    uart.write(Uart8250::kMcr, std::span<const uint8_t>(&v, 1));
    v = Uart8250::kIerRda;
    uart.write(Uart8250::kIer, std::span<const uint8_t>(&v, 1));
    Flag exit_requested;
    auto console = Console::start(uart, [&] { exit_requested.set(); }, {.in_fd = p[0]});
    ASSERT_TRUE(console.ok()) << console.error().message;

    ASSERT_EQ(write(p[1], "k\x01x", 3), 3);
    EXPECT_TRUE(chip.raised.wait());
    EXPECT_TRUE(exit_requested.wait());
    uint8_t b = 0;
    uart.read(Uart8250::kRbrThr, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 'k');
    EXPECT_EQ(uart.pending_input(), 0u);  // the escape did not reach the guest
    (*console)->stop();
    console->reset();
    close(p[0]);
    close(p[1]);
}

TEST(Console, StopsWhileThePushIsBlockedOnAFullUart) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    Uart8250 uart(IrqLine(), nullptr, /*backlog_capacity=*/2);
    auto console = Console::start(uart, nullptr, {.in_fd = p[0]});
    ASSERT_TRUE(console.ok());
    ASSERT_EQ(write(p[1], "0123456789", 10), 10);
    // RBR (1) + backlog (2) fill up; the reader is then blocked inside push_input.
    while (uart.pending_input() < 3) std::this_thread::yield();
    console->reset();  // must request stop, release the push and join
    EXPECT_EQ(uart.pending_input(), 3u);
    close(p[0]);
    close(p[1]);
}

TEST(Console, EndOfInputEndsTheReaderQuietly) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    Uart8250 uart(IrqLine(), nullptr);
    auto console = Console::start(uart, nullptr, {.in_fd = p[0]});
    ASSERT_TRUE(console.ok());
    close(p[1]);
    console->reset();
    close(p[0]);
    SUCCEED();
}

TEST(RawTerminal, RawWhileHeldRestoredAfter) {
    int master = -1, slave = -1;
    ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
    termios before;
    ASSERT_EQ(tcgetattr(slave, &before), 0);
    ASSERT_TRUE(before.c_lflag & ICANON);
    {
        auto raw = RawTerminal::enter(slave);
        ASSERT_TRUE(raw.ok()) << raw.error().message;
        ASSERT_TRUE(*raw);
        termios during;
        ASSERT_EQ(tcgetattr(slave, &during), 0);
        EXPECT_FALSE(during.c_lflag & (ICANON | ECHO | ISIG));
        EXPECT_FALSE(during.c_iflag & ICRNL);
        EXPECT_FALSE(RawTerminal::enter(slave).ok());  // one at a time
    }
    termios after;
    ASSERT_EQ(tcgetattr(slave, &after), 0);
    EXPECT_EQ(after.c_lflag, before.c_lflag);
    EXPECT_EQ(after.c_iflag, before.c_iflag);
    // The fatal-path restore works the same way and is harmless when nothing is saved.
    {
        auto raw = RawTerminal::enter(slave);
        ASSERT_TRUE(raw.ok());
        restore_terminal_now();
        ASSERT_EQ(tcgetattr(slave, &after), 0);
        EXPECT_EQ(after.c_lflag, before.c_lflag);
    }
    restore_terminal_now();
    close(slave);
    close(master);
}

TEST(RawTerminal, NotATerminalIsLeftAlone) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    auto raw = RawTerminal::enter(p[0]);
    ASSERT_TRUE(raw.ok());
    EXPECT_FALSE(*raw);
    close(p[0]);
    close(p[1]);
}

TEST(Console, FdSinkWritesEveryByte) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    auto sink = Console::fd_sink(p[1]);
    const uint8_t data[] = {'o', 'k', '\n'};
    sink(data);
    char buf[8] = {};
    ASSERT_EQ(read(p[0], buf, sizeof buf), 3);
    EXPECT_EQ(std::string(buf, 3), "ok\n");
    close(p[0]);
    close(p[1]);
}

}  // namespace
}  // namespace kv
