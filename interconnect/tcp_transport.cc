#include "interconnect/tcp_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "base/log.h"
#include "interconnect/codec.h"
#include "interconnect/handshake.h"
#include "interconnect/tcp_socket.h"

namespace kv {
namespace {

constexpr size_t kHelloMessage = kHeaderBytes + sizeof(HelloPayload);

// What send() and drop() say of a peer whose send queue passed kMaxSendQueue.
std::string queue_overflow() {
    return "its send queue grew past " + std::to_string(kMaxSendQueue >> 20) + " MiB";
}

std::string node_name(NodeId id) {
    return "node " + std::to_string(id);
}

std::string address_of(const PeerAddress& a) {
    return a.host + ":" + std::to_string(a.port);
}

// Serialises a Hello or HelloAck into `out`.
void encode_hello(MsgType type, NodeId src, const HelloPayload& p,
                  std::span<uint8_t, kHelloMessage> out) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(type);
    h.length = sizeof p;
    h.src = src;
    encode_header(h, out.first<kHeaderBytes>());
    std::memcpy(out.data() + kHeaderBytes, &p, sizeof p);
}

// Parses a complete Hello/HelloAck message of `expected` type.
Result<HelloPayload> decode_hello(MsgType expected, std::span<const uint8_t, kHelloMessage> in) {
    auto h = decode_header(in.first<kHeaderBytes>());
    if (!h.ok()) return h.error();
    if (h->type != static_cast<uint16_t>(expected)) {
        const char* got = msg_type_name(static_cast<MsgType>(h->type));
        return Error{std::string("expected ") + msg_type_name(expected) + ", got " + got};
    }
    KV_TRY(validate_payload(handshake_messages(), h->type, h->length));
    auto p = record_from<HelloPayload>(in.subspan<kHeaderBytes>());
    if (!p) return Error{"malformed Hello"};
    if (p->node_id != h->src) {
        return Error{"Hello from node " + std::to_string(p->node_id) + " with header src " +
                     std::to_string(h->src)};
    }
    return *p;
}

Status signal(int eventfd) {
    uint64_t one = 1;
    if (::write(eventfd, &one, sizeof one) != sizeof one) return Error::from_errno("eventfd");
    return {};
}

}  // namespace

Result<std::unique_ptr<Transport>> make_tcp_transport(const TransportOptions& opts,
                                                      MessageHandler* handler) {
    auto t = TcpTransport::create(opts, handler);
    if (!t.ok()) return t.error();
    return std::unique_ptr<Transport>(std::move(*t));
}

TcpTransport::TcpTransport(const TransportOptions& opts, MessageHandler* handler)
    : opts_(opts), handler_(handler) {
    auto theirs = handler_->messages();
    specs_.assign(theirs.begin(), theirs.end());
    specs_.push_back({MsgType::Heartbeat, {PayloadRule::Kind::Fixed, 0}});
}

TcpTransport::~TcpTransport() {
    shutdown();
}

Result<std::unique_ptr<TcpTransport>> TcpTransport::create(const TransportOptions& opts,
                                                           MessageHandler* handler) {
    if (!handler) return Error{"tcp transport: no message handler"};
    std::set<NodeId> ids;
    bool self_listed = false;
    for (const PeerAddress& a : opts.nodes) {
        if (!ids.insert(a.id).second) {
            return Error{"tcp transport: " + node_name(a.id) + " listed twice"};
        }
        self_listed |= a.id == opts.self;
    }
    if (!self_listed) {
        return Error{"tcp transport: self (" + node_name(opts.self) + ") not in the node list"};
    }
    std::unique_ptr<TcpTransport> t(new TcpTransport(opts, handler));
    Status st = t->start();
    if (!st.ok()) return st.error();
    return t;
}

TcpTransport::Peer* TcpTransport::find(NodeId id) {
    // A handful of peers: a linear scan is as fast as a map and never allocates.
    for (auto& p : peers_) {
        if (p->addr.id == id) return p.get();
    }
    return nullptr;
}

