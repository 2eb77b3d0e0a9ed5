#include "vmm/control/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"

namespace kv::control {

struct ControlServer::Client {
    Fd fd;
    Session session;
    LineFramer framer;
    Client(Fd f, const CommandTable& t) : fd(std::move(f)), session(t) {}
};

Result<std::unique_ptr<ControlServer>> ControlServer::create(const std::string& path,
                                                             const CommandTable& table,
                                                             UidRule accept_uid) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return Error{"control: socket path '" + path + "' is empty or too long"};
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return Error{"control: " + path + " exists and is not a socket"};
        ::unlink(path.c_str());  // a stale socket of an earlier run
    }
    auto sock = Fd::check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
                          "control: socket");
    if (!sock) return sock.error();
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    // bind() makes the file with the umask applied: 0177 leaves 0600, with no window in
    // which another user could connect.
    mode_t old = ::umask(0177);
    int rc = ::bind(sock->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int err = errno;
    ::umask(old);
    if (rc < 0) return Error::from_errno("control: bind " + path, err);
    if (::listen(sock->get(), 8) < 0) return Error::from_errno("control: listen " + path);
    auto wake = Fd::check(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "control: eventfd");
    if (!wake) return wake.error();
    if (!accept_uid) {
        const uid_t self = ::geteuid();
        accept_uid = [self](uid_t u) { return u == self || u == 0; };
    }
    std::unique_ptr<ControlServer> s(new ControlServer(
        path, table, std::move(accept_uid), std::move(sock).value(), std::move(wake).value()));
    s->thread_ = std::thread([p = s.get()] { p->loop(); });
    return s;
}

ControlServer::ControlServer(std::string path, const CommandTable& table, UidRule rule, Fd listener,
                             Fd wake)
    : path_(std::move(path)),
      table_(table),
      accept_uid_(std::move(rule)),
      listener_(std::move(listener)),
      wake_(std::move(wake)) {}

ControlServer::~ControlServer() {
    {
        std::lock_guard g(events_mu_);
        stop_ = true;
    }
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    ::unlink(path_.c_str());
}

void ControlServer::emit(const std::string& name, const Json& data) {
    {
        std::lock_guard g(events_mu_);
        events_.push_back(format_event(name, data, std::chrono::system_clock::now()));
    }
    // From a handler (the server thread, busy with a long command such as snapshot-save):
    // written at once, so that its progress reaches the clients while it runs.
    if (std::this_thread::get_id() == server_tid_.load()) {
        send_events();
        return;
    }
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
}

void ControlServer::send_events() {
    std::vector<std::string> events;
    {
        std::lock_guard g(events_mu_);
        events.swap(events_);
    }
    for (const auto& e : events)
        for (auto& c : clients_)
            if (c->fd.get() >= 0 && c->session.negotiated() && !send_line(*c, e)) c->fd = Fd();
}

bool ControlServer::send_line(Client& c, const std::string& line) {
    std::string out = line + "\n";
    size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::send(c.fd.get(), out.data() + done, out.size() - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // A slow reader: wait a bounded time for room, then give it up.
            pollfd p{c.fd.get(), POLLOUT, 0};
            if (::poll(&p, 1, 5000) == 1) continue;
        }
        return false;
    }
    return true;
}

void ControlServer::accept_one() {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    Fd conn(fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        !accept_uid_(cred.uid)) {
        KV_WARN("control: refused a client of uid %u (pid %d) on %s", unsigned(cred.uid),
                int(cred.pid), path_.c_str());
        return;
    }
    auto c = std::make_unique<Client>(std::move(conn), table_);
    if (send_line(*c, c->session.greeting())) clients_.push_back(std::move(c));
}

bool ControlServer::serve(Client& c) {
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
        if (n == 0) return false;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        for (auto& item : c.framer.feed(std::string_view(buf, size_t(n)))) {
            if (item.overflow) {
                if (!send_line(c, c.session.overflow_reply(item.length))) return false;
                continue;
            }
            if (item.line.find_first_not_of(" \t") == std::string::npos) continue;
            if (!send_line(c, c.session.handle_line(item.line))) return false;
        }
    }
}

void ControlServer::loop() {
    server_tid_.store(std::this_thread::get_id());
    for (;;) {
        std::vector<pollfd> fds{{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
        for (const auto& c : clients_) fds.push_back({c->fd.get(), POLLIN, 0});
        if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) {
            KV_ERROR("control: poll: %s", std::strerror(errno));
            return;
        }
        if (fds[0].revents) {
            uint64_t v;
            (void)!::read(wake_.get(), &v, sizeof v);
            bool stop;
            {
                std::lock_guard g(events_mu_);
                stop = stop_;
            }
            // Events queued before the stop still go out (SHUTDOWN at vmm-launch's end).
            send_events();
            if (stop) return;
        }
        if (fds[1].revents & POLLIN) accept_one();
        for (size_t i = 2; i < fds.size(); ++i) {
            Client& c = *clients_[i - 2];
            if (c.fd.get() >= 0 && fds[i].revents && !serve(c)) c.fd = Fd();
        }
        std::erase_if(clients_, [](const auto& c) { return c->fd.get() < 0; });
    }
}

}  // namespace kv::control
