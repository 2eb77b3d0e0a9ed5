// Small TCP socket helpers for the transport's start-up: listen, connect with a deadline,
// and exact reads/writes bounded by a deadline and cancellable through an fd. Used only
// while the mesh is being built (the steady-state paths are in tcp_transport.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace kv {

using Clock = std::chrono::steady_clock;

// A bound, listening TCP socket (SO_REUSEADDR, close-on-exec). Port 0 picks a free port;
// local_port() tells which.
Result<Fd> tcp_listen(const std::string& host, uint16_t port, int backlog = 64);
Result<uint16_t> local_port(int fd);

// One connection attempt to host:port, finished by `deadline`. On failure `*retry` says
// whether the error is one a later attempt may not see (refused, unreachable, timed out:
// the peer has not started yet).
Result<Fd> tcp_connect(const std::string& host, uint16_t port, Clock::time_point deadline,
                       int cancel_fd, bool* retry);

Status set_nodelay(int fd);
// Bounds how long the kernel keeps a connection whose peer has gone silent: data unacked
// for `timeout` aborts it (TCP_USER_TIMEOUT, so a blocked send fails instead of waiting
// for ever), and an idle connection is probed with keepalives from 1 s on, given up after
// `timeout` too. Zero leaves the kernel's defaults.
Status set_liveness(int fd, std::chrono::milliseconds timeout);
Status set_nonblocking(int fd, bool on);
// SO_SNDBUF and SO_RCVBUF (bytes; the kernel doubles the value and keeps it fixed).
Status set_buffers(int fd, int bytes);

// Waits until `fd` is ready for `events` (POLLIN/POLLOUT), the deadline passes
// ("timed out") or `cancel_fd` (if >= 0) becomes readable ("cancelled").
Status wait_fd(int fd, short events, Clock::time_point deadline, int cancel_fd);

// Whole-buffer I/O bounded by a deadline; the socket's blocking mode does not matter.
Status write_all(int fd, std::span<const uint8_t> bytes, Clock::time_point deadline, int cancel_fd);
Status read_exact(int fd, std::span<uint8_t> bytes, Clock::time_point deadline, int cancel_fd);

// "127.0.0.1:4000" of the socket's peer, for log lines about not-yet-identified peers.
std::string peer_name(int fd);

}  // namespace kv
