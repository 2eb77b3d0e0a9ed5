#include "vmm/config/ini_scan.h"

#include <cctype>

namespace kv::config {
namespace {

std::string_view trim(std::string_view s) {
    const char* ws = " \t\r\n";
    size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    size_t e = s.find_last_not_of(ws);
    return s.substr(b, e - b + 1);
}

// Section names are dot-separated words: "guest", "node.0". Stricter than Boost, which
// takes anything between the brackets, so that a typo is an error rather than a section.
bool valid_section_name(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (char c : s) {
        bool word = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
        if (!word && !(c == '.' && prev != '.')) return false;
        prev = c;
    }
    return true;
}

Error syntax_error(const std::string& file, int line, const std::string& what) {
    return Error{file + ":" + std::to_string(line) + ": syntax error: " + what};
}

}  // namespace

Result<IniScan> scan_ini(std::string_view text, const std::string& file) {
    IniScan scan;
    std::string prefix;
    int line_no = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view raw = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++line_no;

        std::string_view s = trim(raw.substr(0, raw.find('#')));
        if (s.empty()) continue;
        if (s.front() == '[' && s.back() == ']') {
            std::string_view name = s.substr(1, s.size() - 2);
            if (!valid_section_name(name))
                return syntax_error(file, line_no, "bad section name \"" + std::string(s) + "\"");
            scan.sections.push_back({line_no, std::string(name)});
            prefix = std::string(name) + ".";
            continue;
        }
        size_t eq = s.find('=');
        if (eq == std::string_view::npos) {
            return syntax_error(
                file, line_no,
                "expected \"key = value\" or \"[section]\", got \"" + std::string(s) + "\"");
        }
        std::string_view key = trim(s.substr(0, eq));
        if (key.empty()) return syntax_error(file, line_no, "no key before '='");
        scan.entries.push_back(
            {line_no, prefix + std::string(key), std::string(trim(s.substr(eq + 1)))});
    }
    return scan;
}

}  // namespace kv::config
