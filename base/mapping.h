// RAII owner of an mmap()ed region: move-only, unmapped in the destructor.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "base/result.h"

namespace kv {

class Mapping {
  public:
    Mapping() = default;
    ~Mapping() { reset(); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    Mapping(Mapping&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
    Mapping& operator=(Mapping&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            len_ = std::exchange(o.len_, 0);
        }
        return *this;
    }

    // Private anonymous memory, not reserved against swap (guest RAM).
    static Result<Mapping> anonymous(size_t len, int extra_flags = MAP_NORESERVE) {
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
        if (p == MAP_FAILED) return Error::from_errno("mmap anonymous");
        return Mapping(p, len);
    }
    // A shared mapping of a file descriptor (e.g. the kvm_run page).
    static Result<Mapping> shared(int fd, size_t len, off_t off = 0) {
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
        if (p == MAP_FAILED) return Error::from_errno("mmap shared");
        return Mapping(p, len);
    }

    uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
    size_t size() const { return len_; }
    bool valid() const { return addr_ != nullptr; }
    template <class T>
    T* as() const {
        return static_cast<T*>(addr_);
    }
    void reset() {
        if (addr_) ::munmap(std::exchange(addr_, nullptr), std::exchange(len_, 0));
    }

  private:
    Mapping(void* a, size_t l) : addr_(a), len_(l) {}
    void* addr_ = nullptr;
    size_t len_ = 0;
};

}  // namespace kv
