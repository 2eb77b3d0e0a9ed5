// CPUID filter: what the guest must not see (x2APIC, TSC-deadline, nested virtualisation,
// KVM PV features, TOPOEXT), what it must see (hypervisor, APIC, invariant TSC, ARAT), the
// per-vCPU topology fields, and the XSAVE leaves cut down to the host's components.
#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <vector>

#include "vcpu/cpuid.h"

namespace kv {
namespace {

using namespace cpuid_bits;

constexpr uint32_t bit(unsigned n) {
    return 1u << n;
}

// Leaf 1 ECX / leaf 7 feature bits the filter touches (Intel SDM vol. 2A, CPUID).
constexpr uint32_t kFma = bit(12), kXsave = bit(26), kOsxsave = bit(27), kAvx = bit(28),
                   kF16c = bit(29);
constexpr uint32_t kL7EbxAvx2 = bit(5), kL7EbxAvx512f = bit(16), kL7EbxAvx512bw = bit(30),
                   kL7EcxPku = bit(3), kL7EcxAvx512Vbmi = bit(1);

kvm_cpuid_entry2 entry(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    kvm_cpuid_entry2 e{};
    e.function = fn;
    e.index = idx;
    e.eax = a;
    e.ebx = b;
    e.ecx = c;
    e.edx = d;
    return e;
}

// XSAVE layout of a typical host: component, size, offset.
struct XComp {
    uint32_t i, size, offset;
};
constexpr XComp kXComps[] = {
    {2, 256, 576},    // AVX (YMM_Hi128)
    {5, 64, 1088},    // AVX-512 opmask
    {6, 512, 1152},   // ZMM_Hi256
    {7, 1024, 1664},  // Hi16_ZMM
    {9, 8, 2688},     // PKRU
};
constexpr uint32_t kFullXsaveSize = 2696;  // PKRU offset + size
constexpr uint64_t kHostXcr0 = 0x2E7;      // x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU

constexpr uint32_t kAllPvFeatures =
    bit(KVM_FEATURE_CLOCKSOURCE) | bit(KVM_FEATURE_NOP_IO_DELAY) | bit(KVM_FEATURE_MMU_OP) |
    bit(KVM_FEATURE_CLOCKSOURCE2) | bit(KVM_FEATURE_ASYNC_PF) | bit(KVM_FEATURE_STEAL_TIME) |
    bit(KVM_FEATURE_PV_EOI) | bit(KVM_FEATURE_PV_UNHALT) | bit(KVM_FEATURE_PV_TLB_FLUSH) |
    bit(KVM_FEATURE_ASYNC_PF_VMEXIT) | bit(KVM_FEATURE_PV_SEND_IPI) |
    bit(KVM_FEATURE_POLL_CONTROL) | bit(KVM_FEATURE_PV_SCHED_YIELD) |
    bit(KVM_FEATURE_ASYNC_PF_INT) | bit(KVM_FEATURE_MSI_EXT_DEST_ID) |
    bit(KVM_FEATURE_HC_MAP_GPA_RANGE) | bit(KVM_FEATURE_MIGRATION_CONTROL) |
    bit(KVM_FEATURE_CLOCKSOURCE_STABLE_BIT);

// A "supported" list as KVM_GET_SUPPORTED_CPUID could report it on a modern host.
std::vector<kvm_cpuid_entry2> fake_supported(bool with_leaf6 = true) {
    std::vector<kvm_cpuid_entry2> v;
    v.push_back(entry(0, 0, 0x1F, 0x756E6547, 0x6C65746E, 0x49656E69));
    // Leaf 1: EBX low half = brand index 0x12, CLFLUSH size 8; hypervisor and APIC bits
    // deliberately clear, so the test sees the filter set them.
    v.push_back(entry(1, 0, 0x000906EA, 0x00FF0812,
                      kLeaf1EcxVmx | kLeaf1EcxX2apic | kLeaf1EcxTscDeadline | kFma | kXsave |
                          kOsxsave | kAvx | kF16c | bit(0) /* SSE3 */,
                      0x078BF9FF & ~kLeaf1EdxApic));
    v.push_back(entry(4, 0, 0xFC004121, 0x01C0003F, 0x3F, 0));
    v.push_back(entry(4, 3, 0xFC07C163, 0x03C0003F, 0x3FFF, 6));
    if (with_leaf6) v.push_back(entry(6, 0, 0x00000071, 0, 1, 0));  // ARAT clear
    v.push_back(entry(7, 0, 0, kL7EbxAvx2 | kL7EbxAvx512f | kL7EbxAvx512bw | bit(0),
                      kL7EcxPku | kL7EcxAvx512Vbmi, 0));
    for (uint32_t leaf : {0xBu, 0x1Fu}) {
        v.push_back(entry(leaf, 0, 1, 2, 0x100, 0x55));
        v.push_back(entry(leaf, 1, 4, 16, 0x201, 0x55));
        v.push_back(entry(leaf, 2, 0, 0, 2, 0x55));
    }
    v.push_back(entry(0xD, 0, uint32_t(kHostXcr0), 576, kFullXsaveSize, 0));
    v.push_back(entry(0xD, 1, 0xF, 0, 0, 0));
    for (const auto& c : kXComps) v.push_back(entry(0xD, c.i, c.size, c.offset, 0, 0));
    v.push_back(entry(kKvmCpuidSignature, 0, kKvmCpuidFeatures, 0x4B4D564B, 0x564B4D56, 0x4D));
    v.push_back(entry(kKvmCpuidFeatures, 0, kAllPvFeatures, 0, 0, bit(KVM_HINTS_REALTIME)));
    v.push_back(entry(0x80000000, 0, 0x80000021, 0, 0, 0));
    v.push_back(entry(0x80000001, 0, 0, 0, kExt1EcxSvm | kExt1EcxTopoext | bit(0), 0x2C100800));
    v.push_back(entry(0x80000007, 0, 0, 0, 0, 0));
    // 0x80000008 ECX: NC = 15, ApicIdCoreIdSize = 5, PerfTscSize = 3 (bits 17:16, kept).
    v.push_back(entry(0x80000008, 0, 0x3030, 0, 0x0003500F, 0));
    v.push_back(entry(0x8000000A, 0, 1, 0x8000, 0, 0x1FFFF));
    v.push_back(entry(0x8000001D, 0, 0x121, 0x1C0003F, 0x3F, 0));
    v.push_back(entry(0x8000001D, 1, 0x122, 0x1C0003F, 0x3F, 0));
    v.push_back(entry(0x8000001E, 0, 5, 0x100, 0, 0));
    return v;
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn,
                             uint32_t idx = 0) {
    for (const auto& e : v)
        if (e.function == fn && e.index == idx) return &e;
    return nullptr;
}

size_t count_leaf(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn) {
    size_t n = 0;
    for (const auto& e : v)
        if (e.function == fn) ++n;
    return n;
}

// A vCPU in a 6-core package numbered with 3 bits: APIC ID 0x0D = package 1, core 5.
CpuidParams six_core_params() {
    CpuidParams p;
    p.vcpu_index = 11;
    p.apic_id = 0x0D;
    p.num_vcpus = 12;
    p.cores_per_package = 6;
    p.core_bits = 3;
    return p;
}

TEST(Cpuid, BitsFor) {
    EXPECT_EQ(bits_for(1), 0u);
    EXPECT_EQ(bits_for(2), 1u);
    EXPECT_EQ(bits_for(3), 2u);
    EXPECT_EQ(bits_for(4), 2u);
    EXPECT_EQ(bits_for(5), 3u);
    EXPECT_EQ(bits_for(255), 8u);
}

TEST(Cpuid, Leaf1HidesX2apicTscDeadlineVmxAndSetsHypervisorAndApic) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ecx & kLeaf1EcxX2apic, 0u);
    EXPECT_EQ(l1->ecx & kLeaf1EcxTscDeadline, 0u);
    EXPECT_EQ(l1->ecx & kLeaf1EcxVmx, 0u);
    EXPECT_NE(l1->ecx & kLeaf1EcxHypervisor, 0u);
    EXPECT_NE(l1->edx & kLeaf1EdxApic, 0u);
    // Unrelated features pass through.
    EXPECT_NE(l1->ecx & bit(0), 0u);
    EXPECT_EQ(l1->eax, 0x000906EAu);
}

