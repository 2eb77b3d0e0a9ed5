#include "vmm/control/render.h"

#include <algorithm>
#include <vector>

namespace kv::control {
namespace {

std::string cell(const Json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return "-";
    return v.dump();
}

bool is_table(const Json& v) {
    return v.is_array() && !v.empty() &&
           std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_object(); });
}

std::string table(const Json& rows) {
    std::vector<std::string> cols;
    for (const auto& r : rows)
        for (const auto& [k, x] : r.items())
            if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
    std::vector<size_t> width;
    for (const auto& c : cols) width.push_back(c.size());
    for (const auto& r : rows)
        for (size_t i = 0; i < cols.size(); ++i)
            width[i] = std::max(width[i], cell(r.value(cols[i], Json())).size());
    std::string out;
    auto line = [&](auto get) {
        std::string l;
        for (size_t i = 0; i < cols.size(); ++i) {
            std::string s = get(i);
            l += s;
            if (i + 1 < cols.size()) l += std::string(width[i] - s.size() + 2, ' ');
        }
        out += l + "\n";
    };
    line([&](size_t i) { return cols[i]; });
    for (const auto& r : rows) line([&](size_t i) { return cell(r.value(cols[i], Json())); });
    return out;
}

}  // namespace

std::string render(const Json& v) {
    if ((v.is_object() || v.is_array()) && v.empty()) return "";
    if (is_table(v)) return table(v);
    if (v.is_object()) {
        std::string out, tables;
        for (const auto& [k, x] : v.items()) {
            if (is_table(x))
                tables += "\n" + k + ":\n" + table(x);
            else
                out += k + ": " + cell(x) + "\n";
        }
        return out + tables;
    }
    return cell(v) + "\n";
}

}  // namespace kv::control
