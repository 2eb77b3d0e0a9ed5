// kvctl: the client of Kerrvisor's control API (docs/control.md).
#include <editline/readline.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "vmm/control/cli.h"
#include "vmm/control/client.h"
#include "vmm/control/render.h"

namespace {

using kv::control::Client;
using kv::control::Json;
using kv::control::report_faults;
using kv::control::Request;
using kv::control::uint_at;

constexpr const char* kHelp = R"(NAME
    kvctl - control a running Kerrvisor guest

SYNOPSIS
    kvctl [--socket PATH] [--json] COMMAND [KEY=VALUE ...]
    kvctl [--socket PATH] [--json]
    kvctl [--socket PATH] events [--count N] [--timeout SECONDS]
    kvctl [--socket PATH] top [--interval SECONDS] [--count N]

DESCRIPTION
    kvctl sends one command to the control socket of a guest's I/O node (vmm-launch
    --control PATH) and prints the reply: tables and "key: value" lines, or the reply's
    JSON with --json. Arguments are KEY=VALUE pairs (some commands take plain values
    first, as listed below); a VALUE 0x... (hex) is sent as a number, yes and no as true
    and false, one that parses as JSON (a number, true, false, a quoted string, an
    object) as that, any other as a string. The protocol is QMP's (docs/control.md), so QMP tools work too.

    Without a COMMAND, kvctl is an interactive console: one command a line, in the same
    form (COMMAND [KEY=VALUE ...]), with line editing, history (~/.kvctl_history) and
    completion of command names (Tab). Events that arrive meanwhile are printed before
    the next prompt. "help" lists the commands, "exit" or Ctrl-D leaves the console
    ("quit" ends vmm-launch, as in QEMU's monitor). With standard input not a terminal,
    the console reads commands from it without prompts, which makes it a script runner;
    its exit status is that of the last command that failed, or 0.

COMMANDS
    status (query-status)    running or paused
    vcpus (query-vcpus)      every vCPU of every node: state, exits, halts, time
                             running, halted and paused
    nodes (query-nodes)      every node: address, state, vCPUs, memory range, counters
    memory (query-memory)    by node: pages by local state, faults, transfers, fault
                             latency, the most-faulted pages
    stats (query-stats)      every node's full report
    stop, cont               pause every vCPU at an exit boundary / resume them; the
                             guest's clocks do not jump over the pause
    powerdown (system_powerdown)
                             press the ACPI power button
    reset (system_reset)     reset the guest (vmm-launch's on-reboot decides)
    quit                     end vmm-launch (exit status 0)
    xp (memory-read) ADDR [N]
                             N (1..4096, default 8) bytes of guest physical memory
                             at ADDR, as hex, and up to 8 bytes as a number
    snapshot save DIR [--stop] [--incremental-from PARENT]   (snapshot-save)
                             save the whole guest into DIR (made atomically; a
                             relative DIR is kvctl's); the guest runs on, or stays
                             paused with --stop; vmm-launch --restore DIR starts it.
                             With PARENT (the last snapshot saved or restored), only
                             the pages written since
    migrate (migrate-vcpu) VCPU NODE
                             move vCPU VCPU to node NODE while the guest runs; prints
                             the pause (pause_ns) and the whole time (total_ns)
    capability (set-vcpu-capability) VCPU yes|no
                             whether VCPU may migrate ([vcpu.N] migrate in the config)
    commands (query-commands)
                             what the server offers
    events                   print events (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN,
                             NODE_LOST, VCPU_MIGRATION, SNAPSHOT_*) as they arrive, one
                             JSON line each; "kvctl: listening ..." on stderr once
                             subscribed; --count N ends after N events, --timeout S
                             fails (exit 1) when S seconds pass without one
    top                      a cluster-wide view refreshed every --interval seconds:
                             per node and per vCPU, load (the share of time neither
                             halted nor paused), exits/s, faults/s, pages moved/s
    Any other name is sent as is.

OPTIONS
    --socket PATH    the control socket (default: $KERRVISOR_CONTROL)
    --json           print the reply's JSON
    --count N        events: stop after N events; top: after N refreshes
    --interval S     top: seconds between refreshes (default 2; fractions allowed)
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
    kvctl --socket /run/kv.sock top --interval 1
    printf 'stop\nvcpus\ncont\n' | kvctl --socket /run/kv.sock
    kvctl --socket /run/kv.sock xp 0x101000 16
    kvctl --socket /run/kv.sock migrate 1 0      # vCPU 1 to node 0
    kvctl --socket /run/kv.sock snapshot save /var/tmp/snap1 --stop

SEE ALSO
    The serial console of vmm-launch offers the same commands without a socket: Ctrl-A c
    switches between the guest and the monitor (docs/control.md).
)";

int usage(const std::string& why) {
    std::fprintf(stderr, "kvctl: %s (kvctl --help)\n", why.c_str());
    return 2;
}

// snapshot-save's directory is the server's: one relative to kvctl's working directory is
// made absolute here.
void absolute_dir(Request& r) {
    if (r.cmd != "snapshot-save") return;
    for (const char* key : {"dir", "incremental-from"}) {
        auto it = r.args.find(key);
        if (it == r.args.end() || !it->is_string()) continue;
        const std::string d = it->get<std::string>();
        if (!d.empty() && d[0] != '/') *it = (std::filesystem::current_path() / d).string();
    }
}

// Runs one request and prints its reply; 0, or 1 for an error reply or a lost server.
int run_request(Client& client, const Request& r, bool json) {
    // snapshot-save: a progress line on stderr (when it is a terminal) as the server's
    // SNAPSHOT_PROGRESS events come.
    const bool progress = r.cmd == "snapshot-save" && ::isatty(2);
    // A save may write for minutes between two lines of the server (it reports progress
    // while gathering pages, not while hashing and writing one part).
    if (r.cmd == "snapshot-save") client.set_timeout(std::chrono::minutes(10));
    auto reply = client.execute(r.cmd, r.args, [&](const Json& ev) {
        if (!progress || ev.value("event", "") != "SNAPSHOT_PROGRESS" || !ev.contains("data"))
            return;
        const Json& d = ev["data"];
        std::fprintf(stderr, "\rsnapshot: %-8s %10.1f MiB written", d.value("phase", "").c_str(),
                     double(d.value("bytes", uint64_t(0))) / (1 << 20));
    });
    if (progress) std::fputs("\n", stderr);
    client.set_timeout(std::chrono::seconds(10));  // connect()'s, for the console's next
    if (!reply) {
        std::fprintf(stderr, "kvctl: %s\n", reply.error().message.c_str());
        return 1;
    }
    if (json)
        std::printf("%s\n", reply->dump(2).c_str());
    else
        std::fputs(kv::control::render(*reply).c_str(), stdout);
    std::fflush(stdout);
    return 0;
}

// --- the interactive console --------------------------------------------------------------

std::vector<std::string> g_completions;  // command names and aliases, for Tab

char* complete_one(const char* text, int state) {
    static size_t next;
    if (state == 0) next = 0;
    const size_t len = std::strlen(text);
    while (next < g_completions.size()) {
        const std::string& c = g_completions[next++];
        if (c.compare(0, len, text) == 0) return ::strdup(c.c_str());
    }
    return nullptr;
}

char** complete(const char* text, int start, int) {
    if (start != 0) return nullptr;  // only the command word is completed
    return rl_completion_matches(text, complete_one);
}

void print_events(Client& client) {
    for (;;) {
        auto e = client.next_event(std::chrono::milliseconds(0));
        if (!e || !*e) return;
        const Json& ev = **e;
        std::printf("event %s %s\n", ev.value("event", "?").c_str(),
                    ev.contains("data") ? ev["data"].dump().c_str() : "");
    }
}

int console(Client& client, bool json) {
    const bool tty = ::isatty(0) && ::isatty(1);
    std::string history;
    if (const char* home = std::getenv("HOME")) history = std::string(home) + "/.kvctl_history";
    auto commands = client.execute("query-commands");
    if (commands && commands->is_array())
        for (const auto& c : *commands) g_completions.push_back(c.value("name", ""));
    for (const auto& [alias, name] : kv::control::command_aliases()) g_completions.push_back(alias);
    for (const char* w : {"help", "exit", "events", "top"}) g_completions.push_back(w);
    std::sort(g_completions.begin(), g_completions.end());
    if (tty) {
        ::using_history();
        if (!history.empty()) ::read_history(history.c_str());
        rl_attempted_completion_function = complete;
        std::printf("kvctl: connected; \"help\" lists the commands, Ctrl-D leaves\n");
    }
    int status = 0;
    for (;;) {
        print_events(client);
        std::string line;
        if (tty) {
            char* l = ::readline("(kv) ");
            if (!l) {
                std::printf("\n");
                break;
            }
            line = l;
            std::free(l);
            if (!line.empty()) {
                ::add_history(line.c_str());
                if (!history.empty()) ::write_history(history.c_str());
            }
        } else if (!std::getline(std::cin, line)) {
            break;
        }
        auto words = kv::control::split_words(line);
        if (words.empty() || words[0][0] == '#') continue;
        if (words[0] == "exit") break;
        if (words[0] == "help") {
            std::printf("commands (COMMAND [KEY=VALUE ...]):\n");
            if (commands && commands->is_array())
                for (const auto& c : *commands) {
                    std::string name = c.value("name", "");
                    std::string alias = kv::control::alias_of(name);
                    if (!alias.empty()) alias = " (" + alias + ")";
                    std::printf("  %s%s\n", name.c_str(), alias.c_str());
                }
            std::printf("  exit, or Ctrl-D: leave the console\n");
            continue;
        }
        auto req = kv::control::parse_command(words);
        if (auto* why = std::get_if<std::string>(&req)) {
            std::fprintf(stderr, "kvctl: %s\n", why->c_str());
            status = 2;
            continue;
        }
        absolute_dir(std::get<Request>(req));
        if (int rc = run_request(client, std::get<Request>(req), json); rc != 0) {
            status = rc;
            // A server that went away ends the console; an error reply does not.
            if (client.last_error_class().empty()) break;
        }
    }
    print_events(client);
    return status;
}

// --- top ------------------------------------------------------------------------------------

struct Sample {
    std::chrono::steady_clock::time_point at;
    Json nodes;  // query-stats' "nodes"
};

uint64_t moved(const Json& node) {
    return uint_at(node, {"memory", "transfers", "pages_sent"}) +
           uint_at(node, {"memory", "transfers", "pages_received"});
}

const Json* find_by(const Json& list, const char* key, const Json& value) {
    for (const auto& e : list)
        if (e.contains(key) && e[key] == value) return &e;
    return nullptr;
}

std::string rate(uint64_t now, uint64_t before, double secs) {
    char b[32];
    std::snprintf(b, sizeof b, "%.0f", now >= before ? double(now - before) / secs : 0.0);
    return b;
}

std::string percent(double share) {
    char b[16];
    std::snprintf(b, sizeof b, "%.0f%%", std::clamp(share, 0.0, 1.0) * 100);
    return b;
}

// The view of two samples as two tables (nodes, vCPUs) of rates over the interval.
Json top_view(const Sample& a, const Sample& b) {
    const double secs = std::chrono::duration<double>(b.at - a.at).count();
    Json nodes = Json::array(), vcpus = Json::array();
    for (const auto& n : b.nodes) {
        const Json* old = find_by(a.nodes, "node", n["node"]);
        const Json none = Json::object();
        const Json& o = old ? *old : none;
        uint64_t exits = 0, old_exits = 0;
        double busy = 0;
        static const Json no_vcpus = Json::array();
        const Json& vs = n.contains("vcpus") ? n["vcpus"] : no_vcpus;
        const Json& old_vs = o.contains("vcpus") ? o["vcpus"] : no_vcpus;
        for (const auto& v : vs) {
            const Json* ov = find_by(old_vs, "vcpu", v["vcpu"]);
            const Json& w = ov ? *ov : none;
            exits += uint_at(v, {"exits"});
            old_exits += uint_at(w, {"exits"});
            const double run_s =
                double(uint_at(v, {"running_ns"}) -
                       std::min(uint_at(v, {"running_ns"}), uint_at(w, {"running_ns"}))) /
                1e9;
            busy += run_s / secs;
            vcpus.push_back(
                {{"vcpu", v.value("vcpu", 0u)},
                 {"node", v.value("node", 0u)},
                 {"state", v.value("state", "")},
                 {"load", percent(run_s / secs)},
                 {"exits/s", rate(uint_at(v, {"exits"}), uint_at(w, {"exits"}), secs)},
                 {"halts/s", rate(uint_at(v, {"halts"}), uint_at(w, {"halts"}), secs)}});
        }
        nodes.push_back({{"node", n.value("node", 0u)},
                         {"address", n.value("address", "")},
                         {"state", n.value("state", "")},
                         {"vcpus", vs.size()},
                         {"load", vs.empty() ? "-" : percent(busy / double(vs.size()))},
                         {"exits/s", rate(exits, old_exits, secs)},
                         {"faults/s", rate(report_faults(n), report_faults(o), secs)},
                         {"pages/s", rate(moved(n), moved(o), secs)},
                         {"ipis/s", rate(uint_at(n, {"link", "ipis_sent"}),
                                         uint_at(o, {"link", "ipis_sent"}), secs)},
                         {"io/s", rate(uint_at(n, {"link", "io_forwarded"}),
                                       uint_at(o, {"link", "io_forwarded"}), secs)}});
    }
    return {{"nodes", nodes}, {"vcpus", vcpus}};
}

kv::Result<Sample> sample(Client& client) {
    auto r = client.execute("query-stats");
    if (!r) return r.error();
    if (!r->contains("nodes") || !(*r)["nodes"].is_array())
        return kv::Error{"query-stats: the reply has no \"nodes\" list"};
    return Sample{std::chrono::steady_clock::now(), (*r)["nodes"]};
}

int top(Client& client, double interval, long count, bool json) {
    const bool tty = ::isatty(1);
    auto prev = sample(client);
    if (!prev) {
        std::fprintf(stderr, "kvctl: %s\n", prev.error().message.c_str());
        return 1;
    }
    for (long n = 0; count < 0 || n < count; ++n) {
        std::this_thread::sleep_for(std::chrono::duration<double>(interval));
        auto cur = sample(client);
        if (!cur) {
            std::fprintf(stderr, "kvctl: %s\n", cur.error().message.c_str());
            return 1;
        }
        Json view = top_view(*prev, *cur);
        if (json) {
            std::printf("%s\n", view.dump().c_str());
        } else {
            if (tty) std::fputs("\033[H\033[2J", stdout);
            std::printf("kvctl top: %zu node(s), every %.1f s\n\n", view["nodes"].size(), interval);
            std::fputs(kv::control::render(view["nodes"]).c_str(), stdout);
            std::fputs("\n", stdout);
            std::fputs(kv::control::render(view["vcpus"]).c_str(), stdout);
            if (!tty) std::fputs("\n", stdout);
        }
        std::fflush(stdout);
        prev = std::move(cur);
    }
    return 0;
}

// kvctl events: the client is subscribed once connected (negotiated), which stderr says,
// so that a script can wait for it before it causes the events it expects.
int events(Client& client, const std::string& socket, long count, double timeout) {
    std::fprintf(stderr, "kvctl: listening for events on %s\n", socket.c_str());
    const auto wait = timeout > 0 ? std::chrono::milliseconds(long(timeout * 1000))
                                  : std::chrono::milliseconds(std::chrono::hours(24));
    for (long n = 0; count < 0 || n < count;) {
        auto e = client.next_event(wait);
        if (!e) {
            std::fprintf(stderr, "kvctl: %s\n", e.error().message.c_str());
            return 1;
        }
        if (!*e) {
            if (timeout <= 0) continue;
            std::fprintf(stderr, "kvctl: no event within %g s (%ld received)\n", timeout, n);
            return 1;
        }
        std::printf("%s\n", (*e)->dump().c_str());
        std::fflush(stdout);
        ++n;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket;
    if (const char* env = std::getenv("KERRVISOR_CONTROL")) socket = env;
    bool json = false;
    long count = -1;
    double interval = 2.0;
    double timeout = 0;  // events: seconds without an event before giving up; 0: never
    std::vector<std::string> words;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(kHelp, stdout);
            return 0;
        } else if (a == "--json") {
            json = true;
        } else if (a == "--socket" || a == "--count" || a == "--interval" || a == "--timeout") {
            if (i + 1 >= argc) return usage(a + " needs a value");
            std::string v = argv[++i];
            char* end = nullptr;
            if (a == "--socket") {
                socket = v;
            } else if (a == "--count") {
                count = std::strtol(v.c_str(), &end, 10);
                if (v.empty() || *end || count < 1) return usage("--count wants 1 or more");
            } else if (a == "--timeout") {
                timeout = std::strtod(v.c_str(), &end);
                if (v.empty() || *end || !(timeout >= 0.1 && timeout <= 86400))
                    return usage("--timeout wants seconds from 0.1 to 86400");
            } else {
                interval = std::strtod(v.c_str(), &end);
                if (v.empty() || *end || !(interval >= 0.1 && interval <= 3600))
                    return usage("--interval wants seconds from 0.1 to 3600");
            }
        } else if (a.rfind("--", 0) == 0 && words.empty()) {
            return usage("unknown option " + a);
        } else {
            words.push_back(a);
        }
    }
    if (socket.empty())
        return usage("no control socket: give --socket PATH or set KERRVISOR_CONTROL");
    std::optional<Request> one;
    if (!words.empty() && words[0] != "events" && words[0] != "top") {
        auto req = kv::control::parse_command(words);
        if (auto* why = std::get_if<std::string>(&req)) return usage(*why);
        one = std::get<Request>(req);
        absolute_dir(*one);
    } else if (words.size() > 1) {
        return usage(words[0] + " takes options, not arguments");
    }

    auto client = Client::connect(socket);
    if (!client) {
        std::fprintf(stderr, "kvctl: %s\n", client.error().message.c_str());
        return 1;
    }
    if (words.empty()) return console(*client, json);
    if (words[0] == "top") return top(*client, interval, count, json);
    if (words[0] == "events") return events(*client, socket, count, timeout);
    return run_request(*client, *one, json);
}