TEST(Cpuid, SvmAndTopoextHiddenAndTheirLeavesRemoved) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* e1 = find(out, 0x80000001);
    ASSERT_NE(e1, nullptr);
    EXPECT_EQ(e1->ecx & kExt1EcxSvm, 0u);
    EXPECT_EQ(e1->ecx & kExt1EcxTopoext, 0u);
    EXPECT_NE(e1->ecx & bit(0), 0u);  // LAHF/SAHF passes through
    EXPECT_EQ(e1->edx, 0x2C100800u);
    EXPECT_EQ(count_leaf(out, 0x8000001D), 0u);
    EXPECT_EQ(count_leaf(out, 0x8000001E), 0u);
    EXPECT_EQ(count_leaf(out, 0x8000000A), 0u);
}

TEST(Cpuid, KvmPvFeaturesClearedExceptNopIoDelayAndNoHints) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* f = find(out, kKvmCpuidFeatures);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->eax, kKvmFeatureNopIoDelay);
    EXPECT_EQ(f->eax, bit(KVM_FEATURE_NOP_IO_DELAY));
    EXPECT_EQ(f->edx, 0u);
    // The signature leaf is kept as it is.
    const auto* s = find(out, kKvmCpuidSignature);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->ebx, 0x4B4D564Bu);
    EXPECT_EQ(s->ecx, 0x564B4D56u);
    EXPECT_EQ(s->edx, 0x4Du);
}

