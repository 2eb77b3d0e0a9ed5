// The kernel command line the VMM builds on the user's: parameters it adds go before
// " -- ", since Linux passes everything after it to init.
#pragma once

#include <string>
#include <string_view>

namespace kv {

// The kernel's own parameters: everything before " -- ".
std::string_view kernel_params(std::string_view cmdline);
// Adds a kernel parameter where the kernel reads it: before " -- ".
std::string add_param(const std::string& cmdline, const std::string& param);
// Whether the kernel's parameters set `name` (as name=...).
bool has_param(std::string_view cmdline, std::string_view name);

}  // namespace kv
