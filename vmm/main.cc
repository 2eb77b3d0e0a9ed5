// vmm-launch: boots one guest, or one node of a guest spread over several nodes. Exit
// status: 0 the guest powered off (or rebooted with on-reboot=exit, or the user quit),
// 1 the VMM failed (a node lost included), 2 bad input, 3 the guest crashed.
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "vmm/config/cluster.h"
#include "vmm/config/config.h"
#include "vmm/control/monitor.h"
#include "vmm/control/server.h"
#include "vmm/control/vm_commands.h"
#include "vmm/machine.h"

namespace {

// "vmm-launch" or, for one node of a cluster, "vmm-launch[node K]".
std::string g_name = "vmm-launch";

// Errors that come from the user's input name the key they are about.
bool is_input_error(const std::string& msg) {
    for (const char* key : {"kernel:", "initrd:", "memory:", "cmdline:", "vcpus:", "console:"})
        if (msg.rfind(key, 0) == 0) return true;
    return false;
}

// SIGINT/SIGTERM/SIGHUP stop the guest cleanly (counters printed, terminal restored): they
// are blocked in every thread and taken by one waiter thread.
std::atomic<kv::Machine*> g_machine{nullptr};
std::atomic<int> g_signal{0};

void start_signal_thread() {
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread([] {
        for (;;) {
            int sig = 0;
            if (sigwait(&set, &sig) != 0) continue;
            g_signal = sig;
            if (kv::Machine* m = g_machine.load())
                m->request_stop(kv::StopReason::Failed,
                                std::string("stopped by signal ") + strsignal(sig));
            else
                _exit(128 + sig);
        }
    }).detach();
}

// Runs the guest (this node of it) until it stops for good; returns the exit status.
int run_guest(const kv::config::VmConfig& cfg, const std::optional<kv::ConfigDigest>& digest) {
    start_signal_thread();
    // The control socket lives as long as vmm-launch, across guest resets; only the I/O
    // node makes it (the other nodes will answer it over the interconnect).
    // The serial console's monitor (Ctrl-A c) offers the same commands, socket or not.
    kv::control::CommandTable commands;
    kv::control::VmControl vm_control;
    std::unique_ptr<kv::control::ControlServer> control;
    const bool io_node = !cfg.cluster.enabled() || cfg.cluster.self == 0;
    if (io_node) vm_control.add_commands(commands);
    kv::control::Monitor monitor(commands);
    if (!cfg.control.empty() && io_node) {
        auto server = kv::control::ControlServer::create(cfg.control, commands);
        if (!server) {
            std::fprintf(stderr, "%s: %s%s\n", g_name.c_str(), cfg.where("control").c_str(),
                         server.error().message.c_str());
            return 2;
        }
        control = std::move(server).value();
        vm_control.set_server(control.get());
    }
    for (;;) {
        auto machine = kv::Machine::create(cfg, digest);
        if (!machine) {
            const std::string& msg = machine.error().message;
            bool input = is_input_error(msg);
            // A key set in the config file is reported with its FILE:LINE.
            std::string where = input ? cfg.where(msg.substr(0, msg.find(':'))) : "";
            std::fprintf(stderr, "%s: %s%s\n", g_name.c_str(), where.c_str(), msg.c_str());
            if (g_signal) return 128 + g_signal;
            return input ? 2 : 1;
        }
        g_machine = machine->get();
        if (io_node) (*machine)->set_monitor(&monitor);
        vm_control.attach(machine->get());
        kv::StopEvent ev = (*machine)->run();
        vm_control.detach();
        g_machine = nullptr;
        vm_control.guest_stopped(ev);
        if (cfg.stats) (*machine)->print_stats(stderr);
        switch (ev.reason) {
            case kv::StopReason::PowerOff:
            case kv::StopReason::UserQuit:
                return 0;
            case kv::StopReason::Reset:
                if (cfg.on_reboot == kv::config::OnReboot::Exit) return 0;
                std::fprintf(stderr, "%s: guest reset: restarting\n", g_name.c_str());
                continue;
            case kv::StopReason::Crashed:
                std::fprintf(stderr, "%s: guest crashed: %s\n", g_name.c_str(), ev.detail.c_str());
                return 3;
            case kv::StopReason::Failed:
                std::fprintf(stderr, "%s: %s\n", g_name.c_str(), ev.detail.c_str());
                return g_signal ? 128 + g_signal : 1;
        }
    }
}

void become_node(kv::config::VmConfig& cfg, uint32_t k) {
    cfg.cluster.self = k;
    g_name = "vmm-launch[node " + std::to_string(k) + "]";
    kv::set_log_tag(("[node " + std::to_string(k) + "]").c_str());
}

// --local: node 0 runs in this process (it has the console), every other node in a child
// process. The config digest is computed once, before forking. A child that is still
// running 15 s after node 0 ended is killed.
int run_local_cluster(kv::config::VmConfig cfg) {
    auto digest = kv::config::config_digest(cfg);
    if (!digest) {
        const std::string& msg = digest.error().message;
        bool input = is_input_error(msg);
        std::string where = input ? cfg.where(msg.substr(0, msg.find(':'))) : "";
        std::fprintf(stderr, "vmm-launch: %s%s\n", where.c_str(), msg.c_str());
        return input ? 2 : 1;
    }
    std::fflush(nullptr);
    std::vector<pid_t> children;
    for (uint32_t k = 1; k < cfg.cluster.nodes.size(); ++k) {
        pid_t pid = fork();
        if (pid < 0) {
            std::fprintf(stderr, "vmm-launch: fork for node %u: %s\n", k, strerror(errno));
            for (pid_t c : children) kill(c, SIGTERM);
            return 1;
        }
        if (pid == 0) {
            become_node(cfg, k);
            cfg.console.kind = kv::config::ConsoleKind::None;  // devices live on node 0
            std::fflush(nullptr);
            _exit(run_guest(cfg, *digest));
        }
        children.push_back(pid);
    }
    become_node(cfg, 0);
    int status = run_guest(cfg, *digest);

    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    for (size_t i = 0; i < children.size(); ++i) {
        int ws = 0;
        for (;;) {
            pid_t r = waitpid(children[i], &ws, WNOHANG);
            if (r == children[i]) break;
            if (r < 0) {
                ws = 0;
                break;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                std::fprintf(stderr, "vmm-launch: node %zu did not stop; killing it\n", i + 1);
                kill(children[i], SIGKILL);
                waitpid(children[i], &ws, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll, bounded
        }
        int child = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        if (child != 0 && status == 0) {
            std::fprintf(stderr, "vmm-launch: node %zu exited with status %d\n", i + 1, child);
            status = child;
        }
    }
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = kv::config::parse_command_line(argc, argv);
    if (!parsed) {
        std::fprintf(stderr, "vmm-launch: %s\n", parsed.error().message.c_str());
        return 2;
    }
    if (parsed->action == kv::config::ParseOutcome::Action::Print) {
        std::fputs(parsed->text.c_str(), stdout);
        return 0;
    }
    kv::config::VmConfig& cfg = parsed->config;
    kv::set_log_level(cfg.log_level);
    if (cfg.cluster.enabled() && cfg.cluster.local) return run_local_cluster(cfg);
    if (cfg.cluster.enabled()) become_node(cfg, cfg.cluster.self);
    return run_guest(cfg, std::nullopt);
}