TEST(Cpuid, InvariantTscAndArat) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* e7 = find(out, 0x80000007);
    ASSERT_NE(e7, nullptr);
    EXPECT_NE(e7->edx & kExt7EdxInvariantTsc, 0u);
    const auto* l6 = find(out, 6);
    ASSERT_NE(l6, nullptr);
    EXPECT_NE(l6->eax & kLeaf6EaxArat, 0u);
    EXPECT_EQ(l6->eax & 0x73u, 0x71u);  // the host's other power bits are kept
    EXPECT_EQ(count_leaf(out, 6), 1u);
}

TEST(Cpuid, AratAddedWhenLeaf6Absent) {
    auto out = filter_cpuid(fake_supported(/*with_leaf6=*/false), six_core_params());
    EXPECT_EQ(count_leaf(out, 6), 1u);
    const auto* l6 = find(out, 6);
    ASSERT_NE(l6, nullptr);
    EXPECT_NE(l6->eax & kLeaf6EaxArat, 0u);
}

TEST(Cpuid, ApicIdInLeaf1AndExtendedTopology) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ebx >> 24, 0x0Du);
    EXPECT_EQ(l1->ebx & 0xFFFFu, 0x0812u);  // brand index and CLFLUSH size kept
    for (uint32_t leaf : {0xBu, 0x1Fu})
        for (uint32_t sub : {0u, 1u, 2u}) {
            const auto* e = find(out, leaf, sub);
            ASSERT_NE(e, nullptr) << std::hex << leaf << "." << sub;
            EXPECT_EQ(e->edx, 0x0Du) << std::hex << leaf << "." << sub;
        }
}

