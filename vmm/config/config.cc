#include "vmm/config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/program_options/parsers.hpp>
#include <filesystem>
#include <optional>
#include <sstream>

#include "vmm/config/ini_scan.h"
#include "vmm/config/keys.h"
#include "vmm/config/values.h"

namespace po = boost::program_options;

namespace kv::config {
namespace {

constexpr size_t kMaxConfigFile = size_t{1} << 20;

// A key's text before conversion, and where it was given.
struct Raw {
    std::string text;
    Origin origin;
};
using RawMap = std::map<std::string, Raw, std::less<>>;

std::string without_guest_section(std::string_view key) {
    std::string prefix = std::string(kGuestSection) + ".";
    if (key.starts_with(prefix)) key.remove_prefix(prefix.size());
    return std::string(key);
}

std::string option_key(std::string name) {
    while (name.starts_with("-")) name.erase(0, 1);
    return name;
}

// Boost's own syntax errors, reworded to name the key like every other error.
Error from_boost(const po::error& e) {
    if (auto* syn = dynamic_cast<const po::invalid_command_line_syntax*>(&e)) {
        std::string key = option_key(syn->get_option_name());
        switch (syn->kind()) {
            case po::invalid_syntax::missing_parameter:
                return Error{key + ": missing value (--" + key + " VALUE)"};
            case po::invalid_syntax::empty_adjacent_parameter:
                return Error{key + ": nothing after '=' (write --" + key +
                             " \"\" for an empty value)"};
            case po::invalid_syntax::extra_parameter:
                return Error{key + ": takes no value"};
            default:
                break;
        }
    }
    return Error{e.what()};
}

struct CommandLine {
    RawMap values;
    bool help = false;
    bool version = false;
};

Result<CommandLine> read_command_line(int argc, const char* const* argv) {
    CommandLine cl;
    po::parsed_options parsed(nullptr);
    try {
        parsed =
            po::command_line_parser(argc, argv)
                .options(command_line_options())
                .style(po::command_line_style::unix_style & ~po::command_line_style::allow_guessing)
                .allow_unregistered()
                .run();
    } catch (const po::error& e) {
        return from_boost(e);
    }
    for (const po::option& opt : parsed.options) {
        if (opt.string_key.empty() || opt.position_key >= 0) {
            std::string arg = opt.value.empty() ? "" : opt.value.front();
            return Error{"unexpected argument \"" + arg + "\" (options are --key VALUE)"};
        }
        if (opt.unregistered) {
            std::string token =
                opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
            return Error{"unknown option " + token.substr(0, token.find('='))};
        }
        if (opt.string_key == "help") {
            cl.help = true;
        } else if (opt.string_key == "version") {
            cl.version = true;
        } else {
            // An option given twice: the last one wins, so that a wrapper script can append
            // overrides to a command line.
            std::string text = opt.value.empty() ? "yes" : opt.value.front();
            cl.values[opt.string_key] = Raw{text, Origin::command_line()};
        }
    }
    return cl;
}

Result<std::string> read_text_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Error::from_errno("config: " + path);
    std::string text;
    struct stat st {};
    Status status;
    if (::fstat(fd, &st) != 0) {
        status = Error::from_errno("config: " + path);
    } else if (!S_ISREG(st.st_mode)) {
        status = Error{"config: " + path + ": not a regular file"};
    } else if (static_cast<size_t>(st.st_size) > kMaxConfigFile) {
        status = Error{"config: " + path + ": larger than 1 MiB"};
    } else {
        text.resize(static_cast<size_t>(st.st_size));
        size_t done = 0;
        while (done < text.size()) {
            ssize_t n = ::read(fd, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                status = Error::from_errno("config: " + path);
                break;
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        text.resize(done);
    }
    ::close(fd);
    if (!status.ok()) return status.error();
    return text;
}

// One [node.K] section's keys.
struct NodeRaw {
    uint32_t id = 0;
    Origin origin;  // the section line
    RawMap keys;
};

// One [vcpu.N] section's keys.
struct VcpuRaw {
    uint32_t id = 0;
    Origin origin;  // the section line
    RawMap keys;
};

// What a config file holds: guest keys (top level and [guest]), the cluster's, and the
// vCPUs'.
struct FileValues {
    RawMap guest;
    std::vector<NodeRaw> nodes;  // in file order
    std::vector<VcpuRaw> vcpus;  // in file order
    RawMap cluster;              // [cluster] keys
    Origin cluster_origin;       // Kind::Default if there is no [cluster] section
};

constexpr std::string_view kClusterSection = "cluster";
constexpr std::string_view kNodePrefix = "node.";
constexpr std::string_view kVcpuPrefix = "vcpu.";
constexpr std::array<std::string_view, 1> kVcpuKeys{"migrate"};
constexpr std::array<std::string_view, 4> kNodeKeys{"address", "port", "vcpus", "memory"};
constexpr std::array<std::string_view, 5> kClusterKeys{"key-file", "connect-timeout", "heartbeat",
                                                       "transport", "page-hold"};

template <size_t N>
bool one_of(const std::array<std::string_view, N>& keys, std::string_view key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

template <size_t N>
std::string listed(const std::array<std::string_view, N>& keys) {
    std::string out;
    for (std::string_view k : keys) out += (out.empty() ? "" : ", ") + std::string(k);
    return out;
}

// Adds `key` to `map`, refusing a second one.
Status add_once(RawMap& map, const std::string& key, const std::string& shown, Raw raw) {
    if (auto it = map.find(key); it != map.end()) {
        return Error{raw.origin.prefix() + shown + ": given twice (first at line " +
                     std::to_string(it->second.origin.line) + ")"};
    }
    map[key] = std::move(raw);
    return {};
}

Result<FileValues> read_config_file(const std::string& path) {
    Result<std::string> text = read_text_file(path);
    if (!text.ok()) return text.error();
    Result<IniScan> scan = scan_ini(*text, path);
    if (!scan.ok()) return scan.error();

    FileValues file;
    std::map<uint32_t, size_t> node_index;  // id -> file.nodes index
    std::map<uint32_t, size_t> vcpu_index;  // id -> file.vcpus index
    for (const IniSection& s : scan->sections) {
        Origin origin = Origin::in_file(path, s.line);
        std::string_view name = s.name;
        if (name == kGuestSection) continue;
        if (name == kClusterSection) {
            if (file.cluster_origin.kind == Origin::Kind::File) {
                return Error{origin.prefix() + "[cluster] given twice (first at line " +
                             std::to_string(file.cluster_origin.line) + ")"};
            }
            file.cluster_origin = origin;
        } else if (name.starts_with(kNodePrefix)) {
            std::optional<uint32_t> id = parse_node_number(name.substr(kNodePrefix.size()));
            if (!id) {
                return Error{origin.prefix() + "[" + s.name +
                             "]: node numbers are whole numbers 0 to 254 (as in [node.0])"};
            }
            if (auto it = node_index.find(*id); it != node_index.end()) {
                return Error{origin.prefix() + "[" + s.name + "] given twice (first at line " +
                             std::to_string(file.nodes[it->second].origin.line) + ")"};
            }
            node_index[*id] = file.nodes.size();
            file.nodes.push_back(NodeRaw{*id, origin, {}});
        } else if (name.starts_with(kVcpuPrefix)) {
            // The same numbers as nodes: below kMaxVcpus, so below 255.
            std::optional<uint32_t> id = parse_node_number(name.substr(kVcpuPrefix.size()));
            if (!id) {
                return Error{origin.prefix() + "[" + s.name +
                             "]: vCPU numbers are whole numbers 0 to 254 (as in [vcpu.1])"};
            }
            if (auto it = vcpu_index.find(*id); it != vcpu_index.end()) {
                return Error{origin.prefix() + "[" + s.name + "] given twice (first at line " +
                             std::to_string(file.vcpus[it->second].origin.line) + ")"};
            }
            vcpu_index[*id] = file.vcpus.size();
            file.vcpus.push_back(VcpuRaw{*id, origin, {}});
        } else {
            return Error{origin.prefix() + "unknown section [" + s.name +
                         "] (known: [guest], [cluster], [node.K], [vcpu.N])"};
        }
    }

    po::parsed_options parsed(nullptr);
    try {
        std::istringstream in(*text);
        parsed = po::parse_config_file(in, file_options(), /*allow_unregistered=*/true);
    } catch (const po::error& e) {
        return Error{path + ": " + e.what()};
    }
    // The scanner accepts exactly what Boost accepts, so the two lists match one for one;
    // the scanner's gives each option its line.
    if (parsed.options.size() != scan->entries.size())
        return Error{path + ": internal error: config scanner and parser disagree"};

    for (size_t i = 0; i < parsed.options.size(); ++i) {
        const po::option& opt = parsed.options[i];
        const IniEntry& entry = scan->entries[i];
        if (opt.string_key != entry.key)
            return Error{path + ": internal error: config scanner and parser disagree"};
        Origin origin = Origin::in_file(path, entry.line);
        Raw raw{opt.value.empty() ? "" : opt.value.front(), origin};
        std::string_view full = opt.string_key;

        // [cluster] KEY and [node.K] KEY: the scanner names them "cluster.KEY", "node.K.KEY".
        if (opt.unregistered && full.starts_with(std::string(kClusterSection) + ".")) {
            std::string key(full.substr(kClusterSection.size() + 1));
            if (!one_of(kClusterKeys, key)) {
                return Error{origin.prefix() + "unknown key \"" + key +
                             "\" in [cluster] (known: " + listed(kClusterKeys) + ")"};
            }
            KV_TRY(add_once(file.cluster, key, key, raw));
            continue;
        }
        if (opt.unregistered && full.starts_with(kNodePrefix)) {
            std::string_view rest = full.substr(kNodePrefix.size());
            size_t dot = rest.find('.');
            std::optional<uint32_t> id =
                dot == rest.npos ? std::nullopt : parse_node_number(rest.substr(0, dot));
            if (id && node_index.count(*id)) {
                NodeRaw& node = file.nodes[node_index[*id]];
                std::string key(rest.substr(dot + 1));
                std::string section = "[node." + std::to_string(*id) + "]";
                if (!one_of(kNodeKeys, key)) {
                    return Error{origin.prefix() + "unknown key \"" + key + "\" in " + section +
                                 " (known: " + listed(kNodeKeys) + ")"};
                }
                KV_TRY(add_once(node.keys, key, section + " " + key, raw));
                continue;
            }
        }

        if (opt.unregistered && full.starts_with(kVcpuPrefix)) {
            std::string_view rest = full.substr(kVcpuPrefix.size());
            size_t dot = rest.find('.');
            std::optional<uint32_t> id =
                dot == rest.npos ? std::nullopt : parse_node_number(rest.substr(0, dot));
            if (id && vcpu_index.count(*id)) {
                VcpuRaw& vcpu = file.vcpus[vcpu_index[*id]];
                std::string key(rest.substr(dot + 1));
                std::string section = "[vcpu." + std::to_string(*id) + "]";
                if (!one_of(kVcpuKeys, key)) {
                    return Error{origin.prefix() + "unknown key \"" + key + "\" in " + section +
                                 " (known: " + listed(kVcpuKeys) + ")"};
                }
                KV_TRY(add_once(vcpu.keys, key, section + " " + key, raw));
                continue;
            }
        }

        std::string key = without_guest_section(opt.string_key);
        if (opt.unregistered) {
            const KeyInfo* info = find_key(key);
            if (info && !info->in_file)
                return Error{origin.prefix() + key + ": only allowed on the command line"};
            return Error{origin.prefix() + "unknown key \"" + key + "\""};
        }
        // A key given twice in one file is refused: which one was meant is a guess.
        KV_TRY(add_once(file.guest, key, key, raw));
    }
    return file;
}

// A relative path in a config file is relative to the file's folder; on the command line,
// to the current directory.
std::string resolve_path(const std::string& path, const Origin& origin) {
    if (origin.kind != Origin::Kind::File || path.empty() || path.front() == '/') return path;
    return (std::filesystem::path(origin.file).parent_path() / path).string();
}

// Converts one key's text into `cfg`. The error has no "FILE:LINE: " prefix yet.
Status apply(VmConfig& cfg, const std::string& key, const Raw& raw) {
    const std::string& text = raw.text;
    if (key == "kernel") {
        if (text.empty()) return Error{"kernel: empty path"};
        cfg.kernel = resolve_path(text, raw.origin);
    } else if (key == "initrd") {
        cfg.initrd = resolve_path(text, raw.origin);
    } else if (key == "cmdline") {
        cfg.cmdline = text;
    } else if (key == "memory") {
        Result<uint64_t> r = parse_memory(text);
        if (!r.ok()) return r.error();
        cfg.memory = *r;
    } else if (key == "vcpus") {
        Result<unsigned> r = parse_vcpus(text);
        if (!r.ok()) return r.error();
        cfg.vcpus = *r;
    } else if (key == "console") {
        Result<Console> r = parse_console(text);
        if (!r.ok()) return r.error();
        cfg.console = *r;
        cfg.console.path = resolve_path(cfg.console.path, raw.origin);
    } else if (key == "on-reboot") {
        Result<OnReboot> r = parse_on_reboot(text);
        if (!r.ok()) return r.error();
        cfg.on_reboot = *r;
    } else if (key == "stats") {
        Result<bool> r = parse_switch("stats", text);
        if (!r.ok()) return r.error();
        cfg.stats = *r;
    } else if (key == "time-dilation") {
        Result<uint32_t> r = parse_time_dilation(text);
        if (!r.ok()) return r.error();
        cfg.time_dilation = *r;
    } else if (key == "log-level") {
        Result<LogLevel> r = parse_log_level(text);
        if (!r.ok()) return r.error();
        cfg.log_level = *r;
    } else if (key == "control") {
        if (text.empty()) return Error{"control: empty path"};
        cfg.control = resolve_path(text, raw.origin);
    } else if (key == "config") {
        cfg.config_file = text;
    } else if (key == "node") {
        std::optional<uint32_t> id = parse_node_number(text);
        if (!id) return Error{"node: \"" + text + "\" is not a node number (0 to 254)"};
        cfg.cluster.self = *id;
    } else if (key == "local") {
        cfg.cluster.local = true;
    } else if (key == "restore") {
        if (text.empty()) return Error{"restore: empty path"};
        cfg.restore = resolve_path(text, raw.origin);
    }
    cfg.origins[key] = raw.origin;
    return {};
}

// `e` about a value given at `origin`, in `section` if not empty: "FILE:LINE: [node.1] port: ..."
Error at(const Origin& origin, const Error& e, std::string_view section = {}) {
    return Error{origin.prefix() + (section.empty() ? "" : std::string(section) + " ") + e.message};
}

// The [node.K] and [cluster] sections, and --node/--local, into cfg.cluster. Guest values
// are already in `cfg`.
Status build_cluster(VmConfig& cfg, const RawMap& values, const FileValues& file) {
    Cluster& cl = cfg.cluster;
    const bool has_node = values.count("node") > 0;
    if (file.nodes.empty()) {
        if (file.cluster_origin.kind == Origin::Kind::File) {
            return Error{file.cluster_origin.prefix() +
                         "[cluster] without [node.K] sections (a cluster needs its nodes)"};
        }
        const char* opt = has_node ? "node" : cl.local ? "local" : nullptr;
        if (!opt) return {};
        if (cfg.config_file.empty()) {
            return Error{std::string(opt) +
                         ": needs a cluster config (--config FILE with "
                         "[node.K] sections)"};
        }
        return Error{std::string(opt) + ": " + cfg.config_file + " has no [node.K] sections"};
    }

    // Per-node vcpus and memory replace the guest's.
    for (const char* key : {"vcpus", "memory"}) {
        if (auto it = values.find(key); it != values.end()) {
            std::string in =
                it->second.origin.kind == Origin::Kind::File ? "" : " of " + cfg.config_file;
            return Error{it->second.origin.prefix() + key + ": set per node in [node.K] sections" +
                         in};
        }
    }

    // Nodes, in id order.
    std::vector<const NodeRaw*> raws;
    for (const NodeRaw& n : file.nodes) raws.push_back(&n);
    std::sort(raws.begin(), raws.end(),
              [](const NodeRaw* a, const NodeRaw* b) { return a->id < b->id; });
    for (size_t i = 0; i < raws.size(); ++i) {
        if (raws[i]->id != i) {
            return Error{raws[i]->origin.prefix() + "[node." + std::to_string(raws[i]->id) +
                         "]: node " + std::to_string(i) +
                         " is missing (nodes are numbered 0, 1, 2, ... without gaps)"};
        }
    }
    for (const NodeRaw* raw : raws) {
        NodeSpec node;
        node.id = raw->id;
        node.origin = raw->origin;
        const std::string section = "[node." + std::to_string(raw->id) + "]";
        for (const char* key : {"address", "port"}) {
            if (!raw->keys.count(key)) {
                return Error{raw->origin.prefix() + section + " " + key + ": missing (give " + key +
                             " = " + (std::string_view(key) == "port" ? "N" : "HOST") +
                             " in this section)"};
            }
        }
        for (const auto& [key, value] : raw->keys) {
            if (key == "address") {
                Status st = check_address("address", value.text);
                if (!st.ok()) return at(value.origin, st.error(), section);
                node.address = value.text;
            } else if (key == "port") {
                Result<uint16_t> r = parse_port("port", value.text);
                if (!r.ok()) return at(value.origin, r.error(), section);
                node.port = *r;
            } else if (key == "vcpus") {
                Result<unsigned> r = parse_vcpus(value.text);
                if (!r.ok()) return at(value.origin, r.error(), section);
                node.vcpus = *r;
            } else if (key == "memory") {
                Result<uint64_t> r = parse_memory(value.text);
                if (!r.ok()) return at(value.origin, r.error(), section);
                node.memory = (*r + kNodeMemoryAlign - 1) & ~(kNodeMemoryAlign - 1);
            }
            cfg.origins["node." + std::to_string(raw->id) + "." + key] = value.origin;
        }
        cl.nodes.push_back(std::move(node));
    }

    // Totals: the guest's vCPUs and RAM.
    unsigned vcpus = 0;
    uint64_t memory = 0;
    for (const NodeSpec& n : cl.nodes) {
        vcpus += n.vcpus;
        memory += n.memory;
        if (vcpus > kMaxVcpus) {
            return Error{n.origin.prefix() + "[node." + std::to_string(n.id) +
                         "] vcpus: the nodes have " + std::to_string(cl.total_vcpus()) +
                         " vCPUs in all, too many (at most " + std::to_string(kMaxVcpus) + ")"};
        }
        if (memory > (uint64_t{1} << 52)) {
            return Error{n.origin.prefix() + "[node." + std::to_string(n.id) +
                         "] memory: the nodes have more than 4096T in all"};
        }
    }
    cfg.vcpus = vcpus;
    cfg.memory = memory;

    // [cluster]
    for (const auto& [key, value] : file.cluster) {
        if (key == "key-file") {
            if (value.text.empty()) return at(value.origin, Error{"key-file: empty path"});
            cl.key_file = resolve_path(value.text, value.origin);
        } else if (key == "connect-timeout") {
            Result<std::chrono::milliseconds> r = parse_duration(key, value.text);
            if (!r.ok()) return at(value.origin, r.error());
            cl.connect_timeout = *r;
        } else if (key == "heartbeat") {
            Result<std::chrono::milliseconds> r = parse_heartbeat(value.text);
            if (!r.ok()) return at(value.origin, r.error());
            cl.heartbeat = *r;
        } else if (key == "page-hold") {
            Result<std::chrono::microseconds> r = parse_page_hold(value.text);
            if (!r.ok()) return at(value.origin, r.error());
            cl.page_hold = *r;
        } else if (key == "transport") {
            Result<std::string> r = parse_transport(value.text);
            if (!r.ok()) return at(value.origin, r.error());
            cl.transport = *r;
        }
        cfg.origins[key] = value.origin;
    }

    // This process's role.
    if (has_node && cl.local) return Error{"local: cannot be combined with --node"};
    if (!has_node && !cl.local) {
        return Error{"node: missing (give --node K to run node K of " + cfg.config_file +
                     ", or --local to run all " + std::to_string(cl.nodes.size()) +
                     " nodes on this host)"};
    }
    if (has_node && cl.self >= cl.nodes.size()) {
        return Error{"node: " + std::to_string(cl.self) + " is out of range (" + cfg.config_file +
                     " has nodes 0 to " + std::to_string(cl.nodes.size() - 1) + ")"};
    }
    // Under --local every node listens on 127.0.0.1 at its own port.
    if (cl.local) {
        for (NodeSpec& n : cl.nodes) n.address = "127.0.0.1";
    }
    for (size_t i = 0; i < cl.nodes.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            const NodeSpec& a = cl.nodes[j];
            const NodeSpec& b = cl.nodes[i];
            if (a.address != b.address || a.port != b.port) continue;
            const Origin& where = cfg.origin("node." + std::to_string(b.id) + ".port");
            return Error{where.prefix() + "[node." + std::to_string(b.id) + "] port: " + b.address +
                         " port " + std::to_string(b.port) + " is node " + std::to_string(a.id) +
                         "'s too" +
                         (cl.local ? " (--local runs every node on 127.0.0.1: give each node "
                                     "its own port)"
                                   : "")};
        }
    }
    if (cl.key_file.empty()) {
        return Error{
            "key-file: missing (a cluster needs [cluster] key-file = PATH; make a key "
            "with: head -c 32 /dev/urandom > PATH; chmod 600 PATH)"};
    }
    return {};
}

Result<VmConfig> build(const RawMap& values, const FileValues& file) {
    VmConfig cfg;
    // Values first, in --help order, then the cluster's, then the required key, then the
    // files: a typo in --memory is reported even when --kernel is missing too.
    for (const KeyInfo& info : all_keys()) {
        auto it = values.find(info.name);
        if (it == values.end()) continue;
        Status s = apply(cfg, it->first, it->second);
        if (!s.ok()) return Error{it->second.origin.prefix() + s.error().message};
    }
    KV_TRY(build_cluster(cfg, values, file));
    // [vcpu.N], once the guest's vCPU count is known.
    for (const VcpuRaw& v : file.vcpus) {
        const std::string section = "[vcpu." + std::to_string(v.id) + "]";
        if (v.id >= cfg.vcpus)
            return Error{v.origin.prefix() + section + ": the guest has " +
                         std::to_string(cfg.vcpus) + " vCPU(s), numbered 0 to " +
                         std::to_string(cfg.vcpus - 1)};
        for (const auto& [key, value] : v.keys) {
            Result<bool> r = parse_switch(key, value.text);
            if (!r.ok()) return at(value.origin, r.error(), section);
            cfg.vcpu_migrate[v.id] = *r;
            cfg.origins["vcpu." + std::to_string(v.id) + "." + key] = value.origin;
        }
    }
    if (cfg.kernel.empty())
        return Error{"kernel: missing (give --kernel PATH, or kernel = PATH in the config file)"};
    for (auto [key, path] : {std::pair{"kernel", &cfg.kernel}, std::pair{"initrd", &cfg.initrd}}) {
        if (path->empty()) continue;
        Status s = check_input_file(key, *path);
        if (!s.ok()) return Error{cfg.where(key) + s.error().message};
    }
    if (cfg.cluster.enabled()) {
        Result<std::vector<uint8_t>> key = load_key_file(cfg.cluster.key_file);
        if (!key.ok()) return Error{cfg.where("key-file") + key.error().message};
        cfg.cluster.key = std::move(*key);
    }
    return cfg;
}

}  // namespace

unsigned Cluster::total_vcpus() const {
    unsigned n = 0;
    for (const NodeSpec& node : nodes) n += node.vcpus;
    return n;
}

uint64_t Cluster::total_memory() const {
    uint64_t n = 0;
    for (const NodeSpec& node : nodes) n += node.memory;
    return n;
}

uint32_t Cluster::vcpu_node(unsigned i) const {
    for (const NodeSpec& node : nodes) {
        if (i < node.vcpus) return node.id;
        i -= node.vcpus;
    }
    return nodes.empty() ? 0 : nodes.back().id;  // out of range: the precondition is broken
}

VcpuRange Cluster::node_vcpus(uint32_t k) const {
    VcpuRange r;
    for (uint32_t i = 0; i < k; ++i) r.first += nodes.at(i).vcpus;
    r.count = nodes.at(k).vcpus;
    return r;
}

RamRange Cluster::node_memory_range(uint32_t k) const {
    RamRange r;
    for (uint32_t i = 0; i < k; ++i) r.offset += nodes.at(i).memory;
    r.size = nodes.at(k).memory;
    return r;
}

const Origin& VmConfig::origin(std::string_view key) const {
    static const Origin kDefault;
    auto it = origins.find(key);
    return it == origins.end() ? kDefault : it->second;
}

std::string VmConfig::where(std::string_view key) const {
    return origin(key).prefix();
}

Result<ParseOutcome> parse_command_line(int argc, const char* const* argv) {
    Result<CommandLine> cl = read_command_line(argc, argv);
    if (!cl.ok()) return cl.error();
    if (cl->help) return ParseOutcome{ParseOutcome::Action::Print, {}, help_text()};
    if (cl->version) return ParseOutcome{ParseOutcome::Action::Print, {}, version_text()};

    FileValues file;
    if (auto it = cl->values.find("config"); it != cl->values.end()) {
        if (it->second.text.empty()) return Error{"config: empty path"};
        Result<FileValues> read = read_config_file(it->second.text);
        if (!read.ok()) return read.error();
        file = std::move(*read);
    }
    RawMap values = file.guest;
    for (auto& [key, raw] : cl->values) values[key] = raw;  // the command line wins

    Result<VmConfig> cfg = build(values, file);
    if (!cfg.ok()) return cfg.error();
    return ParseOutcome{ParseOutcome::Action::Run, std::move(*cfg), {}};
}

std::string_view to_string(ConsoleKind kind) {
    switch (kind) {
        case ConsoleKind::Stdio:
            return "stdio";
        case ConsoleKind::None:
            return "none";
        case ConsoleKind::File:
            return "file";
    }
    return "?";
}

std::string_view to_string(OnReboot on_reboot) {
    return on_reboot == OnReboot::Restart ? "restart" : "exit";
}

std::string_view log_level_name(LogLevel level) {
    switch (level) {
        case LogLevel::Error:
            return "error";
        case LogLevel::Warn:
            return "warning";
        case LogLevel::Info:
            return "info";
        case LogLevel::Debug:
            return "debug";
    }
    return "?";
}

}  // namespace kv::config
