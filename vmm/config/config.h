// vmm-launch's configuration: the command line and an INI file (--config FILE) with the same
// keys, parsed with Boost.Program_options into typed values. docs/configuration.md is the
// user's reference; this header is the program's.
//
// Precedence: built-in default < config file < command line. Input errors come back as one
// line that names the key ("memory: ...", "unknown option --foo"), prefixed "FILE:LINE: " when
// the value came from a config file. main.cc prints "vmm-launch: <message>" and exits 2.
//
// A file without [node.K] sections describes a guest on one node (VmConfig::cluster is
// empty). With them it describes one guest spread over several nodes: VmConfig::cluster
// holds the nodes, the cluster key and this process's role (--node K or --local); see
// vmm/config/cluster.h for the config digest and the transport options built from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "base/result.h"
#include "interconnect/transport_options.h"
#include "vmm/config/origin.h"

namespace kv::config {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kMinMemory = 64 * kMiB;
inline constexpr uint64_t kMemoryAlign = 4096;  // guest RAM is rounded up to this
inline constexpr unsigned kMaxVcpus = 255;      // xAPIC: 8-bit APIC IDs, 0xFF is broadcast
inline constexpr uint32_t kMaxTimeDilation = 1000;

inline constexpr uint64_t kNodeMemoryAlign = 2 * kMiB;  // a node's RAM slice is rounded up to this
inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{30000};
inline constexpr std::chrono::microseconds kDefaultPageHold{0};
inline constexpr std::chrono::microseconds kMaxPageHold{100000};
inline constexpr size_t kMinKeyBytes = 16;
inline constexpr size_t kMaxKeyBytes = 4096;

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

// One [node.K] section.
struct NodeSpec {
    uint32_t id = 0;               // K; nodes are numbered 0..N-1, node 0 is the I/O node
    std::string address;           // IPv4/IPv6 literal or host name (127.0.0.1 under --local)
    uint16_t port = 0;             // 1..65535
    unsigned vcpus = 1;            // 1..255
    uint64_t memory = 512 * kMiB;  // >= kMinMemory, rounded up to kNodeMemoryAlign
    Origin origin;                 // the [node.K] line
};

// A contiguous range of the guest's RAM, as an offset into the RAM in guest order (node 0's
// slice first, then node 1's, ...), not a guest-physical address: the boot layout maps RAM
// offsets to addresses around the 3-4 GiB hole.
struct RamRange {
    uint64_t offset = 0;
    uint64_t size = 0;
};
struct VcpuRange {
    unsigned first = 0;
    unsigned count = 0;
};

struct Cluster {
    std::vector<NodeSpec> nodes;  // by id; empty: a single-node guest (no cluster)
    uint32_t self = 0;            // --node K; 0 under --local (the runtime sets each child's)
    bool local = false;           // --local: run every node as a process on this host
    std::string key_file;         // [cluster] key-file, resolved like other paths
    std::vector<uint8_t> key;     // its contents: the cluster key (kMinKeyBytes or more)
    std::chrono::milliseconds connect_timeout = kDefaultConnectTimeout;
    // [cluster] heartbeat; zero: off (TCP's own limits only). Default: the transport's.
    std::chrono::milliseconds heartbeat = kDefaultHeartbeat;
    // [cluster] page-hold: the coherence engine's hold window (CoherenceEngine::Options).
    std::chrono::microseconds page_hold = kDefaultPageHold;
    std::string transport = "tcp";

    bool enabled() const { return !nodes.empty(); }
    unsigned total_vcpus() const;
    uint64_t total_memory() const;
    // The node that runs vCPU i: node 0 gets vCPUs 0..v0-1, node 1 the next v1, ...
    // Precondition: i < total_vcpus().
    uint32_t vcpu_node(unsigned i) const;
    // Node k's vCPUs and RAM slice. Precondition: k < nodes.size().
    VcpuRange node_vcpus(uint32_t k) const;
    RamRange node_memory_range(uint32_t k) const;
    const NodeSpec& self_node() const { return nodes.at(self); }
};

struct VmConfig {
    std::string kernel;  // bzImage; exists, regular, readable
    std::string initrd;  // empty: no initrd; else exists, regular, readable
    std::string cmdline = "console=ttyS0";
    // With a cluster, memory and vcpus are the totals over the nodes.
    uint64_t memory = 512 * kMiB;  // bytes, >= kMinMemory, multiple of kMemoryAlign
    unsigned vcpus = 1;            // 1..kMaxVcpus (the runtime also checks KVM's limit)
    Console console;
    OnReboot on_reboot = OnReboot::Restart;
    bool stats = false;  // print counters at exit
    LogLevel log_level = LogLevel::Warn;
    // The control socket's path (empty: none); only the I/O node makes it.
    std::string control;
    // The guest's clocks (its TSC frequency as told, PIT, ACPI PM timer) run this many
    // times slower than real time; 1 is real time (docs/configuration.md).
    uint32_t time_dilation = 1;
    std::string config_file;  // --config as given; empty if none
    std::string restore;      // --restore DIR: start from that snapshot (empty: boot)
    Cluster cluster;          // empty unless the file has [node.K] sections
    // [vcpu.N] migrate (Kerrighed's CAN_MIGRATE): the vCPUs the file names, by index.
    // Policy of the I/O node's control plane, not guest state: not in the config digest.
    std::map<uint32_t, bool> vcpu_migrate;
    bool may_migrate(uint32_t vcpu) const {
        auto it = vcpu_migrate.find(vcpu);
        return it == vcpu_migrate.end() || it->second;
    }

    // Where each key's value came from, by key name ("memory"; a node's keys as
    // "node.1.port", the cluster's as "key-file"). Keys left at their default are absent.
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
