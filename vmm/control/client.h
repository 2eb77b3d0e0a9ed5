// A client of the control socket (kvctl, tests): connects, reads the greeting, negotiates,
// then runs commands one at a time; events that arrive meanwhile are kept.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/control/protocol.h"

namespace kv::control {

class Client {
  public:
    static Result<Client> connect(const std::string& path,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // The command's "return" value; an error reply is an Error "CLASS: desc". Events that
    // arrive meanwhile are kept for next_event(), and shown to `on_event` first if given
    // (kvctl's progress line for snapshot-save).
    using EventWatch = std::function<void(const Json& event)>;
    Result<Json> execute(const std::string& command, const Json& args = Json::object(),
                         const EventWatch& on_event = {});
    // The next event (queued or arriving within `timeout`), nullopt when none came.
    Result<std::optional<Json>> next_event(std::chrono::milliseconds timeout);
    // How long execute() waits for the next line from the server (an event or the reply);
    // connect()'s `timeout` until changed.
    void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
    // The error class of the last error reply ("" if the last command succeeded).
    const std::string& last_error_class() const { return last_class_; }

  private:
    explicit Client(Fd fd, std::chrono::milliseconds timeout)
        : fd_(std::move(fd)), timeout_(timeout) {}
    Result<Json> read_message(std::chrono::milliseconds timeout);  // one JSON line
    Fd fd_;
    std::chrono::milliseconds timeout_;
    std::string buf_;
    std::deque<Json> events_;
    uint64_t next_id_ = 1;
    std::string last_class_;
};

}  // namespace kv::control
