#include "memory/uffd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace kv {

namespace {

Result<Fd> open_raw() {
    // The system call first: no device node needed.
    int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (fd >= 0) return Fd(fd);
    if (errno != EPERM && errno != ENOSYS) return Error::from_errno("userfaultfd");
    // Denied: /dev/userfaultfd hands out the same object subject to the file's mode.
    auto dev = Fd::check(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), "open /dev/userfaultfd");
    if (!dev) return dev.error();
    fd = ::ioctl(dev->get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    return Fd::check(fd, "USERFAULTFD_IOC_NEW");
}

// ioctl with EINTR retried; EAGAIN is returned (the caller retries the remaining range).
int xioctl(int fd, unsigned long req, void* arg) {
    int r;
    do r = ::ioctl(fd, req, arg);
    while (r != 0 && errno == EINTR);
    return r;
}

}  // namespace

Result<Userfaultfd> Userfaultfd::open(bool thread_id) {
    auto fd = open_raw();
    if (!fd) return fd.error();
    uffdio_api api{};
    api.api = UFFD_API;
    // MISSING and WP on anonymous memory need no optional feature.
    api.features = thread_id ? UFFD_FEATURE_THREAD_ID : 0;
    if (xioctl(fd->get(), UFFDIO_API, &api) != 0) return Error::from_errno("UFFDIO_API");
    return Userfaultfd(std::move(fd).value());
}

Status Userfaultfd::register_missing_wp(void* addr, size_t len) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uint64_t>(addr);
    reg.range.len = len;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
    if (xioctl(fd(), UFFDIO_REGISTER, &reg) != 0)
        return Error::from_errno("UFFDIO_REGISTER (MISSING|WP)");
    const uint64_t need = (uint64_t{1} << _UFFDIO_COPY) | (uint64_t{1} << _UFFDIO_ZEROPAGE) |
                          (uint64_t{1} << _UFFDIO_WRITEPROTECT) | (uint64_t{1} << _UFFDIO_WAKE);
    if ((reg.ioctls & need) != need)
        return Error{"UFFDIO_REGISTER: the kernel lacks COPY/ZEROPAGE/WRITEPROTECT/WAKE here"};
    return {};
}

Status Userfaultfd::copy(void* dst, const void* src, size_t len, bool wp) {
    size_t done = 0;
    while (done < len) {
        uffdio_copy c{};
        c.dst = reinterpret_cast<uint64_t>(dst) + done;
        c.src = reinterpret_cast<uint64_t>(src) + done;
        c.len = len - done;
        c.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
        if (xioctl(fd(), UFFDIO_COPY, &c) == 0) return {};
        // EAGAIN: the mm changed under us; `copy` says how much was done.
        if (errno == EAGAIN && c.copy > 0) {
            done += static_cast<size_t>(c.copy);
            continue;
        }
        if (errno == EAGAIN) continue;
        return Error::from_errno("UFFDIO_COPY");
    }
    return {};
}

Status Userfaultfd::zeropage(void* dst, size_t len) {
    uffdio_zeropage z{};
    z.range.start = reinterpret_cast<uint64_t>(dst);
    z.range.len = len;
    while (xioctl(fd(), UFFDIO_ZEROPAGE, &z) != 0) {
        if (errno != EAGAIN) return Error::from_errno("UFFDIO_ZEROPAGE");
    }
    return {};
}

Status Userfaultfd::writeprotect(void* addr, size_t len, bool wp) {
    uffdio_writeprotect w{};
    w.range.start = reinterpret_cast<uint64_t>(addr);
    w.range.len = len;
    w.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
    while (xioctl(fd(), UFFDIO_WRITEPROTECT, &w) != 0) {
        if (errno != EAGAIN) return Error::from_errno("UFFDIO_WRITEPROTECT");
    }
    return {};
}

Status Userfaultfd::wake(void* addr, size_t len) {
    uffdio_range r{};
    r.start = reinterpret_cast<uint64_t>(addr);
    r.len = len;
    if (xioctl(fd(), UFFDIO_WAKE, &r) != 0) return Error::from_errno("UFFDIO_WAKE");
    return {};
}

Result<size_t> Userfaultfd::read_events(uffd_msg* out, size_t max) {
    ssize_t n = ::read(fd(), out, max * sizeof(uffd_msg));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return size_t{0};
        return Error::from_errno("read userfaultfd");
    }
    return static_cast<size_t>(n) / sizeof(uffd_msg);
}

}  // namespace kv
