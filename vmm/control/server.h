// The control socket: a Unix stream socket on the I/O node that speaks the protocol of
// protocol.h to several clients at once (docs/control.md).
//
// Threads: one server thread accepts, reads, runs handlers (one request at a time, so a
// handler may take long, e.g. waiting for vCPUs to pause, but must never wait for the
// server thread) and writes every byte that goes to a client. emit() may be called from
// any thread: it queues the event under events_mu_ (held for the push only) and wakes the
// server thread, which writes it; no lock is held while writing. Called from a handler
// (the server thread itself), it writes the queue at once, so that a long command's
// progress events reach the clients before its reply.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/control/protocol.h"

namespace kv::control {

class ControlServer {
  public:
    // Which peers may talk to the server, by their uid (SO_PEERCRED). Default: this
    // process's effective uid and root.
    using UidRule = std::function<bool(uid_t)>;

    // Makes the socket at `path` (mode 0600; a stale socket there is replaced, anything
    // else there is refused) and starts the server thread. `table` must outlive it.
    static Result<std::unique_ptr<ControlServer>> create(const std::string& path,
                                                         const CommandTable& table,
                                                         UidRule accept_uid = {});
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Any thread: an event for every negotiated client.
    void emit(const std::string& name, const Json& data = nullptr);
    const std::string& path() const { return path_; }

  private:
    struct Client;
    ControlServer(std::string path, const CommandTable& table, UidRule rule, Fd listener, Fd wake);
    void loop();
    void accept_one();
    // Reads what `c` sent and answers it; false when the client is gone.
    bool serve(Client& c);
    static bool send_line(Client& c, const std::string& line);
    // Writes the queued events to every negotiated client (the server thread).
    void send_events();

    std::string path_;
    const CommandTable& table_;
    UidRule accept_uid_;
    Fd listener_;
    Fd wake_;                                       // eventfd: events queued or stop asked
    std::vector<std::unique_ptr<Client>> clients_;  // server thread only
    std::mutex events_mu_;
    std::vector<std::string> events_;  // under events_mu_
    bool stop_ = false;                // under events_mu_
    std::thread thread_;
    std::atomic<std::thread::id> server_tid_{};  // set by loop() as it starts
};

}  // namespace kv::control
