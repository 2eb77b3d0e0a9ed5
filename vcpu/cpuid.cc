#include "vcpu/cpuid.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

namespace kv {

using namespace cpuid_bits;

namespace {

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn, uint32_t idx) {
    for (const auto& e : v)
        if (e.function == fn && e.index == idx) return &e;
    return nullptr;
}

// XSAVE state components the guest may enable: only those whose feature flag the guest
// also sees. KVM can report a component (e.g. AVX) in leaf 0xD that the CPU lacks (seen
// in the lab's TCG hosts), and Linux then warns that the XSAVE sizes are inconsistent.
uint64_t allowed_xcr0(const std::vector<kvm_cpuid_entry2>& v, uint64_t host_mask) {
    uint64_t mask = 0x3;  // x87, SSE
    const auto* l1 = find(v, 1, 0);
    const auto* l7 = find(v, 7, 0);
    if (l1 && (l1->ecx & (1u << 28))) mask |= 1u << 2;                // AVX
    if (l7 && (l7->ebx & (1u << 14))) mask |= (1u << 3) | (1u << 4);  // MPX
    if (l7 && (l7->ebx & (1u << 16))) mask |= 0xE0;                   // AVX-512
    if (l7 && (l7->ecx & (1u << 3))) mask |= 1u << 9;                 // PKRU
    return mask & (host_mask | 0x3);
}

}  // namespace

uint64_t host_xsave_components() {
    // Under QEMU's TCG (the lab's emulated hosts) the emulated SVM does not intercept
    // XSETBV: a nested guest changes XCR0 behind KVM's back, and KVM reloads the XCR0 it
    // believes in at every entry, so the guest's XSAVE areas and signal frames break
    // ("bad frame in rt_sigreturn"). XSAVE is not usable at all there: report no
    // components and the filter hides XSAVE, so the guest uses FXSAVE.
    unsigned a, b, c, d;
    __cpuid(0x40000000, a, b, c, d);
    char sig[13] = {};
    std::memcpy(sig, &b, 4);
    std::memcpy(sig + 4, &c, 4);
    std::memcpy(sig + 8, &d, 4);
    if (std::strcmp(sig, "TCGTCGTCGTCG") == 0) return 0;
    uint64_t mask = 0x3;
    for (uint32_t i = 2; i < 63; ++i) {
        unsigned a, b, c, d;
        __cpuid_count(0xD, i, a, b, c, d);
        if (a != 0) mask |= 1ull << i;
    }
    return mask;
}

uint32_t bits_for(uint32_t n) {
    uint32_t b = 0;
    while ((1u << b) < n) ++b;
    return b;
}

std::vector<kvm_cpuid_entry2> filter_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                           const CpuidParams& p) {
    const uint64_t xcr0_ok = allowed_xcr0(supported, p.host_xsave_mask);
    const bool xsave_ok = p.host_xsave_mask != 0;
    const bool avx_ok = xsave_ok && (xcr0_ok & (1u << 2));
    const bool avx512_ok = avx_ok && (xcr0_ok & 0xE0) == 0xE0;
    std::vector<kvm_cpuid_entry2> out;
    out.reserve(supported.size() + 1);
    bool have_leaf6 = false;
    for (kvm_cpuid_entry2 e : supported) {
        switch (e.function) {
            case 1:
                e.ecx &= ~(kLeaf1EcxVmx | kLeaf1EcxX2apic | kLeaf1EcxTscDeadline);
                e.ecx |= kLeaf1EcxHypervisor;
                e.edx |= kLeaf1EdxApic;
                if (!avx_ok) e.ecx &= ~((1u << 28) | (1u << 12) | (1u << 29));  // AVX FMA F16C
                if (!xsave_ok) e.ecx &= ~((1u << 26) | (1u << 27));             // XSAVE, OSXSAVE
                // Logical processors per package, and our APIC ID.
                if (p.cores_per_package > 1)
                    e.edx |= kLeaf1EdxHtt;
                else
                    e.edx &= ~kLeaf1EdxHtt;
                e.ebx = (e.ebx & 0x0000FFFFu) | (std::min(1u << p.core_bits, 255u) << 16) |
                        (p.apic_id << 24);
                break;
            case 4:
                // Deterministic cache parameters: single-thread cores, cores per package.
                e.eax = (e.eax & 0x00003FFFu) | (((1u << p.core_bits) - 1) << 26);
                break;
            case 7:
                if (e.index == 0) {
                    if (!avx_ok) e.ebx &= ~(1u << 5);  // AVX2
                    if (!avx512_ok) {
                        e.ebx &= ~0xDC230000u;  // AVX-512 F DQ IFMA PF ER CD BW VL
                        e.ecx &= ~0x00005842u;  // AVX-512 VBMI VBMI2 VNNI BITALG VPOPCNTDQ
                        e.edx &= ~0x0000010Cu;  // AVX-512 4VNNIW 4FMAPS VP2INTERSECT
                    }
                }
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
                    e.eax = p.core_bits;
                    e.ebx = p.cores_per_package;
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
                // AMD: cores per package (NC) and the APIC-ID bits that number them.
                e.ecx = (e.ecx & ~0x0000F0FFu) | (p.core_bits << 12) |
                        ((p.cores_per_package - 1) & 0xFF);
                break;
            case 0xD:
                if (!xsave_ok) continue;
                if (e.index == 0) {
                    uint64_t xcr0 = (uint64_t(e.edx) << 32 | e.eax) & xcr0_ok;
                    e.eax = uint32_t(xcr0);
                    e.edx = uint32_t(xcr0 >> 32);
                    // Largest save area of the allowed components (legacy + header is 576).
                    uint32_t max = 576;
                    for (uint32_t i = 2; i < 64; ++i)
                        if (xcr0 & (1ull << i))
                            if (const auto* s = find(supported, 0xD, i))
                                max = std::max(max, s->ebx + s->eax);
                    e.ecx = max;
                    e.ebx = 576;  // for XCR0 = x87|SSE at reset; KVM updates it at run time
                } else if (e.index >= 2 && e.index < 64 && !(xcr0_ok & (1ull << e.index)) &&
                           !(e.ecx & 1)) {
                    continue;  // a user state component the guest may not enable
                }
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
