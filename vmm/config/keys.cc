#include "vmm/config/keys.h"

#include <array>

namespace po = boost::program_options;

namespace kv::config {
namespace {

constexpr std::string_view kVersion = "0.1.0";

// clang-format off
constexpr std::array<KeyInfo, 17> kKeys{{
    {"kernel", "PATH", "",
     "Linux bzImage to boot (64-bit boot protocol). Required.", true, false},
    {"initrd", "PATH", "none",
     "initramfs loaded next to the kernel. An empty value means none, so that the "
     "command line can drop a file's initrd.", true, false},
    {"cmdline", "TEXT", "console=ttyS0",
     "Kernel command line.", true, false},
    {"memory", "SIZE", "512M",
     "Guest RAM: bytes, or a number with a K, M, G or T suffix (binary: 1K is 1024 bytes). "
     "At least 64M; rounded up to a multiple of 4 KiB.", true, false},
    {"vcpus", "N", "1",
     "Number of vCPUs, 1 to 255 (xAPIC limit; KVM's own limit is checked at start).", true, false},
    {"console", "stdio|none|file:PATH", "stdio",
     "Guest serial console (ttyS0): stdio is interactive on vmm-launch's terminal; none "
     "discards output; file:PATH appends output to PATH.", true, false},
    {"on-reboot", "restart|exit", "restart",
     "On guest reboot: restart boots the guest again; exit ends vmm-launch with status 0.",
     true, false},
    {"stats", "[yes|no]", "no",
     "Print counters at exit (vCPU exits by reason, IPIs routed, interrupts injected).",
     true, true},
    {"time-dilation", "N", "1",
     "Run the guest's clocks N times slower than real time (1 to 1000): the TSC frequency "
     "the guest is told, the PIT and the ACPI PM timer. For guests on emulated hosts, which "
     "run many times slower than on hardware, so that timer ticks do not crowd out the "
     "guest's work. Every node of a cluster must give the same value.", true, false},
    {"control", "PATH", "none",
     "Unix socket of the control API (QMP-style JSON lines; docs/control.md), made mode "
     "0600 by the I/O node; kvctl --socket PATH is its client. Not part of a cluster's "
     "config digest.", true, false},
    {"log-level", "error|warning|info|debug", "warning",
     "Least severe VMM message printed to stderr.", true, false},
    {"config", "FILE", "none",
     "INI file with any of these keys as \"key = value\", at the top level or in a [guest] "
     "section. Command-line options override it. Command line only.", false, false},
    {"node", "K", "",
     "Run as node K of the cluster the config file describes in [node.K] sections. Required "
     "with such a file, unless --local. Command line only.", false, false},
    {"local", "", "",
     "Run every node of the config file's cluster as a process on this host, over "
     "127.0.0.1 (each node keeps its port). Command line only.", false, false},
    {"restore", "DIR", "none",
     "Start the guest from the snapshot in DIR (kvctl snapshot save) instead of booting "
     "it: the config must describe the same guest (kernel, initrd, cmdline, vCPUs, "
     "memory). Command line only.", false, false},
    {"help", "", "",
     "Print this help and exit.", false, false},
    {"version", "", "",
     "Print the version and exit.", false, false},
}};
// clang-format on

void add_key(po::options_description& desc, const KeyInfo& k, const std::string& name) {
    if (k.arg.empty()) {
        desc.add_options()(name.c_str(), std::string(k.help).c_str());
    } else if (k.optional_value) {
        desc.add_options()(name.c_str(), po::value<std::string>()->implicit_value("yes"),
                           std::string(k.help).c_str());
    } else {
        desc.add_options()(name.c_str(), po::value<std::string>(), std::string(k.help).c_str());
    }
}

// Within a help text, a space that wrap() must not break at.
constexpr char kGlue = '\x01';

// Appends `text` word-wrapped to `width` columns, every line indented by `indent` spaces.
void wrap(std::string& out, std::string_view text, size_t indent, size_t width) {
    size_t col = 0;
    while (!text.empty()) {
        size_t sp = text.find(' ');
        std::string_view word = text.substr(0, sp);
        text = sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1);
        if (col > 0 && col + 1 + word.size() > width) {
            out += '\n';
            col = 0;
        }
        if (col == 0) {
            out.append(indent, ' ');
            col = indent;
        } else {
            out += ' ';
            ++col;
        }
        for (char c : word) out += c == kGlue ? ' ' : c;
        col += word.size();
    }
    out += '\n';
}

}  // namespace

std::span<const KeyInfo> all_keys() {
    return kKeys;
}

const KeyInfo* find_key(std::string_view name) {
    for (const KeyInfo& k : kKeys)
        if (k.name == name) return &k;
    return nullptr;
}

po::options_description command_line_options() {
    po::options_description desc;
    for (const KeyInfo& k : kKeys)
        add_key(desc, k, std::string(k.name) + (k.name == "help" ? ",h" : ""));
    return desc;
}

po::options_description file_options() {
    po::options_description desc;
    for (const KeyInfo& k : kKeys) {
        if (!k.in_file) continue;
        add_key(desc, k, std::string(k.name));
        add_key(desc, k, std::string(kGuestSection) + "." + std::string(k.name));
    }
    return desc;
}

std::string help_text() {
    std::string out =
        "Usage: vmm-launch --kernel PATH [OPTION...]\n"
        "       vmm-launch --config FILE [OPTION...]\n"
        "\n";
    wrap(out,
         "Boots a Linux guest on KVM. Every option except --config, --help and --version can "
         "also be set in the config file as \"key = value\"; the command line overrides the "
         "file. Options take their value as --key VALUE or --key=VALUE. A config file with "
         "[node.K] sections describes a guest spread over several hosts: each host runs "
         "--config FILE --node K, or one host runs them all with --local.",
         0, 80);
    out += "\nOptions:\n";
    for (const KeyInfo& k : kKeys) {
        out += "  --";
        out += k.name;
        if (!k.arg.empty()) {
            out += k.optional_value ? "[=" : " ";
            out += k.optional_value ? k.arg.substr(1, k.arg.size() - 2) : k.arg;
            if (k.optional_value) out += "]";
        }
        out += '\n';
        std::string help(k.help);
        if (!k.fallback.empty())
            help += std::string(" Default:") + kGlue + std::string(k.fallback) + ".";
        wrap(out, help, 6, 80);
    }
    out += "\nExit status:\n";
    wrap(out,
         "0 the guest powered off (or rebooted with on-reboot=exit); 1 the VMM failed; 2 bad "
         "input (the message names the key, and FILE:LINE for a config file); 3 the guest "
         "crashed (triple fault or panic).",
         2, 80);
    return out;
}

std::string version_text() {
    return "vmm-launch (Kerrvisor) " + std::string(kVersion) + "\n";
}

}  // namespace kv::config