Status TcpTransport::start() {
    const PeerAddress* me = nullptr;
    for (const PeerAddress& a : opts_.nodes) {
        if (a.id == opts_.self) {
            me = &a;
        } else {
            peers_.push_back(std::make_unique<Peer>(specs_));
            peers_.back()->addr = a;
        }
    }
    std::sort(peers_.begin(), peers_.end(),
              [](const auto& a, const auto& b) { return a->addr.id < b->addr.id; });
    const bool has_higher = !peers_.empty() && peers_.back()->addr.id > opts_.self;

    auto ep = Fd::check(epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    if (!ep.ok()) return ep.error();
    epoll_ = std::move(*ep);
    auto wake = Fd::check(eventfd(0, EFD_CLOEXEC), "eventfd");
    if (!wake.ok()) return wake.error();
    wake_ = std::move(*wake);
    auto cancel = Fd::check(eventfd(0, EFD_CLOEXEC), "eventfd");
    if (!cancel.ok()) return cancel.error();
    cancel_ = std::move(*cancel);

    Fd listener;
    if (opts_.listener && opts_.listener->valid()) {
        auto dup = Fd::check(fcntl(opts_.listener->get(), F_DUPFD_CLOEXEC, 0), "dup listener");
        if (!dup.ok()) return dup.error();
        listener = std::move(*dup);
    } else if (has_higher) {
        auto l = tcp_listen(me->host, me->port);
        if (!l.ok()) return Error{node_name(opts_.self) + ": " + l.error().message};
        listener = std::move(*l);
    }

    // Accept from higher nodes on a helper thread while this one dials the lower nodes;
    // either half failing for good signals cancel_ so the other stops waiting.
    const Clock::time_point deadline = Clock::now() + opts_.connect_timeout;
    std::vector<NodeId> unreached_up, unreached_down;
    std::vector<std::string> refusals;  // Hellos the acceptor refused while it waited
    Status accepted;
    std::thread acceptor;
    if (has_higher) {
        acceptor = std::thread([&] {
            accepted = accept_higher(std::move(listener), deadline, &unreached_up, &refusals);
            if (!accepted.ok() && unreached_up.empty()) (void)signal(cancel_.get());
        });
    }
    Status connected = connect_lower(deadline, &unreached_down);
    if (!connected.ok() && unreached_down.empty()) (void)signal(cancel_.get());
    if (acceptor.joinable()) acceptor.join();

    // A refusal or system error is reported as such; otherwise name every unreached peer.
    for (const Status* s : {&connected, &accepted}) {
        if (!s->ok() && s->error().message != "cancelled" &&
            (s == &connected ? unreached_down : unreached_up).empty()) {
            return Error{node_name(opts_.self) + ": " + s->error().message};
        }
    }
    std::vector<NodeId> unreached = unreached_down;
    unreached.insert(unreached.end(), unreached_up.begin(), unreached_up.end());
    if (!unreached.empty()) {
        std::sort(unreached.begin(), unreached.end());
        std::string names;
        for (NodeId id : unreached) {
            if (!names.empty()) names += ", ";
            names += node_name(id) + " (" + address_of(find(id)->addr) + ")";
        }
        std::string refused;
        for (const auto& r : refusals) refused += "; " + r;
        return Error{node_name(opts_.self) + ": peers not reached within " +
                     std::to_string(opts_.connect_timeout.count()) + " ms: " + names + refused};
    }
    if (!connected.ok()) return Error{node_name(opts_.self) + ": " + connected.error().message};
    if (!accepted.ok()) return Error{node_name(opts_.self) + ": " + accepted.error().message};

    for (auto& p : peers_) {
        // Blocking mode, but every send and receive is MSG_DONTWAIT.
        KV_TRY(set_nonblocking(p->fd.get(), false));
        KV_TRY(set_liveness(p->fd.get(), opts_.heartbeat));
        if (opts_.socket_buffer > 0) KV_TRY(set_buffers(p->fd.get(), opts_.socket_buffer));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = p.get();
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p->fd.get(), &ev) != 0) {
            return Error::from_errno("epoll_ctl add");
        }
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake eventfd
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) {
        return Error::from_errno("epoll_ctl add");
    }
    receiver_ = std::thread([this] { receive_loop(); });
    KV_INFO("interconnect: %s connected to %zu peers", node_name(opts_.self).c_str(),
            peers_.size());
    return {};
}

