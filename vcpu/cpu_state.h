// One vCPU's whole guest-visible state as one value: what migration sends to another node
// and what a snapshot stores (docs/vcpu-state.md). Captured from a vCPU that stands at an
// exit boundary (paused, or parked and never run) and restored into one that does.
//
//   - KVM's part: registers, special registers, the FPU/SSE/AVX state (XSAVE where the
//     host has it, the legacy FPU area otherwise), XCR0, debug registers, every MSR that
//     KVM_GET_MSR_INDEX_LIST names and the vCPU lets read (the guest TSC among them),
//     pending events (exceptions, NMI, interrupt shadow) and the MP state.
//   - Ours: the emulated LAPIC with its pending (IRR) and in-service (ISR) interrupts and
//     its timer as elapsed/remaining time (LapicState: relative, not this host's clock),
//     and the vCPU thread's own state (waiting for SIPI or running, a pending INIT/SIPI,
//     NMI or ExtINT).
//
// The encoded form is versioned and length-checked: a header (magic "KVCS", format
// version, total length) and tagged sections, each of an exact size. decode() refuses a
// truncated, oversized, foreign or newer value, an unknown or repeated section and a
// missing one, naming what is wrong. Pure: no KVM calls (vcpu.h captures and restores).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "vcpu/lapic.h"

namespace kv {

struct CpuState {
    static constexpr uint32_t kMagic = 0x5343564B;  // "KVCS" little-endian
    static constexpr uint16_t kVersion = 1;
    static constexpr size_t kMaxMsrs = 1024;

    kvm_regs regs{};
    kvm_sregs sregs{};
    // With KVM_CAP_XSAVE: the kvm_xsave area (kXsaveBytes; the struct ends in a flexible
    // array, so it is kept as bytes). Empty: only `fpu`.
    static constexpr size_t kXsaveBytes = 4096;  // the kernel's sizeof(struct kvm_xsave)
    std::vector<uint8_t> xsave;
    kvm_fpu fpu{};
    std::optional<kvm_xcrs> xcrs;            // with KVM_CAP_XCRS
    std::optional<kvm_debugregs> debugregs;  // with KVM_CAP_DEBUGREGS
    std::vector<kvm_msr_entry> msrs;         // index and value; reserved fields zero
    kvm_vcpu_events events{};
    kvm_mp_state mp_state{};
    LapicState lapic{};

    // The vCPU thread's state (vcpu.h).
    struct Run {
        uint32_t waiting_for_sipi = 0;  // 1: an AP before its SIPI (or after INIT)
        uint32_t init_pending = 0;      // an INIT not yet applied
        uint32_t sipi_vector = 0;       // a SIPI not yet applied: vector + 1 (0: none)
        uint32_t nmi_pending = 0;       // an NMI not yet injected
        uint32_t extint = 0;            // the PIC's INTR line (LINT0 ExtINT) is raised
        uint32_t reserved = 0;
    } run;
    static_assert(sizeof(Run) == 24);

    std::vector<uint8_t> encode() const;
    static Result<CpuState> decode(std::span<const uint8_t> bytes);

    // The value of one MSR, if it was saved.
    std::optional<uint64_t> msr(uint32_t index) const;
};

}  // namespace kv
