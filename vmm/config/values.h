// Converting one key's text to its typed value. Each error is the whole message without the
// "FILE:LINE: " prefix: "memory: \"12X\" is not a size (use e.g. 512M or 2G)".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "vmm/config/config.h"

namespace kv::config {

Result<uint64_t> parse_memory(std::string_view text);
Result<unsigned> parse_vcpus(std::string_view text);
Result<Console> parse_console(std::string_view text);
Result<OnReboot> parse_on_reboot(std::string_view text);
Result<LogLevel> parse_log_level(std::string_view text);
// yes/no, true/false, on/off, 1/0.
Result<bool> parse_switch(std::string_view key, std::string_view text);

// `path` can be opened for reading and is a regular file: "kernel: PATH: <strerror>".
Status check_input_file(std::string_view key, const std::string& path);

}  // namespace kv::config