Status TcpTransport::connect_lower(Clock::time_point deadline, std::vector<NodeId>* unreached) {
    for (auto& p : peers_) {
        if (p->addr.id > opts_.self) break;
        bool reached = false;
        Status st = connect_one(*p, deadline, &reached);
        if (!reached) {
            KV_ERROR("interconnect: %s", st.error().message.c_str());
            unreached->push_back(p->addr.id);
            continue;  // the deadline has passed: the rest are named unreached too
        }
        if (!st.ok()) return st;
    }
    return {};
}

// Dials `p` until it answers or the deadline passes; then runs the connector side of the
// handshake. `*reached` is false when the peer did not answer in time (or start-up was
// cancelled).
Status TcpTransport::connect_one(Peer& p, Clock::time_point deadline, bool* reached) {
    const std::string who = node_name(p.addr.id) + " (" + address_of(p.addr) + ")";
    Fd fd;
    while (true) {
        bool retry = false;
        auto c = tcp_connect(p.addr.host, p.addr.port, deadline, cancel_.get(), &retry);
        if (c.ok()) {
            fd = std::move(*c);
            break;
        }
        if (!retry) return Error{"connect to " + who + ": " + c.error().message};
        // The peer is not listening yet: retry shortly, but wake at once if cancelled.
        const auto pause =
            std::min<Clock::time_point>(deadline, Clock::now() + std::chrono::milliseconds(20));
        Status w = wait_fd(cancel_.get(), POLLIN, pause, -1);
        if (w.ok()) return Error{"cancelled"};
        if (Clock::now() >= deadline) return Error{"connect to " + who + ": timed out"};
    }
    KV_TRY(set_nodelay(fd.get()));

    alignas(8) uint8_t msg[kHelloMessage];
    encode_hello(MsgType::Hello, opts_.self, make_hello(opts_, p.addr.id, HelloStatus::Ok),
                 std::span<uint8_t, kHelloMessage>(msg));
    Status st = write_all(fd.get(), msg, deadline, cancel_.get());
    if (st.ok()) st = read_exact(fd.get(), msg, deadline, cancel_.get());
    // A peer that accepted but never answered in time has not been reached either.
    *reached = st.ok() || st.error().message != "timed out";
    if (!st.ok()) return Error{"handshake with " + who + ": " + st.error().message};
    auto ack = decode_hello(MsgType::HelloAck, std::span<const uint8_t, kHelloMessage>(msg));
    if (!ack.ok()) return Error{"handshake with " + who + ": " + ack.error().message};
    if (ack->node_id != p.addr.id) {
        KV_ERROR("interconnect: %s answered as node %u", who.c_str(), ack->node_id);
        return Error{"handshake with " + who + ": it answered as node " +
                     std::to_string(ack->node_id)};
    }
    auto status = static_cast<HelloStatus>(ack->status);
    std::string why;
    if (status == HelloStatus::Ok) {
        status = check_hello(opts_, *ack, &why);
        if (status != HelloStatus::Ok) {
            KV_ERROR("interconnect: refusing %s: %s %s", who.c_str(), hello_status_text(status),
                     why.c_str());
            return Error{"handshake with " + who + ": " + hello_status_text(status) +
                         (why.empty() ? "" : ": " + why)};
        }
    } else {
        KV_ERROR("interconnect: %s refused the handshake: %s", who.c_str(),
                 hello_status_text(status));
        return Error{who + " refused the handshake: " + hello_status_text(status)};
    }
    p.fd = std::move(fd);
    return {};
}

