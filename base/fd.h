// RAII owner of a file descriptor: move-only, closed in the destructor.
#pragma once

#include <unistd.h>

#include <utility>

#include "base/result.h"

namespace kv {

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset() {
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    }
    // Close and report the error (the destructor cannot).
    Status close() {
        if (fd_ < 0) return {};
        if (::close(std::exchange(fd_, -1)) != 0) return Error::from_errno("close");
        return {};
    }

    // Wraps the result of a call returning an fd or -1/errno.
    static Result<Fd> check(int fd, const char* what) {
        if (fd < 0) return Error::from_errno(what);
        return Fd(fd);
    }

  private:
    int fd_ = -1;
};

}  // namespace kv
