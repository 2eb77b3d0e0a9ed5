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

bool ConsoleEscape::feed(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
    bool exit = false;
    for (uint8_t b : in) {
        if (!armed_) {
            if (b == kEscape)
                armed_ = true;
            else
                out.push_back(b);
            continue;
        }
        armed_ = false;
        if (b == kExit) {
            exit = true;
        } else if (b == kEscape) {
            out.push_back(kEscape);
        } else {
            out.push_back(kEscape);
            out.push_back(b);
        }
    }
    return exit;
}

Console::Console(Uart8250& uart, std::function<void()> on_exit_request, Options options)
    : uart_(uart), on_exit_request_(std::move(on_exit_request)), options_(options) {}

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
        out.clear();
        std::span<const uint8_t> in(buf, size_t(n));
        bool exit = false;
        if (options_.escapes)
            exit = escape_.feed(in, out);
        else
            out.assign(in.begin(), in.end());
        if (!out.empty()) uart_.push_input(out, stop);
        if (exit && on_exit_request_) on_exit_request_();
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