// The acceptor side: handshakes with not-yet-identified connections run interleaved in one
// poll loop, so one silent or slow connection cannot hold up the others.
Status TcpTransport::accept_higher(Fd listener, Clock::time_point deadline,
                                   std::vector<NodeId>* unreached,
                                   std::vector<std::string>* refusals) {
    struct Pending {
        Fd fd;
        std::string name;  // address, until the Hello names the node
        size_t got = 0;
        alignas(8) uint8_t buf[kHelloMessage];
    };
    std::vector<std::unique_ptr<Pending>> pending;
    size_t waiting = 0;
    for (auto& p : peers_) waiting += p->addr.id > opts_.self;

    while (waiting > 0) {
        std::vector<pollfd> fds = {{listener.get(), POLLIN, 0}, {cancel_.get(), POLLIN, 0}};
        for (auto& c : pending) fds.push_back({c->fd.get(), POLLIN, 0});
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            for (auto& p : peers_) {
                if (p->addr.id > opts_.self && !p->fd.valid()) unreached->push_back(p->addr.id);
            }
            return Error{"timed out"};
        }
        if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0) {
            if (errno == EINTR) continue;
            return Error::from_errno("poll");
        }
        if (fds[1].revents & POLLIN) return Error{"cancelled"};
        // Handshake progress first (indices into `fds` shift once pending changes).
        for (size_t i = 0; i < pending.size(); ++i) {
            if (!fds[2 + i].revents) continue;
            Pending& c = *pending[i];
            ssize_t n = ::recv(c.fd.get(), c.buf + c.got, kHelloMessage - c.got, MSG_DONTWAIT);
            std::string bad;
            if (n == 0) {
                bad = "closed before completing the handshake";
            } else if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                bad = std::string("receive: ") + std::strerror(errno);
            } else {
                c.got += static_cast<size_t>(n);
                if (c.got >= kHeaderBytes && c.got < kHelloMessage) {
                    // Refuse garbage as soon as its header is in, not after more bytes.
                    auto h = decode_header(std::span<const uint8_t>(c.buf, c.got));
                    if (!h.ok()) {
                        bad = h.error().message;
                    } else if (h->type != static_cast<uint16_t>(MsgType::Hello)) {
                        bad = std::string("expected Hello, got ") +
                              msg_type_name(static_cast<MsgType>(h->type));
                    } else if (Status v =
                                   validate_payload(handshake_messages(), h->type, h->length);
                               !v.ok()) {
                        bad = v.error().message;
                    }
                }
            }
            if (bad.empty() && c.got < kHelloMessage) continue;
            Fd fd = std::move(c.fd);
            const std::string name = c.name;
            std::unique_ptr<Pending> done = std::move(pending[i]);
            pending.erase(pending.begin() + static_cast<long>(i));
            fds.erase(fds.begin() + 2 + static_cast<long>(i));
            --i;
            if (!bad.empty()) {
                KV_WARN("interconnect: dropping connection from %s: %s", name.c_str(), bad.c_str());
                continue;
            }
            auto hello =
                decode_hello(MsgType::Hello, std::span<const uint8_t, kHelloMessage>(done->buf));
            if (!hello.ok()) {
                KV_WARN("interconnect: dropping connection from %s: %s", name.c_str(),
                        hello.error().message.c_str());
                continue;
            }
            const NodeId id = hello->node_id;
            const std::string who = node_name(id) + " (" + name + ")";
            std::string why;
            HelloStatus status = check_hello(opts_, *hello, &why);
            Peer* peer = find(id);
            if (status == HelloStatus::Ok && (!peer || id < opts_.self)) {
                status = HelloStatus::UnexpectedNode;
            }
            if (status == HelloStatus::Ok && peer->fd.valid()) status = HelloStatus::DuplicateNode;
            if (Status nd = set_nodelay(fd.get()); !nd.ok()) {
                KV_WARN("interconnect: dropping connection from %s: %s", who.c_str(),
                        nd.error().message.c_str());
                continue;
            }
            encode_hello(MsgType::HelloAck, opts_.self, make_hello(opts_, id, status),
                         std::span<uint8_t, kHelloMessage>(done->buf));
            Status sent = write_all(fd.get(), done->buf, deadline, cancel_.get());
            if (status != HelloStatus::Ok) {
                // Logged, answered and closed; the real peer may still come (the refused one
                // may be a replay, an impostor or a node started with another config).
                const std::string reason =
                    std::string(hello_status_text(status)) + (why.empty() ? "" : ": " + why);
                KV_ERROR("interconnect: refusing %s: %s", who.c_str(), reason.c_str());
                refusals->push_back("refused " + who + ": " + reason);
                continue;
            }
            if (!sent.ok()) {
                KV_WARN("interconnect: dropping connection from %s: handshake: %s", who.c_str(),
                        sent.error().message.c_str());
                continue;
            }
            peer->fd = std::move(fd);
            --waiting;
        }
        if (fds[0].revents & POLLIN) {
            int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                    return Error::from_errno("accept");
                }
                continue;
            }
            auto conn = std::make_unique<Pending>();
            conn->fd = Fd(c);
            conn->name = peer_name(c);
            pending.push_back(std::move(conn));
        }
    }
    return {};
}