TEST(Cpuid, TopologyFieldsForCoresPerPackage) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ((l1->ebx >> 16) & 0xFF, 8u);  // addressable IDs: 1 << core_bits
    EXPECT_NE(l1->edx & kLeaf1EdxHtt, 0u);
    for (uint32_t sub : {0u, 3u}) {
        const auto* l4 = find(out, 4, sub);
        ASSERT_NE(l4, nullptr);
        EXPECT_EQ(l4->eax >> 26, 7u) << sub;            // cores per package - 1 (addressable)
        EXPECT_EQ((l4->eax >> 14) & 0xFFF, 0u) << sub;  // one thread per core shares it
    }
    EXPECT_EQ(find(out, 4, 0)->eax & 0x3FFF, 0x0121u);  // cache type/level kept
    for (uint32_t leaf : {0xBu, 0x1Fu}) {
        const auto* smt = find(out, leaf, 0);
        const auto* core = find(out, leaf, 1);
        const auto* inval = find(out, leaf, 2);
        ASSERT_TRUE(smt && core && inval);
        EXPECT_EQ(smt->eax, 0u);
        EXPECT_EQ(smt->ebx, 1u);
        EXPECT_EQ(smt->ecx, 0x100u);  // level 0, type SMT
        EXPECT_EQ(core->eax, 3u);     // package = APIC ID >> core_bits
        EXPECT_EQ(core->ebx, 6u);
        EXPECT_EQ(core->ecx, 0x201u);  // level 1, type core
        EXPECT_EQ(inval->eax, 0u);
        EXPECT_EQ(inval->ebx, 0u);
        EXPECT_EQ(inval->ecx, 2u);  // level 2, type invalid
    }
    const auto* e8 = find(out, 0x80000008);
    ASSERT_NE(e8, nullptr);
    EXPECT_EQ(e8->ecx & 0xFF, 5u);         // NC = cores - 1
    EXPECT_EQ((e8->ecx >> 12) & 0xF, 3u);  // ApicIdCoreIdSize
    EXPECT_EQ((e8->ecx >> 16) & 0x3, 3u);  // PerfTscSize kept
    EXPECT_EQ(e8->eax, 0x3030u);
}

TEST(Cpuid, SingleCorePackageHasNoHtt) {
    CpuidParams p;
    p.apic_id = 3;
    p.num_vcpus = 4;
    p.cores_per_package = 1;
    p.core_bits = 0;
    auto out = filter_cpuid(fake_supported(), p);
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->edx & kLeaf1EdxHtt, 0u);
    EXPECT_EQ((l1->ebx >> 16) & 0xFF, 1u);
    EXPECT_EQ(l1->ebx >> 24, 3u);
    EXPECT_EQ(find(out, 4, 0)->eax >> 26, 0u);
    EXPECT_EQ(find(out, 0xB, 1)->eax, 0u);
    EXPECT_EQ(find(out, 0xB, 1)->ebx, 1u);
    EXPECT_EQ(find(out, 0x80000008)->ecx & 0xF0FF, 0u);
}

// One package holding every vCPU (as vcpu.cc configures it) at the architectural maximum:
// 200 vCPUs need 8 core bits, and the 8-bit count in leaf 1 must not spill into the APIC ID.
TEST(Cpuid, LargePackageCountDoesNotCorruptApicId) {
    CpuidParams p;
    p.vcpu_index = 16;
    p.apic_id = 0x10;
    p.num_vcpus = 200;
    p.cores_per_package = 200;
    p.core_bits = bits_for(200);
    ASSERT_EQ(p.core_bits, 8u);
    auto out = filter_cpuid(fake_supported(), p);
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ebx >> 24, 0x10u);
    EXPECT_GE((l1->ebx >> 16) & 0xFF, 200u);  // addressable IDs cover the package
    EXPECT_EQ(l1->ebx & 0xFFFFu, 0x0812u);
    EXPECT_EQ(find(out, 4, 0)->eax >> 26, 63u);  // 6-bit field: saturated
    EXPECT_EQ(find(out, 0xB, 1)->ebx, 200u);
    EXPECT_EQ(find(out, 0xB, 1)->eax, 8u);
    EXPECT_EQ(find(out, 0xB, 1)->edx, 0x10u);
}

TEST(Cpuid, NoXsaveOnHostHidesXsaveLeavesAndAvx) {
    CpuidParams p = six_core_params();
    p.host_xsave_mask = 0;
    auto out = filter_cpuid(fake_supported(), p);
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ecx & (kXsave | kOsxsave), 0u);
    EXPECT_EQ(l1->ecx & (kAvx | kFma | kF16c), 0u);
    EXPECT_EQ(count_leaf(out, 0xD), 0u);
    const auto* l7 = find(out, 7);
    ASSERT_NE(l7, nullptr);
    EXPECT_EQ(l7->ebx & kL7EbxAvx2, 0u);
    EXPECT_EQ(l7->ebx & (kL7EbxAvx512f | kL7EbxAvx512bw), 0u);
    EXPECT_EQ(l7->ecx & kL7EcxAvx512Vbmi, 0u);
    EXPECT_NE(l7->ebx & bit(0), 0u);  // FSGSBASE passes through
}

