#include "vmm/control/vm_commands.h"

#include "vmm/control/server.h"
#include "vmm/machine.h"

namespace kv::control {
namespace {

const char* reason_name(StopReason r) {
    switch (r) {
        case StopReason::PowerOff:
            return "guest-shutdown";
        case StopReason::Reset:
            return "guest-reset";
        case StopReason::Crashed:
            return "guest-panic";
        case StopReason::Failed:
            return "host-error";
        case StopReason::UserQuit:
            return "host-qmp-quit";
    }
    return "unknown";
}

// How long stop waits for every vCPU to reach an exit boundary.
constexpr std::chrono::milliseconds kPauseTimeout{10'000};

}  // namespace

void VmControl::attach(Machine* m) {
    std::lock_guard g(mu_);
    machine_ = m;
}

void VmControl::detach() {
    std::lock_guard g(mu_);  // waits for a command that is using the machine
    machine_ = nullptr;
}

void VmControl::emit(const char* name, const Json& data) {
    if (server_) server_->emit(name, data);
}

template <class F>
Reply VmControl::with_machine(F f) {
    std::lock_guard g(mu_);
    if (!machine_) return generic_error("the guest is not running (it is starting or resetting)");
    return f(*machine_);
}

void VmControl::guest_stopped(const StopEvent& ev) {
    if (ev.reason == StopReason::Reset)
        emit("RESET", {{"guest", true}, {"reason", reason_name(ev.reason)}});
    else
        emit("SHUTDOWN",
             {{"guest", ev.reason == StopReason::PowerOff || ev.reason == StopReason::Crashed},
              {"reason", reason_name(ev.reason)},
              {"detail", ev.detail}});
}

void VmControl::add_commands(CommandTable& t) {
    t.add("query-status", "running or paused", {}, [this](const Json&) {
        return with_machine([](Machine& m) -> Reply {
            bool paused = m.paused();
            return Json{{"running", !paused},
                        {"singlestep", false},
                        {"status", paused ? "paused" : "running"}};
        });
    });
    t.add("query-vcpus", "every vCPU of this node: state, exits, halts, time paused", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  Json list = Json::array();
                  for (const auto& v : m.vcpu_info())
                      list.push_back({{"vcpu", v.index},
                                      {"node", v.node},
                                      {"state", to_string(v.state)},
                                      {"exits", v.exits},
                                      {"halts", v.halts},
                                      {"paused_ns", v.paused_ns}});
                  return list;
              });
          });
    t.add("stop", "pause every vCPU at an exit boundary; the guest's clocks stop too", {},
          [this](const Json&) {
              Reply r = with_machine([](Machine& m) -> Reply {
                  if (m.paused()) return Json::object();
                  if (auto st = m.pause(kPauseTimeout); !st)
                      return generic_error(st.error().message);
                  return Json::object();
              });
              if (std::holds_alternative<Json>(r)) emit("STOP");
              return r;
          });
    t.add("cont", "resume a paused guest where it stood", {}, [this](const Json&) {
        Reply r = with_machine([](Machine& m) -> Reply {
            if (auto st = m.resume(); !st) return generic_error(st.error().message);
            return Json::object();
        });
        if (std::holds_alternative<Json>(r)) emit("RESUME");
        return r;
    });
    t.add("system_powerdown", "press the ACPI power button", {}, [this](const Json&) {
        Reply r = with_machine([](Machine& m) -> Reply {
            m.press_power_button();
            return Json::object();
        });
        if (std::holds_alternative<Json>(r)) emit("POWERDOWN");
        return r;
    });
    t.add("system_reset", "reset the guest (on-reboot decides what follows)", {},
          [this](const Json&) {
              return with_machine([](Machine& m) -> Reply {
                  m.request_stop(StopReason::Reset, "reset from the control socket");
                  return Json::object();
              });
          });
    t.add("quit", "end vmm-launch (exit status 0)", {}, [this](const Json&) {
        return with_machine([](Machine& m) -> Reply {
            m.request_stop(StopReason::UserQuit, "quit from the control socket");
            return Json::object();
        });
    });
}

}  // namespace kv::control