Status TcpTransport::send(NodeId to, MsgHeader h, std::span<const uint8_t> payload) {
    Peer* p = find(to);
    if (!p) return Error{"send to node " + std::to_string(to) + ": not a peer"};
    KV_TRY(prepare_outgoing(opts_.self, to, h, payload.size(), handler_->messages()));

    // iovec wants non-const pointers; sendmsg only reads them.
    iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = payload.empty() ? 1 : 2;

    std::lock_guard lock(p->send_mu);
    if (!p->fd.valid()) {
        return Error{"send to node " + std::to_string(to) + ": connection lost (" + p->lost_why +
                     ")"};
    }
    KV_TRY(write_out(*p, &msg));
    if (p->out.size() - p->out_head > kMaxSendQueue && !p->jammed.exchange(true)) {
        // The receive thread sees the socket shut and drops the peer, naming this.
        ::shutdown(p->fd.get(), SHUT_RDWR);
        return Error{"send to node " + std::to_string(to) + ": " + queue_overflow()};
    }
    p->last_tx.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    return {};
}

size_t TcpTransport::queued(NodeId to) {
    Peer* p = find(to);
    if (!p) return 0;
    std::lock_guard lock(p->send_mu);
    return p->fd.valid() ? p->out.size() - p->out_head : 0;
}

Status TcpTransport::write_out(Peer& p, msghdr* msg) {
    const int fd = p.fd.get();
    const auto failed = [&] {
        return Error::from_errno("send to node " + std::to_string(p.addr.id));
    };
    while (p.out_head < p.out.size()) {
        ssize_t n = ::send(fd, p.out.data() + p.out_head, p.out.size() - p.out_head,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return failed();
        }
        p.out_head += static_cast<size_t>(n);
    }
    if (p.out_head == p.out.size()) {
        p.out.clear();
        p.out_head = 0;
    }
    // A new message goes straight to the socket only behind an empty queue (order).
    while (msg && p.out.empty() && msg->msg_iovlen > 0) {
        ssize_t n = ::sendmsg(fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return failed();
        }
        // Skip what went out (a partial write: the socket buffer filled).
        auto left = static_cast<size_t>(n);
        while (msg->msg_iovlen > 0 && left >= msg->msg_iov[0].iov_len) {
            left -= msg->msg_iov[0].iov_len;
            ++msg->msg_iov;
            --msg->msg_iovlen;
        }
        if (msg->msg_iovlen > 0) {
            msg->msg_iov[0].iov_base = static_cast<uint8_t*>(msg->msg_iov[0].iov_base) + left;
            msg->msg_iov[0].iov_len -= left;
        }
    }
    for (size_t i = 0; msg && i < msg->msg_iovlen; ++i) {
        const auto* b = static_cast<const uint8_t*>(msg->msg_iov[i].iov_base);
        p.out.insert(p.out.end(), b, b + msg->msg_iov[i].iov_len);
    }
    // Written bytes leave the front once they are half the buffer (amortised O(1)).
    if (p.out_head > 0 && p.out_head * 2 >= p.out.size()) {
        p.out.erase(p.out.begin(), p.out.begin() + static_cast<std::ptrdiff_t>(p.out_head));
        p.out_head = 0;
    }
    watch_out(p, !p.out.empty());
    return {};
}