TEST(Cpuid, HostWithoutAvxComponentHidesAvxAndShrinksXsaveArea) {
    CpuidParams p = six_core_params();
    p.host_xsave_mask = 0x203;  // x87, SSE, PKRU: no AVX, no AVX-512
    auto out = filter_cpuid(fake_supported(), p);
    const auto* l1 = find(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ecx & (kAvx | kFma | kF16c), 0u);
    EXPECT_NE(l1->ecx & kXsave, 0u);  // XSAVE itself stays
    const auto* l7 = find(out, 7);
    ASSERT_NE(l7, nullptr);
    EXPECT_EQ(l7->ebx & (kL7EbxAvx2 | kL7EbxAvx512f | kL7EbxAvx512bw), 0u);
    const auto* d0 = find(out, 0xD, 0);
    ASSERT_NE(d0, nullptr);
    const uint64_t xcr0 = uint64_t(d0->edx) << 32 | d0->eax;
    EXPECT_EQ(xcr0 & bit(2), 0u);
    EXPECT_EQ(xcr0, 0x203u);
    EXPECT_EQ(d0->ecx, 2688u + 8u);  // PKRU is the largest remaining offset + size
    EXPECT_EQ(find(out, 0xD, 2), nullptr);
    EXPECT_EQ(find(out, 0xD, 5), nullptr);
    EXPECT_NE(find(out, 0xD, 9), nullptr);
    EXPECT_NE(find(out, 0xD, 1), nullptr);
}

TEST(Cpuid, HostWithOnlyLegacyXsaveComponents) {
    CpuidParams p = six_core_params();
    p.host_xsave_mask = 0x3;
    auto out = filter_cpuid(fake_supported(), p);
    const auto* d0 = find(out, 0xD, 0);
    ASSERT_NE(d0, nullptr);
    EXPECT_EQ(d0->eax, 0x3u);
    EXPECT_EQ(d0->edx, 0u);
    EXPECT_EQ(d0->ecx, 576u);
    EXPECT_EQ(count_leaf(out, 0xD), 2u);  // 0xD.0 and 0xD.1
}

TEST(Cpuid, FullXsaveMaskKeepsAllComponentsAndMaxSize) {
    auto out = filter_cpuid(fake_supported(), six_core_params());
    const auto* d0 = find(out, 0xD, 0);
    ASSERT_NE(d0, nullptr);
    EXPECT_EQ(uint64_t(d0->edx) << 32 | d0->eax, kHostXcr0);
    uint32_t max = 576;
    for (const auto& c : kXComps) max = std::max(max, c.offset + c.size);
    EXPECT_EQ(d0->ecx, max);
    EXPECT_EQ(d0->ecx, kFullXsaveSize);
    EXPECT_EQ(d0->ebx, 576u);
    for (const auto& c : kXComps) {
        const auto* e = find(out, 0xD, c.i);
        ASSERT_NE(e, nullptr) << c.i;
        EXPECT_EQ(e->eax, c.size);
        EXPECT_EQ(e->ebx, c.offset);
    }
    const auto* l1 = find(out, 1);
    EXPECT_EQ(l1->ecx & (kAvx | kFma | kF16c | kXsave | kOsxsave),
              kAvx | kFma | kF16c | kXsave | kOsxsave);
    const auto* l7 = find(out, 7);
    EXPECT_EQ(l7->ebx & (kL7EbxAvx2 | kL7EbxAvx512f | kL7EbxAvx512bw),
              kL7EbxAvx2 | kL7EbxAvx512f | kL7EbxAvx512bw);
}

}  // namespace
}  // namespace kv
