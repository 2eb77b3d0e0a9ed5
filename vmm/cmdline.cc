#include "vmm/cmdline.h"

namespace kv {

std::string_view kernel_params(std::string_view cmdline) {
    if (cmdline.rfind("-- ", 0) == 0) return {};
    return cmdline.substr(0, cmdline.find(" -- "));
}

std::string add_param(const std::string& cmdline, const std::string& param) {
    std::string out(kernel_params(cmdline));
    std::string rest = cmdline.substr(out.size());
    out += (out.empty() ? "" : " ") + param;
    if (!rest.empty() && rest[0] != ' ') out += ' ';
    return out + rest;
}

bool has_param(std::string_view cmdline, std::string_view name) {
    std::string_view params = kernel_params(cmdline);
    for (size_t pos = 0; (pos = params.find(name, pos)) != std::string_view::npos; ++pos)
        if ((pos == 0 || params[pos - 1] == ' ') && params.substr(pos + name.size(), 1) == "=")
            return true;
    return false;
}

}  // namespace kv