void TcpTransport::watch_out(Peer& p, bool on) {
    if (p.want_out == on) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.ptr = &p;
    // Fails only for a peer drop() already took out of the set: nothing to watch then.
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, p.fd.get(), &ev) == 0) p.want_out = on;
}

void TcpTransport::on_writable(Peer& p) {
    Status st;
    {
        std::lock_guard lock(p.send_mu);
        if (!p.fd.valid()) return;
        st = write_out(p, nullptr);
    }
    if (!st) drop(p, Error{node_name(p.addr.id) + ": " + st.error().message});
}

void TcpTransport::receive_loop() {
    handler_->on_start(*this);
    // The handshake just went both ways: the first heartbeat is due one idle time from now.
    for (auto& p : peers_) {
        p->last_rx = Clock::now();
        p->last_tx.store(p->last_rx.time_since_epoch().count(), std::memory_order_relaxed);
    }
    epoll_event events[16];
    while (!stopping_.load(std::memory_order_acquire)) {
        const int timeout =
            opts_.heartbeat.count() > 0 ? int(keep_alive(Clock::now()).count()) : -1;
        int n = epoll_wait(epoll_.get(), events, 16, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            KV_ERROR("interconnect: epoll_wait: %s", std::strerror(errno));
            return;
        }
        for (int i = 0; i < n; ++i) {
            if (stopping_.load(std::memory_order_acquire)) return;
            auto* p = static_cast<Peer*>(events[i].data.ptr);
            if (!p) return;  // the wake eventfd: shutdown() is waiting for this thread
            const uint32_t ready = events[i].events;
            if ((ready & EPOLLOUT) && !p->lost.load(std::memory_order_relaxed)) on_writable(*p);
            if ((ready & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
                !p->lost.load(std::memory_order_relaxed))
                on_readable(*p);
        }
    }
}

// One recv per readiness event keeps the peers fair; level-triggered epoll brings us back
// if more is waiting.
void TcpTransport::on_readable(Peer& p) {
    auto room = p.parser.writable();
    ssize_t n = ::recv(p.fd.get(), room.data(), room.size(), MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        drop(p, Error::from_errno(node_name(p.addr.id) + ": receive"));
        return;
    }
    if (n == 0) {
        Status eof = p.parser.check_eof();
        drop(p, Error{node_name(p.addr.id) + ": " +
                      (eof.ok() ? std::string("connection closed by peer")
                                : "connection closed mid-message: " + eof.error().message)});
        return;
    }
    p.parser.commit(static_cast<size_t>(n));
    p.last_rx = Clock::now();
    while (!stopping_.load(std::memory_order_acquire)) {
        auto r = p.parser.next();
        if (!r.ok()) {
            drop(p, Error{node_name(p.addr.id) + ": " + r.error().message});
            return;
        }
        if (!*r) return;
        const Frame& f = **r;
        const auto type = static_cast<MsgType>(f.header.type);
        if (type == MsgType::Hello || type == MsgType::HelloAck) {
            drop(p, Error{node_name(p.addr.id) + ": out-of-protocol " + msg_type_name(type) +
                          " after the handshake"});
            return;
        }
        if (f.header.src != p.addr.id) {
            drop(p, Error{node_name(p.addr.id) + ": message claims to come from node " +
                          std::to_string(f.header.src)});
            return;
        }
        if (type == MsgType::Heartbeat) continue;  // its arrival (last_rx) was the point
        handler_->on_message(p.addr.id, f.header, f.payload);
    }
}

std::chrono::milliseconds TcpTransport::keep_alive(Clock::time_point now) {
    using std::chrono::milliseconds;
    const milliseconds deadline = opts_.heartbeat;
    const milliseconds idle = std::min(deadline / 4, kHeartbeatIdle);
    Clock::time_point next = now + idle;
    for (auto& p : peers_) {
        if (p->lost.load(std::memory_order_relaxed)) continue;
        if (now - p->last_rx >= deadline) {
            // Bytes waiting unread (this thread was busy elsewhere) are not silence.
            int unread = 0;
            if (::ioctl(p->fd.get(), FIONREAD, &unread) == 0 && unread > 0) {
                p->last_rx = now;
                continue;
            }
            const auto silent = std::chrono::duration_cast<milliseconds>(now - p->last_rx);
            drop(*p,
                 Error{node_name(p->addr.id) + ": silent for " + std::to_string(silent.count()) +
                       " ms (heartbeat " + std::to_string(deadline.count()) + " ms)"});
            continue;
        }
        next = std::min(next, p->last_rx + deadline);
        const Clock::time_point sent{Clock::duration(p->last_tx.load(std::memory_order_relaxed))};
        if (now - sent >= idle) {
            send_heartbeat(*p, now);
        } else {
            next = std::min(next, sent + idle);
        }
    }
    // Rounded up, so epoll_wait does not wake a little early and spin.
    return std::max(milliseconds(1), std::chrono::ceil<milliseconds>(next - now));
}

void TcpTransport::send_heartbeat(Peer& p, Clock::time_point now) {
    std::unique_lock lock(p.send_mu, std::try_to_lock);
    // A sender holds it, or bytes are queued: that connection has traffic in flight.
    if (!lock.owns_lock() || !p.fd.valid() || p.out_head < p.out.size()) return;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Heartbeat);
    h.src = opts_.self;
    h.length = 0;
    iovec iov{&h, sizeof h};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    // Never waits; a broken socket is the receive side's to report.
    if (write_out(p, &msg).ok())
        p.last_tx.store(now.time_since_epoch().count(), std::memory_order_relaxed);
}

