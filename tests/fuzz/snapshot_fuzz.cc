// libFuzzer target: what a snapshot's loader reads from disk before trusting it, the
// manifest (vmm/snapshot/manifest.cc), a vCPU state part (vcpu/cpu_state.cc), a memory
// part (vmm/snapshot/memory_image.cc, restored into 1 MiB of fake RAM at 0) and a device's
// state (vmm/devices/device_state.h, a loader over fields of every kind). None may crash,
// hang or trip a sanitizer on any input; what they accept must survive a round trip
// through their own writer.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string_view>
#include <vector>

#include "vcpu/cpu_state.h"
#include "vmm/devices/device_state.h"
#include "vmm/snapshot/memory_image.h"
#include "vmm/snapshot/snapshot.h"

namespace {

// Fields of every kind a device has.
struct Fields {
    bool b = false;
    uint8_t u8 = 0;
    uint16_t u16 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    std::array<uint8_t, 4> arr{};
    std::deque<uint8_t> fifo;
    std::vector<uint32_t> list;
    uint32_t nested = 0;
    template <class V>
    void visit(V& v) {
        v("b", b);
        v("u8", u8);
        v("u16", u16);
        v("u64", u64);
        v("i64", i64);
        v("arr", arr);
        v("fifo", fifo);
        v("list", list);
        v.object("sub", [&](auto& w) { w("nested", nested); });
    }
};

std::vector<uint8_t> g_ram(1 << 20), g_ram2(1 << 20);

}  // namespace

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
    auto into = [](std::vector<uint8_t>& r) -> kv::snapshot::RamTarget {
        std::fill(r.begin(), r.end(), 0);
        return [&r](uint64_t gpa, uint64_t bytes) -> kv::Result<uint8_t*> {
            if (gpa > r.size() || bytes > r.size() - gpa) return kv::Error{"not guest RAM"};
            return r.data() + gpa;
        };
    };
    if (kv::snapshot::decode_memory_image({data, size}, "memory-node-0", into(g_ram)).ok()) {
        // What it restored encodes to an image that restores the same RAM.
        const kv::snapshot::RamSpan all{0, g_ram};
        const std::vector<uint8_t> again = kv::snapshot::encode_memory_image({&all, 1});
        if (!kv::snapshot::decode_memory_image(again, "again", into(g_ram2)).ok() ||
            g_ram2 != g_ram)
            std::abort();
    }
    const kv::StateJson j = kv::StateJson::parse(text, nullptr, false);
    if (!j.is_discarded()) {
        Fields f;
        kv::StateLoader l(j, "devices.x");
        f.visit(l);
        if (l.finish()) {
            kv::StateSaver s;
            f.visit(s);
            const kv::StateJson saved = s.take();
            Fields g;
            kv::StateLoader l2(saved, "devices.x");
            g.visit(l2);
            kv::StateSaver s2;
            g.visit(s2);
            if (!l2.finish() || s2.take() != saved) std::abort();
        }
    }
    return 0;
}
