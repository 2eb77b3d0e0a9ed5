#include "vcpu/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace kv {

namespace {

// <linux/kvm.h> declares the variable-length ioctl structs with __DECLARE_FLEX_ARRAY, which
// in C++ (Debian 12's headers) inserts an empty struct before the array: sizeof and the
// array offset then differ from the kernel's, and so do the ioctl numbers built from
// them. We use the kernel's layout: an 8-byte header directly followed by the entries.
struct VarHeader {
    uint32_t count;
    uint32_t padding;
};
static_assert(sizeof(VarHeader) == 8);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, VarHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, VarHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, VarHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, VarHeader);
// struct kvm_msr_list is a u32 and a flexible array: 4 bytes in the kernel's C, 8 in C++.
struct MsrListHeader {
    uint32_t nmsrs;
};
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
// struct kvm_xsave ends in a flexible array too: its C size, 4096 bytes, names the ioctls.
struct XsaveArea {
    uint32_t region[1024];
};
static_assert(sizeof(XsaveArea) == 4096);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveArea);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveArea);

template <class Entry>
std::vector<uint8_t> var_buffer(uint32_t n, const Entry* entries = nullptr) {
    std::vector<uint8_t> buf(sizeof(VarHeader) + n * sizeof(Entry));
    reinterpret_cast<VarHeader*>(buf.data())->count = n;
    if (entries) std::memcpy(buf.data() + sizeof(VarHeader), entries, n * sizeof(Entry));
    return buf;
}
template <class Entry>
const Entry* var_entries(const std::vector<uint8_t>& buf) {
    return reinterpret_cast<const Entry*>(buf.data() + sizeof(VarHeader));
}

Status ioctl_status(int fd, unsigned long req, const void* arg, const char* name) {
    if (::ioctl(fd, req, arg) < 0) return Error::from_errno(name);
    return {};
}
}  // namespace

Result<Kvm> Kvm::open(const char* path) {
    auto fd = Fd::check(::open(path, O_RDWR | O_CLOEXEC), path);
    if (!fd) return fd.error();
    int ver = ::ioctl(fd->get(), KVM_GET_API_VERSION, 0);
    if (ver != KVM_API_VERSION)
        return Error{std::string(path) + ": unexpected KVM API version " + std::to_string(ver)};
    Kvm kvm(std::move(fd).value());
    int sz = ::ioctl(kvm.fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0) return Error::from_errno("KVM_GET_VCPU_MMAP_SIZE");
    kvm.run_size_ = size_t(sz);
    return kvm;
}

Result<int> Kvm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    if (r < 0) return Error::from_errno("KVM_CHECK_EXTENSION");
    return r;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
    // kvm_cpuid2 ends in a flexible array: size the buffer generously and retry on E2BIG.
    for (uint32_t n = 128; n <= 4096; n *= 2) {
        auto buf = var_buffer<kvm_cpuid_entry2>(n);
        if (::ioctl(fd_.get(), kGetSupportedCpuid, buf.data()) == 0) {
            const auto* e = var_entries<kvm_cpuid_entry2>(buf);
            return std::vector<kvm_cpuid_entry2>(
                e, e + reinterpret_cast<VarHeader*>(buf.data())->count);
        }
        if (errno != E2BIG) return Error::from_errno("KVM_GET_SUPPORTED_CPUID");
    }
    return Error{"KVM_GET_SUPPORTED_CPUID: too many entries"};
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
    for (uint32_t n = 256; n <= 16384; n *= 2) {
        std::vector<uint32_t> buf(n + 1);
        buf[0] = n;  // kvm_msr_list: nmsrs, then the indices
        if (::ioctl(fd_.get(), kGetMsrIndexList, buf.data()) == 0)
            return std::vector<uint32_t>(buf.begin() + 1, buf.begin() + 1 + buf[0]);
        if (errno != E2BIG) return Error::from_errno("KVM_GET_MSR_INDEX_LIST");
    }
    return Error{"KVM_GET_MSR_INDEX_LIST: too many MSRs"};
}

