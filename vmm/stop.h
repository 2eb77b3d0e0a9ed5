// Why a guest stopped: the machine's run() returns it, and a node tells the others.
#pragma once

#include <string>

namespace kv {

enum class StopReason {
    PowerOff,  // ACPI S5
    Reset,     // reset register, keyboard controller
    Crashed,   // triple fault, guest panic
    Failed,    // the VMM could not go on (KVM error, a node lost)
    UserQuit,  // Ctrl-A x on the console
};

struct StopEvent {
    StopReason reason = StopReason::PowerOff;
    std::string detail;
};

}  // namespace kv
