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
    };
    return aliases;
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
    if (auto it = command_aliases().find(r.cmd); it != command_aliases().end()) r.cmd = it->second;
    for (size_t i = 1; i < words.size(); ++i) {
        size_t eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0)
            return "argument '" + words[i] + "' is not KEY=VALUE";
        std::string key = words[i].substr(0, eq), value = words[i].substr(eq + 1);
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