Result<VmFd> Kvm::create_vm() const {
    // KVM_CREATE_VM may fail with EINTR while the host is busy; retry a few times.
    for (int i = 0;; ++i) {
        int fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
        if (fd >= 0) return VmFd(Fd(fd), run_size_);
        if (errno != EINTR || i > 10) return Error::from_errno("KVM_CREATE_VM");
    }
}

Status VmFd::set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                    uint32_t flags) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    return ioctl_status(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
}

Status VmFd::get_dirty_log(uint32_t slot, std::span<uint64_t> bitmap) {
    kvm_dirty_log d{};
    d.slot = slot;
    d.dirty_bitmap = bitmap.data();
    return ioctl_status(fd_.get(), KVM_GET_DIRTY_LOG, &d, "KVM_GET_DIRTY_LOG");
}

Status VmFd::set_tss_addr(uint64_t addr) {
    if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr) < 0)
        return Error::from_errno("KVM_SET_TSS_ADDR");
    return {};
}

Status VmFd::set_identity_map_addr(uint64_t addr) {
    return ioctl_status(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

Result<VcpuFd> VmFd::create_vcpu(uint32_t id) {
    auto fd = Fd::check(::ioctl(fd_.get(), KVM_CREATE_VCPU, id), "KVM_CREATE_VCPU");
    if (!fd) return fd.error();
    auto run = Mapping::shared(fd->get(), run_size_);
    if (!run)
        return Error{"mmap of kvm_run for vCPU " + std::to_string(id) + ": " + run.error().message};
    return VcpuFd(std::move(fd).value(), std::move(run).value());
}

int VcpuFd::run() {
    return ::ioctl(fd_.get(), KVM_RUN, 0) < 0 ? errno : 0;
}

Status VcpuFd::get_regs(kvm_regs& r) const {
    return ioctl_status(fd_.get(), KVM_GET_REGS, &r, "KVM_GET_REGS");
}
Status VcpuFd::set_regs(const kvm_regs& r) {
    return ioctl_status(fd_.get(), KVM_SET_REGS, &r, "KVM_SET_REGS");
}
Status VcpuFd::get_xsave(std::vector<uint8_t>& area) const {
    area.assign(sizeof(XsaveArea), 0);
    return ioctl_status(fd_.get(), kGetXsave, area.data(), "KVM_GET_XSAVE");
}
Status VcpuFd::set_xsave(std::span<const uint8_t> area) {
    if (area.size() != sizeof(XsaveArea))
        return Error{"KVM_SET_XSAVE: an area of " + std::to_string(area.size()) + " bytes"};
    return ioctl_status(fd_.get(), kSetXsave, area.data(), "KVM_SET_XSAVE");
}
Status VcpuFd::get_xcrs(kvm_xcrs& x) const {
    return ioctl_status(fd_.get(), KVM_GET_XCRS, &x, "KVM_GET_XCRS");
}
Status VcpuFd::set_xcrs(const kvm_xcrs& x) {
    return ioctl_status(fd_.get(), KVM_SET_XCRS, &x, "KVM_SET_XCRS");
}
Status VcpuFd::get_debugregs(kvm_debugregs& d) const {
    return ioctl_status(fd_.get(), KVM_GET_DEBUGREGS, &d, "KVM_GET_DEBUGREGS");
}
Status VcpuFd::set_debugregs(const kvm_debugregs& d) {
    return ioctl_status(fd_.get(), KVM_SET_DEBUGREGS, &d, "KVM_SET_DEBUGREGS");
}
Status VcpuFd::get_mp_state(kvm_mp_state& m) const {
    return ioctl_status(fd_.get(), KVM_GET_MP_STATE, &m, "KVM_GET_MP_STATE");
}
Status VcpuFd::set_mp_state(const kvm_mp_state& m) {
    return ioctl_status(fd_.get(), KVM_SET_MP_STATE, &m, "KVM_SET_MP_STATE");
}
Status VcpuFd::get_sregs(kvm_sregs& s) const {
    return ioctl_status(fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
}
Status VcpuFd::set_sregs(const kvm_sregs& s) {
    return ioctl_status(fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS");
}
Status VcpuFd::get_fpu(kvm_fpu& f) const {
    return ioctl_status(fd_.get(), KVM_GET_FPU, &f, "KVM_GET_FPU");
}
Status VcpuFd::set_fpu(const kvm_fpu& f) {
    return ioctl_status(fd_.get(), KVM_SET_FPU, &f, "KVM_SET_FPU");
}

Status VcpuFd::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    auto buf = var_buffer(uint32_t(entries.size()), entries.data());
    return ioctl_status(fd_.get(), kSetCpuid2, buf.data(), "KVM_SET_CPUID2");
}

Status VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
    auto buf = var_buffer(uint32_t(msrs.size()), msrs.data());
    int n = ::ioctl(fd_.get(), kSetMsrs, buf.data());
    if (n < 0) return Error::from_errno("KVM_SET_MSRS");
    if (size_t(n) != msrs.size())
        return Error{"KVM_SET_MSRS: MSR " + std::to_string(msrs[size_t(n)].index) + " refused"};
    return {};
}

Status VcpuFd::get_msrs(std::vector<kvm_msr_entry>& msrs) const {
    auto buf = var_buffer(uint32_t(msrs.size()), msrs.data());
    int n = ::ioctl(fd_.get(), kGetMsrs, buf.data());
    if (n < 0) return Error::from_errno("KVM_GET_MSRS");
    std::copy(var_entries<kvm_msr_entry>(buf), var_entries<kvm_msr_entry>(buf) + n, msrs.begin());
    msrs.resize(size_t(n));
    return {};
}

Status VcpuFd::interrupt(uint32_t vector) {
    kvm_interrupt irq{vector};
    return ioctl_status(fd_.get(), KVM_INTERRUPT, &irq, "KVM_INTERRUPT");
}

Status VcpuFd::set_tsc_offset(uint64_t offset) {
    kvm_device_attr attr{};
    attr.group = KVM_VCPU_TSC_CTRL;
    attr.attr = KVM_VCPU_TSC_OFFSET;
    attr.addr = reinterpret_cast<uint64_t>(&offset);
    if (::ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr) < 0)
        return Error::from_errno("KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)");
    return {};
}

Result<uint64_t> VcpuFd::get_tsc_offset() const {
    uint64_t offset = 0;
    kvm_device_attr attr{};
    attr.group = KVM_VCPU_TSC_CTRL;
    attr.attr = KVM_VCPU_TSC_OFFSET;
    attr.addr = reinterpret_cast<uint64_t>(&offset);
    if (::ioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &attr) < 0)
        return Error::from_errno("KVM_GET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)");
    return offset;
}

Status VcpuFd::nmi() {
    if (::ioctl(fd_.get(), KVM_NMI, 0) < 0) return Error::from_errno("KVM_NMI");
    return {};
}

Status VcpuFd::get_vcpu_events(kvm_vcpu_events& e) const {
    return ioctl_status(fd_.get(), KVM_GET_VCPU_EVENTS, &e, "KVM_GET_VCPU_EVENTS");
}
Status VcpuFd::set_vcpu_events(const kvm_vcpu_events& e) {
    return ioctl_status(fd_.get(), KVM_SET_VCPU_EVENTS, &e, "KVM_SET_VCPU_EVENTS");
}

Result<uint32_t> VcpuFd::get_tsc_khz() const {
    int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
    if (r <= 0) return Error::from_errno("KVM_GET_TSC_KHZ");
    return uint32_t(r);
}

}  // namespace kv
