// vmm-launch: boots one guest. Exit status: 0 the guest powered off (or rebooted with
// on-reboot=exit, or the user quit), 1 the VMM failed, 2 bad input, 3 the guest crashed.
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "base/log.h"
#include "vmm/config/config.h"
#include "vmm/machine.h"

namespace {

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
    const kv::config::VmConfig& cfg = parsed->config;
    kv::set_log_level(cfg.log_level);
    start_signal_thread();

    for (;;) {
        auto machine = kv::Machine::create(cfg);
        if (!machine) {
            const std::string& msg = machine.error().message;
            bool input = is_input_error(msg);
            // A key set in the config file is reported with its FILE:LINE.
            std::string where = input ? cfg.where(msg.substr(0, msg.find(':'))) : "";
            std::fprintf(stderr, "vmm-launch: %s%s\n", where.c_str(), msg.c_str());
            return input ? 2 : 1;
        }
        g_machine = machine->get();
        kv::StopEvent ev = (*machine)->run();
        g_machine = nullptr;
        if (cfg.stats) (*machine)->print_stats(stderr);
        switch (ev.reason) {
            case kv::StopReason::PowerOff:
            case kv::StopReason::UserQuit:
                return 0;
            case kv::StopReason::Reset:
                if (cfg.on_reboot == kv::config::OnReboot::Exit) return 0;
                std::fprintf(stderr, "vmm-launch: guest reset: restarting\n");
                continue;
            case kv::StopReason::Crashed:
                std::fprintf(stderr, "vmm-launch: guest crashed: %s\n", ev.detail.c_str());
                return 3;
            case kv::StopReason::Failed:
                std::fprintf(stderr, "vmm-launch: %s\n", ev.detail.c_str());
                return g_signal ? 128 + g_signal : 1;
        }
    }
}
