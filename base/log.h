// Minimal leveled logging to stderr, thread-safe per line.
#pragma once

#include <cstdarg>

namespace kv {

enum class LogLevel { Debug, Info, Warn, Error };

void set_log_level(LogLevel level);
// Names the process in every line ("kerrvisor[node 1]: ..."); empty: "kerrvisor: ...".
void set_log_tag(const char* tag);
LogLevel log_level();
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace kv

#define KV_DEBUG(...) ::kv::logf(::kv::LogLevel::Debug, __VA_ARGS__)
#define KV_INFO(...) ::kv::logf(::kv::LogLevel::Info, __VA_ARGS__)
#define KV_WARN(...) ::kv::logf(::kv::LogLevel::Warn, __VA_ARGS__)
#define KV_ERROR(...) ::kv::logf(::kv::LogLevel::Error, __VA_ARGS__)
