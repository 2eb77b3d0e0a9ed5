// The serial console's monitor (Ctrl-A c, as in QEMU): the control commands of the
// CommandTable typed as in kvctl's console (COMMAND [KEY=VALUE ...], vmm/control/cli.h)
// and answered as kvctl answers them (render.h). The terminal is raw, so the monitor edits
// its own line: printable characters echo, Backspace/DEL erase one, Ctrl-U erases the
// line, Ctrl-C drops it, Enter runs it; escape sequences (arrow keys) are ignored.
//
// Commands run on the console's reader thread, in the calling thread of feed(); the table's
// handlers may block (stop waits for every vCPU to park), never on the console itself.
#pragma once

#include <string>

#include "vmm/control/protocol.h"
#include "vmm/devices/console.h"

namespace kv::control {

class Monitor : public ConsoleMonitor {
  public:
    static constexpr size_t kMaxLine = 4096;  // longer input is not taken (a bell instead)
    explicit Monitor(const CommandTable& table) : table_(table) {}

    std::string enter() override;
    std::string feed(std::span<const uint8_t> in) override;
    std::string leave() override;

    // One command line's answer, without the prompt (also what feed() runs on Enter).
    std::string run_line(const std::string& line) const;

  private:
    const CommandTable& table_;
    std::string line_;
    bool after_cr_ = false;  // a '\n' right after '\r' is the same Enter
    int esc_ = 0;            // 0, 1 after ESC, 2 inside an ESC [ sequence
};

}  // namespace kv::control
