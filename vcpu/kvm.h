// Thin owners of KVM's file descriptors: one class per fd type, one method per ioctl, no
// policy. Every method returns a Status/Result naming the ioctl that failed.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/mapping.h"
#include "base/result.h"

namespace kv {

class VcpuFd;

class VmFd {
  public:
    VmFd() = default;
    explicit VmFd(Fd fd, size_t run_size) : fd_(std::move(fd)), run_size_(run_size) {}

    // `flags`: KVM_MEM_LOG_DIRTY_PAGES to log the guest's writes (get_dirty_log).
    Status set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                  uint32_t flags = 0);
    // The pages of `slot` written since the last call (one bit a page), and clears them.
    Status get_dirty_log(uint32_t slot, std::span<uint64_t> bitmap);
    Status set_tss_addr(uint64_t addr);
    Status set_identity_map_addr(uint64_t addr);
    Result<VcpuFd> create_vcpu(uint32_t id);
    int fd() const { return fd_.get(); }

  private:
    Fd fd_;
    size_t run_size_ = 0;
};

class Kvm {
  public:
    static Result<Kvm> open(const char* path = "/dev/kvm");

    Result<int> check_extension(long cap) const;
    Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
    // Every MSR KVM saves and restores for a vCPU (KVM_GET_MSR_INDEX_LIST).
    Result<std::vector<uint32_t>> msr_index_list() const;
    Result<VmFd> create_vm() const;
    int fd() const { return fd_.get(); }

  private:
    explicit Kvm(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
    size_t run_size_ = 0;
};

class VcpuFd {
  public:
    VcpuFd() = default;
    VcpuFd(Fd fd, Mapping run) : fd_(std::move(fd)), run_(std::move(run)) {}

    kvm_run* run_page() const { return run_.as<kvm_run>(); }
    // KVM_RUN; returns the errno (0 on a normal exit, EINTR when interrupted).
    int run();

    Status get_regs(kvm_regs& r) const;
    Status set_regs(const kvm_regs& r);
    Status get_sregs(kvm_sregs& s) const;
    Status set_sregs(const kvm_sregs& s);
    Status get_fpu(kvm_fpu& f) const;
    Status set_fpu(const kvm_fpu& f);
    Status set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    Status set_msrs(const std::vector<kvm_msr_entry>& msrs);
    Status get_msrs(std::vector<kvm_msr_entry>& msrs) const;
    Status interrupt(uint32_t vector);
    Status nmi();
    // The 4096-byte XSAVE area (struct kvm_xsave as the kernel sizes it).
    Status get_xsave(std::vector<uint8_t>& area) const;
    Status set_xsave(std::span<const uint8_t> area);
    Status get_xcrs(kvm_xcrs& x) const;
    Status set_xcrs(const kvm_xcrs& x);
    Status get_debugregs(kvm_debugregs& d) const;
    Status set_debugregs(const kvm_debugregs& d);
    Status get_mp_state(kvm_mp_state& m) const;
    Status set_mp_state(const kvm_mp_state& m);
    Status get_vcpu_events(kvm_vcpu_events& e) const;
    Status set_vcpu_events(const kvm_vcpu_events& e);
    Result<uint32_t> get_tsc_khz() const;
    // The guest TSC is the host TSC plus `offset` (KVM_VCPU_TSC_OFFSET, Linux 5.16+).
    Status set_tsc_offset(uint64_t offset);
    Result<uint64_t> get_tsc_offset() const;
    int fd() const { return fd_.get(); }

  private:
    Fd fd_;
    Mapping run_;
};

}  // namespace kv
