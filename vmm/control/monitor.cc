#include "vmm/control/monitor.h"

#include "vmm/control/cli.h"
#include "vmm/control/render.h"

namespace kv::control {
namespace {
constexpr const char* kPrompt = "(kv) ";
}

std::string Monitor::enter() {
    line_.clear();
    esc_ = 0;
    after_cr_ = false;
    return std::string(
               "\nKerrvisor monitor: \"help\" lists the commands; Ctrl-A c returns to "
               "the guest\n") +
           kPrompt;
}

std::string Monitor::leave() {
    line_.clear();
    return "\n";
}

std::string Monitor::feed(std::span<const uint8_t> in) {
    std::string out;
    for (uint8_t b : in) {
        const bool cr = after_cr_;
        after_cr_ = false;
        if (esc_ == 1) {  // ESC: a CSI sequence follows '[', any other byte ends it
            esc_ = b == '[' ? 2 : 0;
            continue;
        }
        if (esc_ == 2) {  // CSI: parameter bytes until a final byte 0x40..0x7e
            if (b >= 0x40 && b <= 0x7e) esc_ = 0;
            continue;
        }
        switch (b) {
            case 0x1b:
                esc_ = 1;
                break;
            case '\r':
            case '\n':
                if (b == '\n' && cr) break;
                after_cr_ = b == '\r';
                out += "\n" + run_line(line_) + kPrompt;
                line_.clear();
                break;
            case 0x7f:  // DEL, what Backspace sends
            case 0x08:
                if (!line_.empty()) {
                    line_.pop_back();
                    out += "\b \b";
                }
                break;
            case 0x15:  // Ctrl-U
                for (size_t i = 0; i < line_.size(); ++i) out += "\b \b";
                line_.clear();
                break;
            case 0x03:  // Ctrl-C
                out += "^C\n";
                out += kPrompt;
                line_.clear();
                break;
            default:
                if (b >= 0x20 && b < 0x7f && line_.size() < kMaxLine) {
                    line_.push_back(char(b));
                    out.push_back(char(b));
                } else {
                    out.push_back('\a');
                }
        }
    }
    return out;
}

std::string Monitor::run_line(const std::string& line) const {
    auto words = split_words(line);
    if (words.empty() || words[0][0] == '#') return "";
    if (words[0] == "help") {
        std::string out = "commands (COMMAND [KEY=VALUE ...], as in kvctl):\n";
        for (const auto& name : table_.names()) {
            std::string alias = alias_of(name);
            const auto* c = table_.find(name);
            out += "  " + name + (alias.empty() ? "" : " (" + alias + ")");
            if (c && !c->help.empty()) out += ": " + c->help;
            out += "\n";
        }
        return out + "  Ctrl-A c: back to the guest; Ctrl-A x: quit\n";
    }
    if (words[0] == "top" || words[0] == "events")
        return "error: " + words[0] + " is kvctl's (kvctl --socket PATH " + words[0] + ")\n";
    auto req = parse_command(words);
    if (auto* why = std::get_if<std::string>(&req)) return "error: " + *why + "\n";
    const Request& r = std::get<Request>(req);
    if (!table_.find(r.cmd)) return "error: unknown command '" + r.cmd + "' (help lists them)\n";
    Reply reply = table_.call(r.cmd, r.args);
    if (auto* e = std::get_if<CommandError>(&reply)) return "error: " + e->desc + "\n";
    return render(std::get<Json>(reply));
}

}  // namespace kv::control
