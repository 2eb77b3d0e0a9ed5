#include "vmm/devices/console.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/log.h"

namespace kv {
namespace {
// Process-wide on purpose: atexit() and signal handlers take no argument. Written by
// RawTerminal::enter before g_saved is published, read after g_saved is taken back.
std::atomic<bool> g_saved{false};
termios g_saved_tio;
int g_saved_fd = -1;
std::once_flag g_atexit_once;
}  // namespace

void restore_terminal_now() {
    // exchange() on a lock-free atomic and tcsetattr are both async-signal-safe.
    if (g_saved.exchange(false)) tcsetattr(g_saved_fd, TCSANOW, &g_saved_tio);
}

Result<std::unique_ptr<RawTerminal>> RawTerminal::enter(int fd) {
    if (!isatty(fd)) return std::unique_ptr<RawTerminal>();
    if (g_saved.load()) return Error{"console: the terminal is already in raw mode"};
    termios tio;
    if (tcgetattr(fd, &tio) != 0) return Error::from_errno("console: tcgetattr");
    g_saved_tio = tio;
    g_saved_fd = fd;
    g_saved.store(true);
    std::call_once(g_atexit_once, [] { std::atexit(restore_terminal_now); });
    // Input byte for byte, untranslated, no echo, and no signals: Ctrl-C and Ctrl-Z belong
    // to the guest. Output processing stays on: the guest sends \r\n itself.
    tio.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~tcflag_t(CSIZE | PARENB);
    tio.c_cflag |= CS8;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &tio) != 0) {
        Error e = Error::from_errno("console: tcsetattr");
        restore_terminal_now();
        return e;
    }
    return std::unique_ptr<RawTerminal>(new RawTerminal());
}

RawTerminal::~RawTerminal() {
    restore_terminal_now();
}

ConsoleEscape::Step ConsoleEscape::feed(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
    for (size_t i = 0; i < in.size(); ++i) {
        const uint8_t b = in[i];
        if (!armed_) {
            if (b == kEscape)
                armed_ = true;
            else
                out.push_back(b);
            continue;
        }
        armed_ = false;
        if (b == kExit) return {i + 1, Command::Exit};
        if (b == kMonitor && monitor_) return {i + 1, Command::Monitor};
        out.push_back(kEscape);
        if (b != kEscape) out.push_back(b);
    }
    return {in.size(), Command::None};
}

Uart8250::Sink ConsoleOutput::guest_sink() {
    return [this](std::span<const uint8_t> bytes) {
        std::lock_guard lk(mu_);
        if (!held_) {
            out_(bytes);
            return;
        }
        buf_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        if (buf_.size() > kMaxHeld) {
            const size_t cut = buf_.size() - kMaxHeld;
            dropped_ += cut;
            buf_.erase(0, cut);
        }
    };
}

void ConsoleOutput::write_own(std::string_view text) {
    std::lock_guard lk(mu_);
    out_(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void ConsoleOutput::hold() {
    std::lock_guard lk(mu_);
    held_ = true;
}

void ConsoleOutput::release() {
    std::lock_guard lk(mu_);
    held_ = false;
    if (dropped_) {
        std::string note = "[console: " + std::to_string(dropped_) +
                           " bytes of guest output dropped while the monitor was open]\n";
        out_(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(note.data()), note.size()));
        dropped_ = 0;
    }
    out_(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()));
    buf_.clear();
}

Console::Console(Uart8250& uart, std::function<void()> on_exit_request, Options options)
    : uart_(uart),
      on_exit_request_(std::move(on_exit_request)),
      options_(options),
      escape_(options.monitor != nullptr) {}

Result<std::unique_ptr<Console>> Console::start(Uart8250& uart,
                                                std::function<void()> on_exit_request,
                                                Options options) {
    std::unique_ptr<Console> c(new Console(uart, std::move(on_exit_request), options));
    auto wake = Fd::check(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "console: eventfd");
    if (!wake) return wake.error();
    c->wake_ = std::move(*wake);
    if (options.raw_tty) {
        auto raw = RawTerminal::enter(options.in_fd);
        if (!raw) return raw.error();
        c->raw_ = std::move(*raw);
    }
    c->thread_ = std::jthread([p = c.get()](std::stop_token st) { p->run(st); });
    return c;
}

Console::~Console() {
    stop();
}

void Console::stop() {
    if (thread_.joinable()) {
        // request_stop releases a push_input waiting for backlog space; the eventfd
        // releases poll().
        thread_.request_stop();
        uint64_t one = 1;
        if (::write(wake_.get(), &one, sizeof one) < 0) KV_WARN("console: eventfd write failed");
        thread_.join();
    }
    raw_.reset();  // the terminal comes back only once nobody reads it raw
}

void Console::run(std::stop_token stop) {
    pollfd fds[2] = {{options_.in_fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    uint8_t buf[256];
    std::vector<uint8_t> out;
    while (!stop.stop_requested()) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            KV_ERROR("console: poll: %s", std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        if (!fds[0].revents) continue;
        ssize_t n = ::read(options_.in_fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            KV_ERROR("console: read: %s", std::strerror(errno));
            return;
        }
        if (n == 0) {
            KV_DEBUG("console: end of input");
            return;
        }
        std::span<const uint8_t> in(buf, size_t(n));
        while (!in.empty()) {
            out.clear();
            ConsoleEscape::Step step{in.size(), ConsoleEscape::Command::None};
            if (options_.escapes)
                step = escape_.feed(in, out);
            else
                out.assign(in.begin(), in.end());
            in = in.subspan(step.consumed);
            if (!out.empty()) {
                if (in_monitor_)
                    show(options_.monitor->feed(out));
                else
                    uart_.push_input(out, stop);
            }
            if (step.command == ConsoleEscape::Command::Exit && on_exit_request_) {
                on_exit_request_();
            } else if (step.command == ConsoleEscape::Command::Monitor) {
                in_monitor_ = !in_monitor_;
                if (in_monitor_) {
                    if (options_.output) options_.output->hold();
                    show(options_.monitor->enter());
                } else {
                    show(options_.monitor->leave());
                    if (options_.output) options_.output->release();
                }
            }
        }
    }
}

void Console::show(const std::string& text) {
    if (text.empty()) return;
    if (options_.output) {
        options_.output->write_own(text);
    } else {
        fd_sink(1)(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    }
}

Uart8250::Sink Console::fd_sink(int fd) {
    return [fd](std::span<const uint8_t> bytes) {
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
            if (n > 0) {
                done += size_t(n);
            } else if (n < 0 && errno == EAGAIN) {
                pollfd p{fd, POLLOUT, 0};
                poll(&p, 1, -1);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                return;
            }
        }
    };
}

}  // namespace kv
