// CPUID as the guest sees it: KVM's supported leaves, filtered (docs/architecture.md).
//
// Hidden: everything that bypasses the VMM's user-space interrupt controllers (x2APIC,
// TSC-deadline timer, PV EOI / send-IPI / TLB flush / sched-yield / unhalt), everything
// that assumes one host or makes KVM write per-vCPU pages the coherence protocol would
// false-share (kvmclock, async page faults, steal time, poll control), nested
// virtualisation, and AMD's TOPOEXT topology leaves. Added: an invariant TSC, the
// always-running APIC timer flag, and one package per vCPU with its APIC ID.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace kv {

struct CpuidParams {
    uint32_t vcpu_index = 0;
    uint32_t apic_id = 0;
    uint32_t num_vcpus = 1;
    // Topology: the vCPUs of one guest NUMA node form one package of single-thread cores;
    // core_bits is the width of the core number in the APIC ID (package = apic_id >> it).
    uint32_t cores_per_package = 1;
    uint32_t core_bits = 0;
    // XSAVE components whose save area the host CPU itself reports (CPUID 0xD.i EAX != 0);
    // 0 means XSAVE must be hidden altogether (see host_xsave_components()).
    uint64_t host_xsave_mask = ~0ull;
};

// The host's XSAVE component mask as defined above.
uint64_t host_xsave_components();
// Bits needed to number `n` cores.
uint32_t bits_for(uint32_t n);

std::vector<kvm_cpuid_entry2> filter_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                           const CpuidParams& p);

// Bit positions used by the filter, named for tests.
namespace cpuid_bits {
constexpr uint32_t kLeaf1EcxVmx = 1u << 5;
constexpr uint32_t kLeaf1EcxX2apic = 1u << 21;
constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxApic = 1u << 9;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kLeaf6EaxArat = 1u << 2;
constexpr uint32_t kExt1EcxSvm = 1u << 2;
constexpr uint32_t kExt1EcxTopoext = 1u << 22;
constexpr uint32_t kExt7EdxInvariantTsc = 1u << 8;
constexpr uint32_t kKvmFeatureNopIoDelay = 1u << 1;
}  // namespace cpuid_bits

constexpr uint32_t kKvmCpuidSignature = 0x40000000;
constexpr uint32_t kKvmCpuidFeatures = 0x40000001;

}  // namespace kv
