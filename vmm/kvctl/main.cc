// kvctl: the client of Kerrvisor's control API (docs/control.md).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "vmm/control/client.h"
#include "vmm/control/render.h"

namespace {

using kv::control::Client;
using kv::control::Json;

constexpr const char* kHelp = R"(NAME
    kvctl - control a running Kerrvisor guest

SYNOPSIS
    kvctl [--socket PATH] [--json] COMMAND [KEY=VALUE ...]
    kvctl [--socket PATH] events [--count N]

DESCRIPTION
    kvctl sends one command to the control socket of a guest's I/O node (vmm-launch
    --control PATH) and prints the reply: tables and "key: value" lines, or the reply's
    JSON with --json. Arguments are KEY=VALUE pairs; a VALUE that parses as JSON (a
    number, true, false, a quoted string, an object) is sent as that, any other as a
    string. The protocol is QMP's (docs/control.md), so QMP tools work too.

COMMANDS
    status (query-status)    running or paused
    vcpus (query-vcpus)      every vCPU: node, state, exits, halts, time paused
    stop, cont               pause every vCPU at an exit boundary / resume them; the
                             guest's clocks do not jump over the pause
    powerdown (system_powerdown)
                             press the ACPI power button
    reset (system_reset)     reset the guest (vmm-launch's on-reboot decides)
    quit                     end vmm-launch (exit status 0)
    commands (query-commands)
                             what the server offers
    events                   print events (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN)
                             as they arrive, one JSON line each
    Any other name is sent as is.

OPTIONS
    --socket PATH    the control socket (default: $KERRVISOR_CONTROL)
    --json           print the reply's JSON
    --count N        events: stop after N events
    -h, --help       this text

ENVIRONMENT
    KERRVISOR_CONTROL    the socket when --socket is not given

EXIT STATUS
    0 the command succeeded; 1 the server answered with an error, or cannot be reached;
    2 bad usage.

EXAMPLES
    vmm-launch --config guest.conf --control /run/kv.sock &
    kvctl --socket /run/kv.sock status
    kvctl --socket /run/kv.sock stop && kvctl --socket /run/kv.sock cont
    KERRVISOR_CONTROL=/run/kv.sock kvctl --json vcpus
)";

const std::map<std::string, std::string> kAliases = {
    {"status", "query-status"},        {"vcpus", "query-vcpus"},  {"nodes", "query-nodes"},
    {"memory", "query-memory"},        {"stats", "query-stats"},  {"commands", "query-commands"},
    {"powerdown", "system_powerdown"}, {"reset", "system_reset"},
};

int usage(const std::string& why) {
    std::fprintf(stderr, "kvctl: %s (kvctl --help)\n", why.c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket;
    if (const char* env = std::getenv("KERRVISOR_CONTROL")) socket = env;
    bool json = false;
    long count = -1;
    std::vector<std::string> words;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(kHelp, stdout);
            return 0;
        } else if (a == "--json") {
            json = true;
        } else if (a == "--socket" || a == "--count") {
            if (i + 1 >= argc) return usage(a + " needs a value");
            std::string v = argv[++i];
            if (a == "--socket") {
                socket = v;
            } else {
                char* end = nullptr;
                count = std::strtol(v.c_str(), &end, 10);
                if (v.empty() || *end || count < 1) return usage("--count wants 1 or more");
            }
        } else if (a.rfind("--", 0) == 0) {
            return usage("unknown option " + a);
        } else {
            words.push_back(a);
        }
    }
    if (words.empty()) return usage("no command");
    if (socket.empty())
        return usage("no control socket: give --socket PATH or set KERRVISOR_CONTROL");
    std::string cmd = words[0];
    if (auto it = kAliases.find(cmd); it != kAliases.end()) cmd = it->second;
    Json args = Json::object();
    for (size_t i = 1; i < words.size(); ++i) {
        size_t eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0)
            return usage("argument '" + words[i] + "' is not KEY=VALUE");
        std::string key = words[i].substr(0, eq), value = words[i].substr(eq + 1);
        Json v = Json::parse(value, nullptr, false);
        args[key] = v.is_discarded() ? Json(value) : v;
    }

    auto client = Client::connect(socket);
    if (!client) {
        std::fprintf(stderr, "kvctl: %s\n", client.error().message.c_str());
        return 1;
    }
    if (cmd == "events") {
        for (long n = 0; count < 0 || n < count; ++n) {
            auto e = client->next_event(std::chrono::hours(24));
            if (!e) {
                std::fprintf(stderr, "kvctl: %s\n", e.error().message.c_str());
                return 1;
            }
            if (*e) std::printf("%s\n", (*e)->dump().c_str());
            std::fflush(stdout);
        }
        return 0;
    }
    auto r = client->execute(cmd, args);
    if (!r) {
        std::fprintf(stderr, "kvctl: %s\n", r.error().message.c_str());
        return 1;
    }
    if (json)
        std::printf("%s\n", r->dump(2).c_str());
    else
        std::fputs(kv::control::render(*r).c_str(), stdout);
    return 0;
}
