#include "vmm/config/values.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <climits>
#include <cstdio>
#include <optional>

#include "base/units.h"
#include "interconnect/transport_options.h"

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

// A whole number written in decimal digits only (no sign, no spaces); ULLONG_MAX when it
// is too big for that, so any upper bound refuses it. Nothing if `s` is not digits.
std::optional<unsigned long long> whole_number(std::string_view s) {
    if (!all_digits(s)) return std::nullopt;
    unsigned long long n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return ec == std::errc{} ? n : ULLONG_MAX;
}

// A whole number followed by one of `units` (name, scale), e.g. "500ms": the number times
// the unit's scale (ULLONG_MAX when that overflows, so any upper bound refuses it). Nothing
// without digits or with another unit; `unitless` tells a caller that digits alone came.
struct Unit {
    std::string_view name;
    unsigned long long scale;
};
template <size_t N>
std::optional<unsigned long long> number_with_unit(std::string_view text,
                                                   const std::array<Unit, N>& units,
                                                   bool& unitless) {
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    unitless = digits > 0 && digits == text.size();
    std::optional<unsigned long long> n = whole_number(text.substr(0, digits));
    if (!n) return std::nullopt;
    for (const Unit& u : units)
        if (text.substr(digits) == u.name)
            return *n > ULLONG_MAX / u.scale ? ULLONG_MAX : *n * u.scale;
    return std::nullopt;
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

Result<uint32_t> parse_time_dilation(std::string_view text) {
    constexpr std::string_view key = "time-dilation";
    std::optional<unsigned long long> n = whole_number(text);
    if (!n) return bad(key, quoted(text) + " is not a whole number");
    if (*n == 0 || *n > kMaxTimeDilation) {
        return bad(key, std::string(text) + " is out of range (1 to " +
                            std::to_string(kMaxTimeDilation) + ")");
    }
    return static_cast<uint32_t>(*n);
}

Result<unsigned> parse_vcpus(std::string_view text) {
    std::optional<unsigned long long> n = whole_number(text);
    if (!n) return bad("vcpus", quoted(text) + " is not a whole number");
    if (*n > kMaxVcpus) {
        return bad("vcpus",
                   std::string(text) + " is too many (at most " + std::to_string(kMaxVcpus) + ")");
    }
    if (*n == 0) return bad("vcpus", "0 is too few (at least 1)");
    return static_cast<unsigned>(*n);
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

Result<uint16_t> parse_port(std::string_view key, std::string_view text) {
    std::optional<unsigned long long> n = whole_number(text);
    if (!n || *n < 1 || *n > 65535)
        return bad(key, quoted(text) + " is not a port number (1 to 65535)");
    return static_cast<uint16_t>(*n);
}

Status check_address(std::string_view key, std::string_view text) {
    std::string s(text);
    in_addr a4{};
    in6_addr a6{};
    if (::inet_pton(AF_INET, s.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, s.c_str(), &a6) == 1)
        return {};
    // A host name (RFC 1123): labels of letters, digits and '-', not starting or ending
    // with '-', 1 to 63 characters, 253 in all. All-digit names would be mistyped IPv4.
    bool ok = !s.empty() && s.size() <= 253 && s.find_first_not_of("0123456789.") != s.npos;
    size_t label = 0;
    char prev = '.';
    for (char c : s) {
        if (!ok) break;
        const bool alnum =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (c == '.') {
            ok = label > 0 && prev != '-';
            label = 0;
        } else if (alnum || c == '-') {
            ok = !(c == '-' && label == 0) && ++label <= 63;
        } else {
            ok = false;
        }
        prev = c;
    }
    ok = ok && prev != '-' && prev != '.';
    if (!ok) return bad(key, quoted(text) + " is not an IPv4 or IPv6 address or a host name");
    return {};
}

Result<std::chrono::milliseconds> parse_duration(std::string_view key, std::string_view text) {
    constexpr std::array<Unit, 3> units{{{"ms", 1}, {"s", 1000}, {"m", 60000}}};
    bool unitless = false;
    std::optional<unsigned long long> ms = number_with_unit(text, units, unitless);
    if (!ms) {
        std::string hint = unitless ? " (a unit is required)" : "";
        return bad(key, quoted(text) + " is not a duration (use e.g. 30s, 500ms or 2m)" + hint);
    }
    if (*ms == 0) return bad(key, std::string(text) + " is too short (at least 1ms)");
    if (*ms > 3600000) return bad(key, std::string(text) + " is too long (at most 60m)");
    return std::chrono::milliseconds(*ms);
}

Result<std::chrono::milliseconds> parse_heartbeat(std::string_view text) {
    constexpr std::string_view key = "heartbeat";
    if (text == "off") return std::chrono::milliseconds(0);
    Result<std::chrono::milliseconds> r = parse_duration(key, text);
    if (!r.ok()) return r.error();
    // A deadline of fewer than 4 idle times would drop live peers.
    static_assert(4 * kHeartbeatIdle == std::chrono::seconds(1));
    if (*r < 4 * kHeartbeatIdle)
        return bad(key, std::string(text) + " is too short (at least 1s, or off)");
    if (*r > std::chrono::minutes(10))
        return bad(key, std::string(text) + " is too long (at most 10m, or off)");
    return *r;
}

Result<std::chrono::microseconds> parse_page_hold(std::string_view text) {
    constexpr std::string_view key = "page-hold";
    if (text == "0") return std::chrono::microseconds(0);
    constexpr std::array<Unit, 2> units{{{"us", 1}, {"ms", 1000}}};
    bool unitless = false;
    std::optional<unsigned long long> us = number_with_unit(text, units, unitless);
    if (!us) {
        std::string hint = unitless ? " (a unit is required)" : "";
        return bad(key, quoted(text) + " is not a hold time (use e.g. 0, 200us or 2ms)" + hint);
    }
    if (*us > static_cast<unsigned long long>(kMaxPageHold.count()))
        return bad(key, std::string(text) + " is too long (at most 100ms)");
    return std::chrono::microseconds(*us);
}

Result<std::string> parse_transport(std::string_view text) {
    if (text == "tcp") return std::string(text);
    return bad("transport", quoted(text) + " is not one of tcp");
}

std::optional<uint32_t> parse_node_number(std::string_view text) {
    if (!all_digits(text) || (text.size() > 1 && text.front() == '0') || text.size() > 3)
        return std::nullopt;
    unsigned n = 0;
    std::from_chars(text.data(), text.data() + text.size(), n);
    if (n >= kMaxVcpus) return std::nullopt;
    return n;
}

Result<std::vector<uint8_t>> load_key_file(const std::string& path) {
    const std::string key = "key-file";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Error::from_errno(key + ": " + path);
    std::vector<uint8_t> bytes;
    Status status;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        status = Error::from_errno(key + ": " + path);
    } else if (!S_ISREG(st.st_mode)) {
        status = bad(key, path + ": not a regular file");
    } else if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        const char* what = (st.st_mode & 044)   ? "readable"
                           : (st.st_mode & 022) ? "writable"
                                                : "usable";
        status = bad(key, path + " is " + what + " by others (mode " + mode + "; chmod 600 it)");
    } else if (static_cast<uint64_t>(st.st_size) > kMaxKeyBytes) {
        status = bad(key, path + " is larger than " + std::to_string(kMaxKeyBytes) + " bytes");
    } else {
        bytes.resize(static_cast<size_t>(st.st_size));
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                status = Error::from_errno(key + ": " + path);
                break;
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        bytes.resize(done);
        if (status.ok() && bytes.size() < kMinKeyBytes) {
            status = bad(key, path + " holds " + std::to_string(bytes.size()) +
                                  " bytes, too short for a key (at least " +
                                  std::to_string(kMinKeyBytes) +
                                  "; make one with: head -c 32 /dev/urandom > " + path + ")");
        }
    }
    ::close(fd);
    if (!status.ok()) return status.error();
    return bytes;
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
