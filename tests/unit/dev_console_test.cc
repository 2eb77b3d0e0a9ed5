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

// Feeds `in` through the filter as Console::run does (again after each command); the
// bytes for the reader, with each command marked in place as <x> or <c>.
std::string feed(ConsoleEscape& e, const std::string& in, bool* exit = nullptr) {
    std::span<const uint8_t> rest(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    std::string got;
    bool x = false;
    while (!rest.empty()) {
        std::vector<uint8_t> out;
        auto step = e.feed(rest, out);
        rest = rest.subspan(step.consumed);
        got.append(out.begin(), out.end());
        if (step.command == ConsoleEscape::Command::Exit) {
            got += "<x>";
            x = true;
        } else if (step.command == ConsoleEscape::Command::Monitor) {
            got += "<c>";
        }
    }
    if (exit) *exit = x;
    return got;
}

TEST(ConsoleEscape, CtrlAXRequestsExit) {
    ConsoleEscape e;
    bool exit = false;
    EXPECT_EQ(feed(e, "ls\x01x", &exit), "ls<x>");
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
    EXPECT_EQ(feed(e, "x", &exit), "<x>");
    EXPECT_TRUE(exit);
    EXPECT_EQ(feed(e,
                   "\x01"
                   "b",
                   &exit),
              "\x01"
              "b");
    EXPECT_FALSE(exit);
}

// Ctrl-A c is the monitor's toggle only when there is a monitor; the bytes around it keep
// their order and the command splits them (before: the guest's, after: the monitor's).
TEST(ConsoleEscape, CtrlACTogglesTheMonitorOnlyWithOne) {
    ConsoleEscape with(true), without(false);
    EXPECT_EQ(feed(with,
                   "ab\x01"
                   "cstatus\r\x01"
                   "cls"),
              "ab<c>status\r<c>ls");
    EXPECT_EQ(feed(without,
                   "ab\x01"
                   "cd"),
              "ab\x01"
              "cd");
    // Split across reads: the escape waits for its second byte.
    EXPECT_EQ(feed(with, "q\x01"), "q");
    EXPECT_EQ(feed(with, "cz"), "<c>z");
}

// While held, the guest's output waits (the monitor's own text goes through) and comes out
// in order when released; past kMaxHeld the oldest bytes are dropped and reported.
TEST(ConsoleOutput, HoldsTheGuestWhileTheMonitorHasTheTerminal) {
    std::string term;
    ConsoleOutput o([&](std::span<const uint8_t> b) { term.append(b.begin(), b.end()); });
    auto guest = o.guest_sink();
    auto say = [&](const std::string& s) {
        guest(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    };
    say("boot ");
    o.hold();
    say("one ");
    o.write_own("(kv) ");
    say("two ");
    EXPECT_EQ(term, "boot (kv) ");
    o.release();
    EXPECT_EQ(term, "boot (kv) one two ");
    say("three");
    EXPECT_EQ(term, "boot (kv) one two three");

    term.clear();
    o.hold();
    say(std::string(ConsoleOutput::kMaxHeld, 'a'));
    say("tail");
    o.release();
    EXPECT_NE(term.find("[console: 4 bytes of guest output dropped while the monitor was open]"),
              std::string::npos)
        << term.substr(0, 200);
    EXPECT_EQ(term.substr(term.size() - 4), "tail");
    EXPECT_EQ(term.size() - term.find(']') - 2, ConsoleOutput::kMaxHeld);
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
