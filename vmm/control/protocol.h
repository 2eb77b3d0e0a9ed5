// The control protocol (docs/control.md): QMP's framing and layout, so QMP clients work.
//
//   server                                     client
//     | {"QMP": {"version": ..., "capabilities": []}} -->   greeting
//     |  <-- {"execute": "qmp_capabilities"}                negotiation, once
//     | {"return": {}} -->
//     |  <-- {"execute": CMD, "arguments": {...}, "id": X}
//     | {"return": VALUE, "id": X}  or  {"error": {"class": C, "desc": D}, "id": X} -->
//     | {"event": NAME, "data": {...}, "timestamp": {...}} -->   any time after negotiation
//
// One JSON object a line. Everything here is pure (no sockets, no threads): a Session
// turns one request line into one reply line; the server (server.h) moves the bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kv::control {

// Objects keep their members in insertion order: tables show columns as the VMM lists them.
using Json = nlohmann::ordered_json;

// An error reply. `cls` is QMP's error class, what callers branch on; `desc` one line
// naming what was wrong.
struct CommandError {
    std::string cls;
    std::string desc;
};
inline CommandError generic_error(std::string desc) {
    return {"GenericError", std::move(desc)};
}

// The unsigned number at `path` in j (each element a member name), or 0 where a member is
// missing or not an unsigned number: reports from other nodes are read leniently.
uint64_t uint_at(const Json& j, std::initializer_list<const char*> path);
// A node report's page faults of every kind (its "memory"."faults"; query-nodes, top).
uint64_t report_faults(const Json& node_report);

// What a handler returns: the value of "return", or an error.
using Reply = std::variant<Json, CommandError>;

enum class ArgType { String, Int, Uint, Bool, Object, Array, Any };
struct ArgSpec {
    std::string name;
    ArgType type = ArgType::Any;
    bool required = false;
};

using Handler = std::function<Reply(const Json& args)>;

// The commands a server offers. Filled before the server starts, read-only afterwards.
class CommandTable {
  public:
    struct Command {
        std::string help;
        std::vector<ArgSpec> args;
        Handler handler;
    };
    // A name added twice replaces the first (the VMM adds each once).
    void add(std::string name, std::string help, std::vector<ArgSpec> args, Handler handler);
    const Command* find(const std::string& name) const;
    std::vector<std::string> names() const;
    // Checks `args` against the command's specs, then runs the handler.
    Reply call(const std::string& name, const Json& args) const;

  private:
    std::map<std::string, Command> commands_;
};

// The longest request line a server reads (bytes, without the newline).
constexpr size_t kMaxLine = 64 * 1024;

// One client's conversation.
class Session {
  public:
    explicit Session(const CommandTable& table) : table_(table) {}
    std::string greeting() const;
    // One request line in, one reply line out (no newline).
    std::string handle_line(std::string_view line);
    // The reply to a line that was longer than kMaxLine.
    std::string overflow_reply(size_t length) const;
    bool negotiated() const { return negotiated_; }

  private:
    std::string reply(const Reply& r, const std::optional<Json>& id) const;
    const CommandTable& table_;
    bool negotiated_ = false;
};

std::string format_event(const std::string& name, const Json& data,
                         std::chrono::system_clock::time_point when);

// Splits a byte stream into lines of at most kMaxLine bytes. A longer line is reported once
// (its length up to the cut) and the rest of it, up to the next newline, is dropped.
class LineFramer {
  public:
    struct Item {
        bool overflow = false;
        std::string line;   // the line, without '\n' (overflow: empty)
        size_t length = 0;  // overflow: bytes seen before the cut
    };
    explicit LineFramer(size_t max = kMaxLine) : max_(max) {}
    std::vector<Item> feed(std::string_view bytes);

  private:
    size_t max_;
    std::string buf_;
    bool skipping_ = false;
};

}  // namespace kv::control
