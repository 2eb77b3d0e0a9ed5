// The VMM's terminal: host stdin feeds the guest's UART, UART output goes to host stdout.
//
// - When stdin is a TTY it is put in raw mode (no echo, no line editing, no signals: Ctrl-C
//   goes to the guest) and restored when the Console goes away. For exits that skip
//   destructors, the saved settings are also restored by an atexit handler, and
//   restore_terminal_now() (async-signal-safe) is there for the integrator's fatal-signal
//   handler.
// - Escapes as in QEMU: Ctrl-A x asks the VMM to exit (the on_exit_request callback),
//   Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A followed by anything else sends both bytes.
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
#include <span>
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

    // Appends the bytes meant for the guest to `out`; returns true when the input held an
    // exit request. An escape at the end of `in` waits for the next call.
    bool feed(std::span<const uint8_t> in, std::vector<uint8_t>& out);

  private:
    bool armed_ = false;
};

class Console {
  public:
    struct Options {
        int in_fd = 0;        // stdin
        bool raw_tty = true;  // raw mode when in_fd is a terminal
        bool escapes = true;  // Ctrl-A handling
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

    Uart8250& uart_;
    const std::function<void()> on_exit_request_;
    const Options options_;
    Fd wake_;  // eventfd: stop() makes poll() return
    std::unique_ptr<RawTerminal> raw_;
    ConsoleEscape escape_;  // reader thread only
    std::jthread thread_;
};

}  // namespace kv
