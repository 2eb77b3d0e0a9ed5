// A line-by-line pass over an INI config file, run before Boost's config-file parser.
//
// Boost.Program_options parses the file but reports neither the line of a key nor the line
// of a syntax error. This scanner accepts exactly the grammar Boost accepts (a '#' starts a
// comment anywhere on a line; "[section]"; "key = value", both sides trimmed) and records
// the line of every section and key, in file order, so that the options Boost returns can
// be matched to their lines one for one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kv::config {

struct IniSection {
    int line;
    std::string name;  // without the brackets: "guest", "node.0"
};

struct IniEntry {
    int line;
    std::string key;    // as Boost names it: "memory", or "guest.memory" inside [guest]
    std::string value;  // trimmed
};

struct IniScan {
    std::vector<IniSection> sections;
    std::vector<IniEntry> entries;
};

// Errors are "FILE:LINE: syntax error: ...", FILE being `file` as given.
Result<IniScan> scan_ini(std::string_view text, const std::string& file);

}  // namespace kv::config