void TcpTransport::drop(Peer& p, const Error& seen) {
    if (p.lost.exchange(true)) return;
    // A send() that overflowed the queue shut the socket: that is the reason, not the close.
    const Error why =
        p.jammed.load()
            ? Error{node_name(p.addr.id) + ": " + queue_overflow() + " (it does not read)"}
            : seen;
    KV_ERROR("interconnect: dropping connection to node %u (%s): %s", p.addr.id,
             address_of(p.addr).c_str(), why.message.c_str());
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p.fd.get(), nullptr);
    ::shutdown(p.fd.get(), SHUT_RDWR);
    {
        std::lock_guard lock(p.send_mu);
        p.lost_why = why.message;
        p.fd.reset();
        p.out.clear();
        p.out_head = 0;
    }
    handler_->on_peer_lost(p.addr.id, why);
}

void TcpTransport::shutdown() {
    std::lock_guard guard(shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    stopping_.store(true, std::memory_order_release);
    if (receiver_.joinable()) {
        if (receiver_.get_id() == std::this_thread::get_id()) {
            KV_ERROR("interconnect: shutdown() called from a message handler; not joining");
            receiver_.detach();
        } else {
            (void)signal(wake_.get());
            receiver_.join();
        }
    }
    // The receive thread is gone: only senders touch the sockets now, under send_mu. What
    // the queues hold (a Shutdown sent just before, say) is written out first, within
    // kShutdownFlush.
    const auto flush_by = Clock::now() + kShutdownFlush;
    for (auto& p : peers_) {
        std::lock_guard lock(p->send_mu);
        while (p->fd.valid() && !p->out.empty() && write_out(*p, nullptr).ok() && !p->out.empty()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(flush_by - Clock::now());
            if (left.count() <= 0) {
                KV_WARN(
                    "interconnect: %zu bytes to node %u not sent: it did not take them within %lld "
                    "ms",
                    p->out.size() - p->out_head, p->addr.id,
                    static_cast<long long>(kShutdownFlush.count()));
                break;
            }
            pollfd pfd{p->fd.get(), POLLOUT, 0};
            (void)::poll(&pfd, 1, static_cast<int>(left.count()));
        }
    }
    for (auto& p : peers_) {
        if (p->fd.valid()) ::shutdown(p->fd.get(), SHUT_RDWR);
        std::lock_guard lock(p->send_mu);
        if (p->lost_why.empty()) p->lost_why = "transport shut down";
        p->fd.reset();
    }
}

}  // namespace kv
