// vmm-launch's configuration: the command line and an INI file (--config FILE) with the same
// keys, parsed with Boost.Program_options into typed values. docs/configuration.md is the
// user's reference; this header is the program's.
//
// Precedence: built-in default < config file < command line. Input errors come back as one
// line that names the key ("memory: ...", "unknown option --foo"), prefixed "FILE:LINE: " when
// the value came from a config file. main.cc prints "vmm-launch: <message>" and exits 2.
//
// Only one guest on one node for now. The cluster milestone adds [node.K] sections and the
// --node/--local options; the guest keys accepted at the top level of the file are also
// accepted in a [guest] section, which is where a cluster file will keep them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/result.h"
#include "vmm/config/origin.h"

namespace kv::config {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kMinMemory = 64 * kMiB;
inline constexpr uint64_t kMemoryAlign = 4096;  // guest RAM is rounded up to this
inline constexpr unsigned kMaxVcpus = 255;      // xAPIC: 8-bit APIC IDs, 0xFF is broadcast

enum class ConsoleKind {
    Stdio,  // the UART is wired to vmm-launch's stdin/stdout (raw mode on a terminal)
    None,   // output discarded, no input
    File,   // output appended to `path`, no input
};

struct Console {
    ConsoleKind kind = ConsoleKind::Stdio;
    std::string path;  // ConsoleKind::File only
};

// What a guest reboot (ACPI reset, keyboard-controller reset) does.
enum class OnReboot {
    Restart,  // reset the guest and boot the same kernel again (QEMU's behaviour)
    Exit,     // end vmm-launch with status 0
};

struct VmConfig {
    std::string kernel;  // bzImage; exists, regular, readable
    std::string initrd;  // empty: no initrd; else exists, regular, readable
    std::string cmdline = "console=ttyS0";
    uint64_t memory = 512 * kMiB;  // bytes, >= kMinMemory, multiple of kMemoryAlign
    unsigned vcpus = 1;            // 1..kMaxVcpus (the runtime also checks KVM's limit)
    Console console;
    OnReboot on_reboot = OnReboot::Restart;
    bool stats = false;  // print counters at exit
    LogLevel log_level = LogLevel::Warn;
    std::string config_file;  // --config as given; empty if none

    // Where each key's value came from, by key name ("memory"). Keys left at their default
    // are absent.
    std::map<std::string, Origin, std::less<>> origins;

    // origin(key).prefix(): "FILE:LINE: " if `key` was set in the config file, else "".
    // For errors found later about a value (e.g. the boot loader's "memory: too little ..."):
    // main.cc prints where(key) + message.
    std::string where(std::string_view key) const;
    const Origin& origin(std::string_view key) const;
};

// What vmm-launch should do after parsing its arguments.
struct ParseOutcome {
    enum class Action {
        Run,    // boot `config`
        Print,  // write `text` to stdout and exit 0 (--help, --version)
    };
    Action action = Action::Run;
    VmConfig config;
    std::string text;
};

Result<ParseOutcome> parse_command_line(int argc, const char* const* argv);

std::string_view to_string(ConsoleKind kind);
std::string_view to_string(OnReboot on_reboot);
std::string_view log_level_name(LogLevel level);

}  // namespace kv::config
