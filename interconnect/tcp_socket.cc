#include "interconnect/tcp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <memory>

namespace kv {
namespace {

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

struct AddrInfoDeleter {
    void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

Result<AddrInfoPtr> resolve(const std::string& host, uint16_t port, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    addrinfo* out = nullptr;
    const std::string service = std::to_string(port);
    int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &out);
    if (rc != 0) return Error{"resolve " + host + ": " + gai_strerror(rc)};
    return AddrInfoPtr(out);
}

}  // namespace

Result<Fd> tcp_listen(const std::string& host, uint16_t port, int backlog) {
    auto ai = resolve(host, port, true);
    if (!ai.ok()) return ai.error();
    const addrinfo* a = ai->get();
    auto fd = Fd::check(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0), "socket");
    if (!fd.ok()) return fd.error();
    int one = 1;
    // Restarted nodes rebind their port while old connections sit in TIME_WAIT.
    if (setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        return Error::from_errno("setsockopt SO_REUSEADDR");
    }
    if (::bind(fd->get(), a->ai_addr, a->ai_addrlen) != 0) {
        return Error::from_errno("bind " + host + ":" + std::to_string(port));
    }
    if (::listen(fd->get(), backlog) != 0) return Error::from_errno("listen");
    return std::move(*fd);
}

Result<uint16_t> local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return Error::from_errno("getsockname");
    }
    // sockaddr_storage is laid out to be viewed as either family's address.
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return Error{"getsockname: not an IP socket"};
}

Status wait_fd(int fd, short events, Clock::time_point deadline, int cancel_fd) {
    while (true) {
        pollfd p[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
        int rc = ::poll(p, cancel_fd >= 0 ? 2 : 1, remaining_ms(deadline));
        if (rc < 0) {
            if (errno == EINTR) continue;
            return Error::from_errno("poll");
        }
        if (cancel_fd >= 0 && (p[1].revents & POLLIN)) return Error{"cancelled"};
        if (p[0].revents) return {};
        if (Clock::now() >= deadline) return Error{"timed out"};
    }
}

Result<Fd> tcp_connect(const std::string& host, uint16_t port, Clock::time_point deadline,
                       int cancel_fd, bool* retry) {
    *retry = false;
    auto ai = resolve(host, port, false);
    if (!ai.ok()) {
        *retry = true;  // a name may appear in DNS once the peer's host is up
        return ai.error();
    }
    const addrinfo* a = ai->get();
    auto fd = Fd::check(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
                        "socket");
    if (!fd.ok()) return fd.error();
    int err = 0;
    if (::connect(fd->get(), a->ai_addr, a->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
        } else {
            Status w = wait_fd(fd->get(), POLLOUT, deadline, cancel_fd);
            if (!w.ok()) {
                *retry = w.error().message == "timed out";
                return w.error();
            }
            socklen_t len = sizeof err;
            if (getsockopt(fd->get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
    }
    if (err != 0) {
        *retry = err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH ||
                 err == ENETUNREACH || err == ECONNRESET || err == ECONNABORTED;
        return Error::from_errno("connect " + host + ":" + std::to_string(port), err);
    }
    return std::move(*fd);
}

Status set_nodelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        return Error::from_errno("setsockopt TCP_NODELAY");
    }
    return {};
}

Status set_liveness(int fd, std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0) return {};
    const auto opt = [fd](int level, int name, int value, const char* what) -> Status {
        if (setsockopt(fd, level, name, &value, sizeof value) != 0)
            return Error::from_errno(std::string("setsockopt ") + what);
        return {};
    };
    const auto user_timeout = static_cast<int>(std::min<int64_t>(timeout.count(), INT32_MAX));
    const int probes =
        std::max(1, static_cast<int>(std::min<int64_t>(timeout.count() / 1000, 127)));
    KV_TRY(opt(IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout, "TCP_USER_TIMEOUT"));
    KV_TRY(opt(SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"));
    KV_TRY(opt(IPPROTO_TCP, TCP_KEEPIDLE, 1, "TCP_KEEPIDLE"));
    KV_TRY(opt(IPPROTO_TCP, TCP_KEEPINTVL, 1, "TCP_KEEPINTVL"));
    return opt(IPPROTO_TCP, TCP_KEEPCNT, probes, "TCP_KEEPCNT");
}

Status set_buffers(int fd, int bytes) {
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) != 0)
        return Error::from_errno("setsockopt SO_SNDBUF");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) != 0)
        return Error::from_errno("setsockopt SO_RCVBUF");
    return {};
}

Status set_nonblocking(int fd, bool on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return Error::from_errno("fcntl F_GETFL");
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, flags) != 0) return Error::from_errno("fcntl F_SETFL");
    return {};
}

Status write_all(int fd, std::span<const uint8_t> bytes, Clock::time_point deadline,
                 int cancel_fd) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            bytes = bytes.subspan(static_cast<size_t>(n));
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return Error::from_errno("send");
        KV_TRY(wait_fd(fd, POLLOUT, deadline, cancel_fd));
    }
    return {};
}

Status read_exact(int fd, std::span<uint8_t> bytes, Clock::time_point deadline, int cancel_fd) {
    while (!bytes.empty()) {
        ssize_t n = ::recv(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
        if (n > 0) {
            bytes = bytes.subspan(static_cast<size_t>(n));
            continue;
        }
        if (n == 0) return Error{"connection closed"};
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return Error::from_errno("receive");
        KV_TRY(wait_fd(fd, POLLIN, deadline, cancel_fd));
    }
    return {};
}

std::string peer_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return "?";
    }
    return std::string(host) + ":" + serv;
}

}  // namespace kv
