#include "vmm/control/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

namespace kv::control {

Result<Client> Client::connect(const std::string& path, std::chrono::milliseconds timeout) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) return Error{path + ": socket path too long"};
    auto fd = Fd::check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
    if (!fd) return fd.error();
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    if (::connect(fd->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return Error::from_errno("cannot connect to " + path);
    Client c(std::move(fd).value(), timeout);
    auto greeting = c.read_message(timeout);
    if (!greeting) return Error{path + ": no greeting: " + greeting.error().message};
    if (!greeting->contains("QMP")) return Error{path + ": not a control socket (no QMP greeting)"};
    auto neg = c.execute("qmp_capabilities");
    if (!neg) return Error{path + ": " + neg.error().message};
    return c;
}

Result<Json> Client::read_message(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
            std::string line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            Json j = Json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.is_object())
                return Error{"malformed line from the server: " + line.substr(0, 80)};
            return j;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return Error{"timed out waiting for the server"};
        pollfd p{fd_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, int(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return Error::from_errno("poll");
        if (r == 0) continue;
        char b[4096];
        ssize_t n = ::read(fd_.get(), b, sizeof b);
        if (n == 0) return Error{"the server closed the connection"};
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read");
        buf_.append(b, size_t(n));
    }
}

Result<Json> Client::execute(const std::string& command, const Json& args,
                             const EventWatch& on_event) {
    const uint64_t id = next_id_++;
    Json req = {{"execute", command}, {"id", id}};
    if (!args.empty()) req["arguments"] = args;
    std::string line = req.dump() + "\n";
    if (::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL) != ssize_t(line.size()))
        return Error::from_errno("send");
    for (;;) {
        auto m = read_message(timeout_);
        if (!m) return m.error();
        if (m->contains("event")) {
            if (on_event) on_event(*m);
            events_.push_back(std::move(*m));
            continue;
        }
        if (!m->contains("id") || (*m)["id"] != id) continue;  // not ours
        if (auto e = m->find("error"); e != m->end()) {
            last_class_ = e->value("class", "GenericError");
            return Error{last_class_ + ": " + e->value("desc", "")};
        }
        last_class_.clear();
        return m->value("return", Json::object());
    }
}

Result<std::optional<Json>> Client::next_event(std::chrono::milliseconds timeout) {
    if (!events_.empty()) {
        Json e = std::move(events_.front());
        events_.pop_front();
        return std::optional<Json>(std::move(e));
    }
    auto m = read_message(timeout);
    if (!m) {
        if (m.error().message == "timed out waiting for the server") return std::optional<Json>();
        return m.error();
    }
    return std::optional<Json>(std::move(*m));
}

}  // namespace kv::control
