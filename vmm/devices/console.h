// The VMM's terminal: host stdin feeds the guest's UART, UART output goes to host stdout.
//
// - When stdin is a TTY it is put in raw mode (no echo, no line editing, no signals: Ctrl-C
//   goes to the guest) and restored when the Console goes away. For exits that skip
//   destructors, the saved settings are also restored by an atexit handler, and
//   restore_terminal_now() (async-signal-safe) is there for the integrator's fatal-signal
//   handler.
// - Escapes as in QEMU: Ctrl-A x asks the VMM to exit (the on_exit_request callback),
//   Ctrl-A c switches the terminal between the guest and the monitor (a ConsoleMonitor,
//   when one is given: the control commands, vmm/control/monitor.h), Ctrl-A Ctrl-A sends
//   one Ctrl-A; Ctrl-A followed by anything else sends both bytes.
// - While the monitor has the terminal, the guest's output is held (ConsoleOutput) and
//   written when the terminal goes back to the guest.
// - A reader thread polls stdin and an eventfd; stop() (also run by the destructor) signals
//   the eventfd and requests stop, which also releases a push_input blocked on a full UART
//   backlog, then joins. EOF on stdin ends the thread quietly (input from a file or
//   /dev/null); the guest keeps running.
//
// Threading: on_exit_request runs on the reader thread; it must not destroy the Console
// (that would join the thread from itself). Destroy the Console before the UART.
#pragma once

#include <termios.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/devices/uart_8250.h"

namespace kv {

// Restores the terminal saved by the active RawTerminal, if any. Async-signal-safe.
void restore_terminal_now();

// RAII raw mode for a terminal fd. Only one may be active per process: the saved settings
// are process-wide because atexit and signal handlers cannot reach an object.
class RawTerminal {
  public:
    // Null (and nothing changed) when `fd` is not a terminal.
    static Result<std::unique_ptr<RawTerminal>> enter(int fd);
    ~RawTerminal();
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;

  private:
    RawTerminal() = default;
};

// The escape-sequence filter, separate from any thread so that it can be tested alone.
class ConsoleEscape {
  public:
    static constexpr uint8_t kEscape = 0x01;  // Ctrl-A
    static constexpr uint8_t kExit = 'x';
    static constexpr uint8_t kMonitor = 'c';

    enum class Command { None, Exit, Monitor };
    struct Step {
        size_t consumed = 0;  // bytes of the input used up to and with the command
        Command command = Command::None;
    };
    // Ctrl-A c is a command only with `monitor` (otherwise both bytes pass through).
    explicit ConsoleEscape(bool monitor = false) : monitor_(monitor) {}

    // Appends the bytes meant for the current reader (the guest or the monitor) to `out`,
    // up to and including the first command escape, which is returned: call again with
    // the rest of the input. An escape at the end of `in` waits for the next call.
    Step feed(std::span<const uint8_t> in, std::vector<uint8_t>& out);

  private:
    bool monitor_;
    bool armed_ = false;
};

// The monitor that Ctrl-A c switches the terminal to. Called on the console's reader
// thread only; each call returns the text to show (lines end in '\n').
class ConsoleMonitor {
  public:
    virtual ~ConsoleMonitor() = default;
    virtual std::string enter() = 0;                            // the terminal comes here
    virtual std::string feed(std::span<const uint8_t> in) = 0;  // typed bytes
    virtual std::string leave() = 0;                            // back to the guest
};

// The guest's console output on a terminal it shares with the monitor: written through,
// or held while the monitor has the terminal (at most kMaxHeld bytes: beyond that the
// oldest are dropped, and counted). Any thread.
class ConsoleOutput {
  public:
    static constexpr size_t kMaxHeld = 1 << 20;
    explicit ConsoleOutput(Uart8250::Sink out) : out_(std::move(out)) {}
    // The UART's sink: the guest's bytes.
    Uart8250::Sink guest_sink();
    // The monitor's own text, never held.
    void write_own(std::string_view text);
    void hold();
    // Writes what was held (after a note of what was dropped, if any) and lets the guest's
    // output through again.
    void release();

  private:
    std::mutex mu_;
    Uart8250::Sink out_;  // under mu_
    bool held_ = false;
    std::string buf_;
    uint64_t dropped_ = 0;
};

class Console {
  public:
    struct Options {
        int in_fd = 0;        // stdin
        bool raw_tty = true;  // raw mode when in_fd is a terminal
        bool escapes = true;  // Ctrl-A handling
        // Ctrl-A c: null, no monitor. Both must outlive the Console; with a monitor the
        // guest's output must go through `output` so that it can be held.
        ConsoleMonitor* monitor = nullptr;
        ConsoleOutput* output = nullptr;
    };

    static Result<std::unique_ptr<Console>> start(Uart8250& uart,
                                                  std::function<void()> on_exit_request,
                                                  Options options);
    static Result<std::unique_ptr<Console>> start(Uart8250& uart,
                                                  std::function<void()> on_exit_request) {
        return start(uart, std::move(on_exit_request), Options{});
    }
    ~Console();
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

    // Stops and joins the reader thread; idempotent.
    void stop();

    // A UART sink that writes every byte to `fd` (retrying short writes and EINTR, waiting
    // on a non-blocking fd). Errors other than those are dropped: the guest's console
    // output has nowhere else to go.
    static Uart8250::Sink fd_sink(int fd = 1);

  private:
    Console(Uart8250& uart, std::function<void()> on_exit_request, Options options);
    void run(std::stop_token stop);
    void show(const std::string& text);  // the monitor's text on the terminal

    Uart8250& uart_;
    const std::function<void()> on_exit_request_;
    const Options options_;
    Fd wake_;  // eventfd: stop() makes poll() return
    std::unique_ptr<RawTerminal> raw_;
    ConsoleEscape escape_;     // reader thread only
    bool in_monitor_ = false;  // reader thread only
    std::jthread thread_;
};

}  // namespace kv
