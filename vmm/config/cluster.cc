#include "vmm/config/cluster.h"

#include <sys/stat.h>

#include "interconnect/auth.h"

namespace kv::config {
namespace {

// "kernel sha256=<hex> size=<bytes>" for one input file.
Result<std::string> file_line(std::string_view key, const std::string& path) {
    std::string line(key);
    if (path.empty()) return line + " none\n";
    Result<Sha256Digest> d = sha256_file(path, key);
    if (!d.ok()) return d.error();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Error::from_errno(std::string(key) + ": " + path);
    return line + " sha256=" + to_hex(*d) + " size=" + std::to_string(st.st_size) + "\n";
}

}  // namespace

Result<std::string> digest_text(const VmConfig& cfg) {
    std::string out = "kerrvisor config digest v1\n";
    for (auto [key, path] : {std::pair{"kernel", &cfg.kernel}, std::pair{"initrd", &cfg.initrd}}) {
        Result<std::string> line = file_line(key, *path);
        if (!line.ok()) return line.error();
        out += *line;
    }
    // Length-prefixed: the cmdline is free text.
    out += "cmdline " + std::to_string(cfg.cmdline.size()) + " " + cfg.cmdline + "\n";
    out += "transport " + cfg.cluster.transport + "\n";
    if (cfg.time_dilation != 1) out += "time-dilation " + std::to_string(cfg.time_dilation) + "\n";
    out += "nodes " + std::to_string(cfg.cluster.nodes.size()) + "\n";
    for (const NodeSpec& n : cfg.cluster.nodes) {
        out += "node " + std::to_string(n.id) + " address " + n.address + " port " +
               std::to_string(n.port) + " vcpus " + std::to_string(n.vcpus) + " memory " +
               std::to_string(n.memory) + "\n";
    }
    return out;
}

Result<ConfigDigest> config_digest(const VmConfig& cfg) {
    Result<std::string> text = digest_text(cfg);
    if (!text.ok()) return text.error();
    Result<Sha256Digest> d =
        sha256(std::span(reinterpret_cast<const uint8_t*>(text->data()), text->size()));
    if (!d.ok()) return d.error();
    return *d;
}

Result<ConfigDigest> guest_digest(const VmConfig& cfg) {
    std::string text = "kerrvisor guest digest v1\n";
    for (auto [key, path] : {std::pair{"kernel", &cfg.kernel}, std::pair{"initrd", &cfg.initrd}}) {
        Result<std::string> line = file_line(key, *path);
        if (!line.ok()) return line.error();
        text += *line;
    }
    text += "cmdline " + std::to_string(cfg.cmdline.size()) + " " + cfg.cmdline + "\n";
    text += "time-dilation " + std::to_string(cfg.time_dilation) + "\n";
    const unsigned vcpus = cfg.cluster.enabled() ? cfg.cluster.total_vcpus() : cfg.vcpus;
    const uint64_t memory = cfg.cluster.enabled() ? cfg.cluster.total_memory() : cfg.memory;
    text += "vcpus " + std::to_string(vcpus) + " memory " + std::to_string(memory) + "\n";
    Result<Sha256Digest> d =
        sha256(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!d.ok()) return d.error();
    return *d;
}

TransportOptions transport_options(const VmConfig& cfg, const ConfigDigest& digest,
                                   AuthHook* auth) {
    TransportOptions o;
    o.self = cfg.cluster.self;
    for (const NodeSpec& n : cfg.cluster.nodes) o.nodes.push_back({n.id, n.address, n.port});
    o.config_digest = digest;
    o.connect_timeout = cfg.cluster.connect_timeout;
    o.heartbeat = cfg.cluster.heartbeat;
    o.auth = auth;
    return o;
}

}  // namespace kv::config
