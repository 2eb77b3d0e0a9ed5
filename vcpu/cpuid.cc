#include "vcpu/cpuid.h"

namespace kv {

using namespace cpuid_bits;

std::vector<kvm_cpuid_entry2> filter_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                           const CpuidParams& p) {
    std::vector<kvm_cpuid_entry2> out;
    out.reserve(supported.size() + 1);
    bool have_leaf6 = false;
    for (kvm_cpuid_entry2 e : supported) {
        switch (e.function) {
            case 1:
                e.ecx &= ~(kLeaf1EcxVmx | kLeaf1EcxX2apic | kLeaf1EcxTscDeadline);
                e.ecx |= kLeaf1EcxHypervisor;
                e.edx |= kLeaf1EdxApic;
                // One package per vCPU: no HTT, one logical processor, our APIC ID.
                e.edx &= ~kLeaf1EdxHtt;
                e.ebx = (e.ebx & 0x0000FFFFu) | (1u << 16) | (p.apic_id << 24);
                break;
            case 4:
                // Deterministic cache parameters: one core, one thread per cache.
                e.eax &= 0x00003FFFu;
                break;
            case 6:
                e.eax |= kLeaf6EaxArat;
                have_leaf6 = true;
                break;
            case 0xB:
            case 0x1F:
                // Extended topology: SMT level then core level, one of each per package.
                if (e.index == 0) {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (1u << 8) | 0;
                } else if (e.index == 1) {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (2u << 8) | 1;
                } else {
                    e.eax = e.ebx = 0;
                    e.ecx = e.index;
                }
                e.edx = p.apic_id;
                break;
            case kKvmCpuidFeatures:
                // All PV features off but the harmless "no port 0x80 delay"; no hints.
                e.eax &= kKvmFeatureNopIoDelay;
                e.edx = 0;
                break;
            case 0x80000001:
                e.ecx &= ~(kExt1EcxSvm | kExt1EcxTopoext);
                break;
            case 0x80000007:
                e.edx |= kExt7EdxInvariantTsc;
                break;
            case 0x80000008:
                // AMD core count: one core per package.
                e.ecx &= ~0x0000F0FFu;
                break;
            case 0x8000001D:
            case 0x8000001E:
                // TOPOEXT leaves are hidden with TOPOEXT.
                continue;
            case 0x8000000A:
                // SVM features: nested virtualisation is hidden.
                continue;
            default:
                break;
        }
        out.push_back(e);
    }
    if (!have_leaf6) {
        kvm_cpuid_entry2 e{};
        e.function = 6;
        e.eax = kLeaf6EaxArat;
        out.push_back(e);
    }
    return out;
}

}  // namespace kv
