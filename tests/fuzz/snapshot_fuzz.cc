// libFuzzer target: what a snapshot's loader reads from disk before trusting it, the
// manifest (vmm/snapshot/manifest.cc) and a vCPU state part (vcpu/cpu_state.cc). Neither
// may crash, hang or trip a sanitizer on any input; what they accept must survive a round
// trip through their own writer.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vcpu/cpu_state.h"
#include "vmm/snapshot/snapshot.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto m = kv::snapshot::Manifest::from_json(text); m.ok()) {
        auto again = kv::snapshot::Manifest::from_json(m->to_json());
        if (!again.ok() || again->to_json() != m->to_json()) std::abort();
    }
    if (auto s = kv::CpuState::decode({data, size}); s.ok()) {
        auto again = kv::CpuState::decode(s->encode());
        if (!again.ok() || again->encode() != s->encode()) std::abort();
    }
    return 0;
}
