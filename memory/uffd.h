// RAII owner of a userfaultfd: one method per ioctl, no policy.
//
// Created with the userfaultfd(2) system call (without UFFD_USER_MODE_ONLY: faults raised
// by the kernel on behalf of KVM must be reported too), falling back to
// /dev/userfaultfd's USERFAULTFD_IOC_NEW when the system call is denied
// (vm.unprivileged_userfaultfd=0 for a process without CAP_SYS_PTRACE).
// Threading: the ioctls may be issued from any thread concurrently.
#pragma once

#include <linux/userfaultfd.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/fd.h"
#include "base/result.h"

namespace kv {

class Userfaultfd {
  public:
    // Opens a non-blocking, close-on-exec userfaultfd and negotiates UFFD_API; with
    // `thread_id`, fault messages name the faulting thread (UFFD_FEATURE_THREAD_ID).
    static Result<Userfaultfd> open(bool thread_id = false);

    int fd() const { return fd_.get(); }

    // Registers [addr, addr+len) for MISSING and WP faults; checks that COPY, ZEROPAGE,
    // WRITEPROTECT and WAKE are available on it.
    Status register_missing_wp(void* addr, size_t len);
    // Maps `len` bytes from `src` at `dst` (page-aligned), write-protected if `wp`;
    // wakes the threads blocked on the range. EEXIST: a page is already present.
    Status copy(void* dst, const void* src, size_t len, bool wp);
    // Maps the shared zero page (read-only until written: see docs/memory.md on WP).
    Status zeropage(void* dst, size_t len);
    // Sets or clears write protection; clearing wakes blocked writers.
    Status writeprotect(void* addr, size_t len, bool wp);
    Status wake(void* addr, size_t len);

    // Reads pending events (non-blocking): the number read, 0 if none is ready.
    Result<size_t> read_events(uffd_msg* out, size_t max);

  private:
    explicit Userfaultfd(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
};

}  // namespace kv
