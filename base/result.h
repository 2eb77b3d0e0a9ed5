// Kerrvisor error style (docs/errors.md): fallible operations return Result<T> or Status.
// An Error carries one line naming what was wrong (the option, config line, message type or
// syscall) so that it can be printed as-is. Exceptions are not used for control flow.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace kv {

// What a caller may branch on; most errors are Generic and are only reported.
enum class ErrorCode : uint8_t {
    Generic = 0,
    Timeout,   // a peer or a vCPU did not answer in time
    PeerLost,  // the node that had to answer is gone
    Refused,   // the request was understood and refused (wrong state, not allowed)
};

struct Error {
    std::string message;
    ErrorCode code = ErrorCode::Generic;

    // "what: strerror(errno)" — for failed system calls.
    static Error from_errno(const std::string& what, int err = errno) {
        return Error{what + ": " + std::strerror(err)};
    }
};

template <class T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
    Result(Error e) : v_(std::move(e)) {}      // NOLINT

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
  public:
    Status() = default;
    Status(Error e) : err_(std::move(e)), failed_(true) {}  // NOLINT

    static Status ok_status() { return Status(); }
    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const Error& error() const { return err_; }

  private:
    Error err_;
    bool failed_ = false;
};

}  // namespace kv

// Propagate an error from a Status or Result expression.
#define KV_TRY(expr)                                   \
    do {                                               \
        auto kv_try_r_ = (expr);                       \
        if (!kv_try_r_.ok()) return kv_try_r_.error(); \
    } while (0)
