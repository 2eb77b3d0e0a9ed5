// The VMM's commands on the control socket (docs/control.md, "Commands"): query-status,
// query-vcpus, stop, cont, system_powerdown, system_reset, quit, and the events they
// cause. The machine changes under it (a guest reset makes a new Machine), so the
// commands reach it through attach()/detach(): the pointer is held under mu_ for the
// whole of a command, and detach() waits for a running command to end before the machine
// goes away.
#pragma once

#include <mutex>

#include "vmm/control/protocol.h"
#include "vmm/stop.h"

namespace kv {
class Machine;
}

namespace kv::control {

class ControlServer;

class VmControl {
  public:
    void add_commands(CommandTable& table);
    // Events go to `server` (may be null: none sent). Set before the server serves.
    void set_server(ControlServer* server) { server_ = server; }
    void attach(Machine* m);
    void detach();
    // The guest stopped (vmm-launch's main thread): SHUTDOWN, or RESET for a reset.
    void guest_stopped(const StopEvent& ev);

  private:
    template <class F>
    Reply with_machine(F f);
    void emit(const char* name, const Json& data = nullptr);

    std::mutex mu_;
    Machine* machine_ = nullptr;  // under mu_
    ControlServer* server_ = nullptr;
};

}  // namespace kv::control
