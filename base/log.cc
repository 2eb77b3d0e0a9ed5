#include "base/log.h"

#include <atomic>
#include <cstdio>

namespace kv {
namespace {
std::atomic<LogLevel> g_level{LogLevel::Warn};
char g_tag[32] = "";
const char* name(LogLevel l) {
    switch (l) {
        case LogLevel::Debug:
            return "debug";
        case LogLevel::Info:
            return "info";
        case LogLevel::Warn:
            return "warning";
        case LogLevel::Error:
            return "error";
    }
    return "?";
}
}  // namespace

void set_log_level(LogLevel level) {
    g_level = level;
}
void set_log_tag(const char* tag) {
    std::snprintf(g_tag, sizeof g_tag, "%s", tag);
}
LogLevel log_level() {
    return g_level;
}

void logf(LogLevel level, const char* fmt, ...) {
    if (level < g_level.load(std::memory_order_relaxed)) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    // One fprintf per line keeps lines from different threads whole.
    std::fprintf(stderr, "kerrvisor%s: %s: %s\n", g_tag, name(level), buf);
}

}  // namespace kv
