// The command-line form of control commands, shared by kvctl and the serial console's
// monitor (Ctrl-A c): COMMAND [KEY=VALUE ...], with short aliases (status, vcpus, ...).
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "vmm/control/protocol.h"

namespace kv::control {

struct Request {
    std::string cmd;             // the protocol's command name (aliases resolved)
    Json args = Json::object();  // the "arguments" object
};

// Short name -> the protocol's command name.
const std::map<std::string, std::string>& command_aliases();
// The alias of a protocol command name, or "" when it has none.
std::string alias_of(const std::string& name);

// The arguments a command takes as plain values, in order (migrate-vcpu: vcpu, node).
const std::vector<std::string>& positional_args(const std::string& name);

// Words separated by white space.
std::vector<std::string> split_words(const std::string& line);

// words[0] is the command (an alias or a protocol name), the rest KEY=VALUE pairs or, for
// the commands positional_args() lists, plain values first (`migrate 1 0` is
// `migrate-vcpu vcpu=1 node=0`). A VALUE 0x... (hex) is sent as a number, yes and no as
// true and false, one that parses as JSON as that, any other as a string. A string is the
// error: what is wrong with which word. `words` must not be empty.
std::variant<Request, std::string> parse_command(const std::vector<std::string>& words);

}  // namespace kv::control
