// Parsing sizes with units ("512M", "2G", "4096").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kv {

// Accepts a decimal number with an optional K/M/G/T suffix (binary multiples, an optional
// trailing 'B' or 'iB'). Returns nullopt on anything else or on overflow.
std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace kv
