// The table of vmm-launch's keys: one entry per option, from which the Boost option
// descriptions for the command line and the config file, and --help, are all made, so that
// the three cannot disagree.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <span>
#include <string>
#include <string_view>

namespace kv::config {

struct KeyInfo {
    std::string_view name;      // "memory": --memory on the command line, memory = in a file
    std::string_view arg;       // placeholder in --help ("SIZE"); empty: takes no value
    std::string_view fallback;  // default as --help shows it; empty: no default
    std::string_view help;      // one sentence or two, for --help
    bool in_file;               // may be set in a config file
    bool optional_value;        // "--stats" alone means "--stats=yes"
};

std::span<const KeyInfo> all_keys();
// nullptr if `name` is not a key.
const KeyInfo* find_key(std::string_view name);

// The section a config file may keep guest keys in, besides the top level.
inline constexpr std::string_view kGuestSection = "guest";

// Every key, for command_line_parser. Values are kept as strings: converting them is ours,
// so that every error message names its key the same way.
boost::program_options::options_description command_line_options();
// The keys allowed in a config file, each both as "KEY" and as "guest.KEY".
boost::program_options::options_description file_options();

std::string help_text();
std::string version_text();

}  // namespace kv::config
