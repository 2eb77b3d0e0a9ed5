#include "vmm/config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options/parsers.hpp>
#include <filesystem>
#include <sstream>

#include "vmm/config/ini_scan.h"
#include "vmm/config/keys.h"
#include "vmm/config/values.h"

namespace po = boost::program_options;

namespace kv::config {
namespace {

constexpr size_t kMaxConfigFile = size_t{1} << 20;

// A key's text before conversion, and where it was given.
struct Raw {
    std::string text;
    Origin origin;
};
using RawMap = std::map<std::string, Raw, std::less<>>;

std::string without_guest_section(std::string_view key) {
    std::string prefix = std::string(kGuestSection) + ".";
    if (key.starts_with(prefix)) key.remove_prefix(prefix.size());
    return std::string(key);
}

std::string option_key(std::string name) {
    while (name.starts_with("-")) name.erase(0, 1);
    return name;
}

// Boost's own syntax errors, reworded to name the key like every other error.
Error from_boost(const po::error& e) {
    if (auto* syn = dynamic_cast<const po::invalid_command_line_syntax*>(&e)) {
        std::string key = option_key(syn->get_option_name());
        switch (syn->kind()) {
            case po::invalid_syntax::missing_parameter:
                return Error{key + ": missing value (--" + key + " VALUE)"};
            case po::invalid_syntax::empty_adjacent_parameter:
                return Error{key + ": nothing after '=' (write --" + key +
                             " \"\" for an empty value)"};
            case po::invalid_syntax::extra_parameter:
                return Error{key + ": takes no value"};
            default:
                break;
        }
    }
    return Error{e.what()};
}

struct CommandLine {
    RawMap values;
    bool help = false;
    bool version = false;
};

Result<CommandLine> read_command_line(int argc, const char* const* argv) {
    CommandLine cl;
    po::parsed_options parsed(nullptr);
    try {
        parsed =
            po::command_line_parser(argc, argv)
                .options(command_line_options())
                .style(po::command_line_style::unix_style & ~po::command_line_style::allow_guessing)
                .allow_unregistered()
                .run();
    } catch (const po::error& e) {
        return from_boost(e);
    }
    for (const po::option& opt : parsed.options) {
        if (opt.string_key.empty() || opt.position_key >= 0) {
            std::string arg = opt.value.empty() ? "" : opt.value.front();
            return Error{"unexpected argument \"" + arg + "\" (options are --key VALUE)"};
        }
        if (opt.unregistered) {
            std::string token =
                opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
            return Error{"unknown option " + token.substr(0, token.find('='))};
        }
        if (opt.string_key == "help") {
            cl.help = true;
        } else if (opt.string_key == "version") {
            cl.version = true;
        } else {
            // An option given twice: the last one wins, so that a wrapper script can append
            // overrides to a command line.
            std::string text = opt.value.empty() ? "yes" : opt.value.front();
            cl.values[opt.string_key] = Raw{text, Origin::command_line()};
        }
    }
    return cl;
}

Result<std::string> read_text_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Error::from_errno("config: " + path);
    std::string text;
    struct stat st {};
    Status status;
    if (::fstat(fd, &st) != 0) {
        status = Error::from_errno("config: " + path);
    } else if (!S_ISREG(st.st_mode)) {
        status = Error{"config: " + path + ": not a regular file"};
    } else if (static_cast<size_t>(st.st_size) > kMaxConfigFile) {
        status = Error{"config: " + path + ": larger than 1 MiB"};
    } else {
        text.resize(static_cast<size_t>(st.st_size));
        size_t done = 0;
        while (done < text.size()) {
            ssize_t n = ::read(fd, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                status = Error::from_errno("config: " + path);
                break;
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        text.resize(done);
    }
    ::close(fd);
    if (!status.ok()) return status.error();
    return text;
}

Result<RawMap> read_config_file(const std::string& path) {
    Result<std::string> text = read_text_file(path);
    if (!text.ok()) return text.error();
    Result<IniScan> scan = scan_ini(*text, path);
    if (!scan.ok()) return scan.error();
    for (const IniSection& s : scan->sections) {
        if (s.name != kGuestSection) {
            return Error{Origin::in_file(path, s.line).prefix() + "unknown section [" + s.name +
                         "] (this version knows only [guest])"};
        }
    }

    po::parsed_options parsed(nullptr);
    try {
        std::istringstream in(*text);
        parsed = po::parse_config_file(in, file_options(), /*allow_unregistered=*/true);
    } catch (const po::error& e) {
        return Error{path + ": " + e.what()};
    }
    // The scanner accepts exactly what Boost accepts, so the two lists match one for one;
    // the scanner's gives each option its line.
    if (parsed.options.size() != scan->entries.size())
        return Error{path + ": internal error: config scanner and parser disagree"};

    RawMap values;
    for (size_t i = 0; i < parsed.options.size(); ++i) {
        const po::option& opt = parsed.options[i];
        const IniEntry& entry = scan->entries[i];
        if (opt.string_key != entry.key)
            return Error{path + ": internal error: config scanner and parser disagree"};
        Origin origin = Origin::in_file(path, entry.line);
        std::string key = without_guest_section(opt.string_key);
        if (opt.unregistered) {
            const KeyInfo* info = find_key(key);
            if (info && !info->in_file)
                return Error{origin.prefix() + key + ": only allowed on the command line"};
            return Error{origin.prefix() + "unknown key \"" + key + "\""};
        }
        // A key given twice in one file is refused: which one was meant is a guess.
        if (auto it = values.find(key); it != values.end()) {
            return Error{origin.prefix() + key + ": given twice (first at line " +
                         std::to_string(it->second.origin.line) + ")"};
        }
        values[key] = Raw{opt.value.empty() ? "" : opt.value.front(), origin};
    }
    return values;
}

// A relative path in a config file is relative to the file's folder; on the command line,
// to the current directory.
std::string resolve_path(const std::string& path, const Origin& origin) {
    if (origin.kind != Origin::Kind::File || path.empty() || path.front() == '/') return path;
    return (std::filesystem::path(origin.file).parent_path() / path).string();
}

// Converts one key's text into `cfg`. The error has no "FILE:LINE: " prefix yet.
Status apply(VmConfig& cfg, const std::string& key, const Raw& raw) {
    const std::string& text = raw.text;
    if (key == "kernel") {
        if (text.empty()) return Error{"kernel: empty path"};
        cfg.kernel = resolve_path(text, raw.origin);
    } else if (key == "initrd") {
        cfg.initrd = resolve_path(text, raw.origin);
    } else if (key == "cmdline") {
        cfg.cmdline = text;
    } else if (key == "memory") {
        Result<uint64_t> r = parse_memory(text);
        if (!r.ok()) return r.error();
        cfg.memory = *r;
    } else if (key == "vcpus") {
        Result<unsigned> r = parse_vcpus(text);
        if (!r.ok()) return r.error();
        cfg.vcpus = *r;
    } else if (key == "console") {
        Result<Console> r = parse_console(text);
        if (!r.ok()) return r.error();
        cfg.console = *r;
        cfg.console.path = resolve_path(cfg.console.path, raw.origin);
    } else if (key == "on-reboot") {
        Result<OnReboot> r = parse_on_reboot(text);
        if (!r.ok()) return r.error();
        cfg.on_reboot = *r;
    } else if (key == "stats") {
        Result<bool> r = parse_switch("stats", text);
        if (!r.ok()) return r.error();
        cfg.stats = *r;
    } else if (key == "log-level") {
        Result<LogLevel> r = parse_log_level(text);
        if (!r.ok()) return r.error();
        cfg.log_level = *r;
    } else if (key == "config") {
        cfg.config_file = text;
    }
    cfg.origins[key] = raw.origin;
    return {};
}

Result<VmConfig> build(const RawMap& values) {
    VmConfig cfg;
    // Values first, in --help order, then the required key, then the files: a typo in
    // --memory is reported even when --kernel is missing too.
    for (const KeyInfo& info : all_keys()) {
        auto it = values.find(info.name);
        if (it == values.end()) continue;
        Status s = apply(cfg, it->first, it->second);
        if (!s.ok()) return Error{it->second.origin.prefix() + s.error().message};
    }
    if (cfg.kernel.empty())
        return Error{"kernel: missing (give --kernel PATH, or kernel = PATH in the config file)"};
    for (auto [key, path] : {std::pair{"kernel", &cfg.kernel}, std::pair{"initrd", &cfg.initrd}}) {
        if (path->empty()) continue;
        Status s = check_input_file(key, *path);
        if (!s.ok()) return Error{cfg.where(key) + s.error().message};
    }
    return cfg;
}

}  // namespace

const Origin& VmConfig::origin(std::string_view key) const {
    static const Origin kDefault;
    auto it = origins.find(key);
    return it == origins.end() ? kDefault : it->second;
}

std::string VmConfig::where(std::string_view key) const {
    return origin(key).prefix();
}

Result<ParseOutcome> parse_command_line(int argc, const char* const* argv) {
    Result<CommandLine> cl = read_command_line(argc, argv);
    if (!cl.ok()) return cl.error();
    if (cl->help) return ParseOutcome{ParseOutcome::Action::Print, {}, help_text()};
    if (cl->version) return ParseOutcome{ParseOutcome::Action::Print, {}, version_text()};

    RawMap values;
    if (auto it = cl->values.find("config"); it != cl->values.end()) {
        if (it->second.text.empty()) return Error{"config: empty path"};
        Result<RawMap> file = read_config_file(it->second.text);
        if (!file.ok()) return file.error();
        values = std::move(*file);
    }
    for (auto& [key, raw] : cl->values) values[key] = raw;  // the command line wins

    Result<VmConfig> cfg = build(values);
    if (!cfg.ok()) return cfg.error();
    return ParseOutcome{ParseOutcome::Action::Run, std::move(*cfg), {}};
}

std::string_view to_string(ConsoleKind kind) {
    switch (kind) {
        case ConsoleKind::Stdio:
            return "stdio";
        case ConsoleKind::None:
            return "none";
        case ConsoleKind::File:
            return "file";
    }
    return "?";
}

std::string_view to_string(OnReboot on_reboot) {
    return on_reboot == OnReboot::Restart ? "restart" : "exit";
}

std::string_view log_level_name(LogLevel level) {
    switch (level) {
        case LogLevel::Error:
            return "error";
        case LogLevel::Warn:
            return "warning";
        case LogLevel::Info:
            return "info";
        case LogLevel::Debug:
            return "debug";
    }
    return "?";
}

}  // namespace kv::config
