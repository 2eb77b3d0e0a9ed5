// What a cluster's nodes must agree on, and the transport options built from a VmConfig.
//
// The config digest is SHA-256 over digest_text(): a canonical text of everything that must
// match across nodes. It goes in every Hello (TransportOptions::config_digest) and into the
// cluster-key proof (interconnect/auth.h), so a node with a different guest or layout is
// refused at the handshake. docs/configuration.md lists what is in it and what is not.
#pragma once

#include <string>

#include "base/result.h"
#include "interconnect/transport_options.h"
#include "vmm/config/config.h"

namespace kv::config {

// The canonical text: the kernel's and initrd's SHA-256 and size (contents, not paths),
// the cmdline, the transport, and every node's id, address, port, vcpus and memory. Not in
// it: which node this is, --local, console, stats, log-level, on-reboot, connect-timeout,
// page-hold, the key file's path. Reads the kernel and initrd (errors name them: "kernel: PATH:
// ...").
Result<std::string> digest_text(const VmConfig& cfg);
Result<ConfigDigest> config_digest(const VmConfig& cfg);
// What a snapshot must be restored into (docs/snapshots.md): SHA-256 over the kernel's and
// initrd's contents, the cmdline, the time dilation and the guest's total vCPUs and memory,
// but not how they are spread over nodes, so that a snapshot restores onto another node
// count.
Result<ConfigDigest> guest_digest(const VmConfig& cfg);

// TransportOptions for node cfg.cluster.self: every node's address, the digest, the
// connect timeout, and `auth` (not owned; typically a ClusterKeyAuth made from
// cfg.cluster.key and the same digest).
TransportOptions transport_options(const VmConfig& cfg, const ConfigDigest& digest, AuthHook* auth);

}  // namespace kv::config
