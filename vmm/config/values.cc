#include "vmm/config/values.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "base/units.h"

namespace kv::config {
namespace {

// x86-64 physical addresses have at most 52 bits.
constexpr uint64_t kMaxMemory = uint64_t{1} << 52;

Error bad(std::string_view key, const std::string& what) {
    return Error{std::string(key) + ": " + what};
}

std::string quoted(std::string_view text) {
    return "\"" + std::string(text) + "\"";
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace

Result<uint64_t> parse_memory(std::string_view text) {
    std::optional<uint64_t> bytes = parse_size(text);
    if (!bytes) return bad("memory", quoted(text) + " is not a size (use e.g. 512M or 2G)");
    if (*bytes < kMinMemory) {
        std::string hint = all_digits(text) ? "; a number without a suffix is bytes" : "";
        return bad("memory", std::string(text) + " is too small (at least 64M" + hint + ")");
    }
    if (*bytes > kMaxMemory)
        return bad("memory", std::string(text) + " is too large (at most 4096T)");
    // Like QEMU's -m, an odd size is rounded up rather than refused.
    return (*bytes + kMemoryAlign - 1) & ~(kMemoryAlign - 1);
}

Result<unsigned> parse_vcpus(std::string_view text) {
    if (!all_digits(text)) return bad("vcpus", quoted(text) + " is not a whole number");
    unsigned long long n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || n > kMaxVcpus) {
        return bad("vcpus",
                   std::string(text) + " is too many (at most " + std::to_string(kMaxVcpus) + ")");
    }
    if (n == 0) return bad("vcpus", "0 is too few (at least 1)");
    return static_cast<unsigned>(n);
}

Result<Console> parse_console(std::string_view text) {
    if (text == "stdio") return Console{ConsoleKind::Stdio, {}};
    if (text == "none") return Console{ConsoleKind::None, {}};
    if (text.starts_with("file:")) {
        std::string path(text.substr(5));
        if (path.empty()) return bad("console", "file: needs a path (file:PATH)");
        return Console{ConsoleKind::File, path};
    }
    return bad("console", quoted(text) + " is not one of stdio, none, file:PATH");
}

Result<OnReboot> parse_on_reboot(std::string_view text) {
    if (text == "restart") return OnReboot::Restart;
    if (text == "exit") return OnReboot::Exit;
    return bad("on-reboot", quoted(text) + " is not one of restart, exit");
}

Result<LogLevel> parse_log_level(std::string_view text) {
    if (text == "error") return LogLevel::Error;
    if (text == "warning") return LogLevel::Warn;
    if (text == "info") return LogLevel::Info;
    if (text == "debug") return LogLevel::Debug;
    return bad("log-level", quoted(text) + " is not one of error, warning, info, debug");
}

Result<bool> parse_switch(std::string_view key, std::string_view text) {
    if (text == "yes" || text == "true" || text == "on" || text == "1") return true;
    if (text == "no" || text == "false" || text == "off" || text == "0") return false;
    return bad(key, quoted(text) + " is not yes or no");
}

Status check_input_file(std::string_view key, const std::string& path) {
    // O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a regular file.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Error::from_errno(std::string(key) + ": " + path);
    struct stat st {};
    int rc = ::fstat(fd, &st);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Error::from_errno(std::string(key) + ": " + path, err);
    if (!S_ISREG(st.st_mode)) return bad(key, path + ": not a regular file");
    return {};
}

}  // namespace kv::config
