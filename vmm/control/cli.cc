#include "vmm/control/cli.h"

#include <optional>
#include <sstream>

namespace kv::control {
namespace {
// 0x followed by 1 to 16 hex digits: addresses are typed so.
std::optional<uint64_t> parse_hex(const std::string& v) {
    if (v.size() < 3 || v.size() > 18 || v[0] != '0' || (v[1] != 'x' && v[1] != 'X')) return {};
    uint64_t n = 0;
    for (size_t i = 2; i < v.size(); ++i) {
        const char c = v[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return {};
        n = n << 4 | uint64_t(d);
    }
    return n;
}
}  // namespace

const std::map<std::string, std::string>& command_aliases() {
    static const std::map<std::string, std::string> aliases = {
        {"status", "query-status"},
        {"vcpus", "query-vcpus"},
        {"nodes", "query-nodes"},
        {"memory", "query-memory"},
        {"stats", "query-stats"},
        {"commands", "query-commands"},
        {"powerdown", "system_powerdown"},
        {"reset", "system_reset"},
        {"xp", "memory-read"},
        {"migrate", "migrate-vcpu"},
        {"capability", "set-vcpu-capability"},
    };
    return aliases;
}

const std::vector<std::string>& positional_args(const std::string& name) {
    static const std::map<std::string, std::vector<std::string>> table = {
        {"memory-read", {"address", "size"}},
        {"snapshot-save", {"dir"}},
        {"migrate-vcpu", {"vcpu", "node"}},
        {"set-vcpu-capability", {"vcpu", "migrate"}},
    };
    static const std::vector<std::string> none;
    auto it = table.find(name);
    return it == table.end() ? none : it->second;
}

std::string alias_of(const std::string& name) {
    for (const auto& [alias, n] : command_aliases())
        if (n == name) return alias;
    return "";
}

std::vector<std::string> split_words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

std::variant<Request, std::string> parse_command(const std::vector<std::string>& words) {
    Request r;
    r.cmd = words.at(0);
    size_t first = 1;
    // Two-word commands: "snapshot save DIR".
    if (r.cmd == "snapshot" && words.size() > 1 && words[1] == "save") {
        r.cmd = "snapshot-save";
        first = 2;
    }
    if (auto it = command_aliases().find(r.cmd); it != command_aliases().end()) r.cmd = it->second;
    const auto& positional = positional_args(r.cmd);
    size_t next_positional = 0;
    for (size_t i = first; i < words.size(); ++i) {
        // --NAME is NAME=yes (snapshot save DIR --stop); --incremental-from takes the
        // next word as its value.
        if (words[i].size() > 2 && words[i].starts_with("--") &&
            words[i].find('=') == std::string::npos) {
            const std::string name = words[i].substr(2);
            if (name == "incremental-from") {
                if (i + 1 >= words.size()) return "--incremental-from needs a snapshot directory";
                r.args[name] = words[++i];
            } else {
                r.args[name] = true;
            }
            continue;
        }
        size_t eq = words[i].find('=');
        std::string key, value;
        if (eq == std::string::npos && next_positional < positional.size()) {
            key = positional[next_positional++];
            value = words[i];
        } else if (eq == std::string::npos || eq == 0) {
            return "argument '" + words[i] + "' is not KEY=VALUE" +
                   (positional.empty() ? ""
                                       : " (" + r.cmd + " takes at most " +
                                             std::to_string(positional.size()) + " plain values)");
        } else {
            key = words[i].substr(0, eq);
            value = words[i].substr(eq + 1);
        }
        if (value == "yes" || value == "no") {
            r.args[key] = value == "yes";
            continue;
        }
        if (auto hex = parse_hex(value)) {
            r.args[key] = *hex;
            continue;
        }
        Json v = Json::parse(value, nullptr, false);
        r.args[key] = v.is_discarded() ? Json(value) : v;
    }
    return r;
}

}  // namespace kv::control
