#include "base/units.h"

#include <cctype>

namespace kv {

std::optional<uint64_t> parse_size(std::string_view s) {
    size_t i = 0;
    uint64_t v = 0;
    if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return std::nullopt;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        uint64_t d = uint64_t(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return std::nullopt;
        v = v * 10 + d;
        ++i;
    }
    std::string_view rest = s.substr(i);
    unsigned shift = 0;
    if (!rest.empty()) {
        switch (std::toupper(static_cast<unsigned char>(rest[0]))) {
            case 'K':
                shift = 10;
                break;
            case 'M':
                shift = 20;
                break;
            case 'G':
                shift = 30;
                break;
            case 'T':
                shift = 40;
                break;
            case 'B':
                shift = 0;
                break;
            default:
                return std::nullopt;
        }
        rest.remove_prefix(1);
        if (shift && (rest == "B" || rest == "iB" || rest == "ib")) rest = {};
        if (!rest.empty()) return std::nullopt;
    }
    if (shift && v > (UINT64_MAX >> shift)) return std::nullopt;
    return v << shift;
}

}  // namespace kv
