// Converting one key's text to its typed value. Each error is the whole message without the
// "FILE:LINE: " prefix: "memory: \"12X\" is not a size (use e.g. 512M or 2G)".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vmm/config/config.h"

namespace kv::config {

Result<uint64_t> parse_memory(std::string_view text);
Result<unsigned> parse_vcpus(std::string_view text);
Result<Console> parse_console(std::string_view text);
Result<OnReboot> parse_on_reboot(std::string_view text);
Result<LogLevel> parse_log_level(std::string_view text);
// A whole number 1..kMaxTimeDilation.
Result<uint32_t> parse_time_dilation(std::string_view text);
// yes/no, true/false, on/off, 1/0.
Result<bool> parse_switch(std::string_view key, std::string_view text);

// Cluster values. `key` names the key in the error ("[node.1] port").
Result<uint16_t> parse_port(std::string_view key, std::string_view text);
// An IPv4 or IPv6 literal, or a host name (letters, digits, '-', dot-separated labels).
Status check_address(std::string_view key, std::string_view text);
// A whole number with a unit: 500ms, 30s, 2m; 1 ms to 1 hour.
Result<std::chrono::milliseconds> parse_duration(std::string_view key, std::string_view text);
// [cluster] heartbeat: `off` (zero) or a duration of 1s to 10m.
Result<std::chrono::milliseconds> parse_heartbeat(std::string_view text);
// 0, or a whole number with a unit: 200us, 2ms; at most kMaxPageHold.
Result<std::chrono::microseconds> parse_page_hold(std::string_view text);
Result<std::string> parse_transport(std::string_view text);
// A node number, "K" of --node K or [node.K]: a whole number below kMaxVcpus, no sign, no
// leading zero.
std::optional<uint32_t> parse_node_number(std::string_view text);
// Reads the cluster key: a regular file that only its owner can read or write, of
// kMinKeyBytes to kMaxKeyBytes bytes, used as is.
Result<std::vector<uint8_t>> load_key_file(const std::string& path);

// `path` can be opened for reading and is a regular file: "kernel: PATH: <strerror>".
Status check_input_file(std::string_view key, const std::string& path);

}  // namespace kv::config
