#include "vcpu/cpu_state.h"

#include <cstring>

namespace kv {
namespace {

// Section tags. A new section or a changed layout is a new format version.
enum Tag : uint32_t {
    kRegs = 1,
    kSregs = 2,
    kFpu = 3,
    kXsave = 4,
    kXcrs = 5,
    kDebugregs = 6,
    kMsrs = 7,
    kEvents = 8,
    kMpState = 9,
    kLapic = 10,
    kRun = 11,
    kLastTag = kRun,
};

const char* tag_name(uint32_t t) {
    static const char* const names[] = {"?",         "regs", "sregs",  "fpu",      "xsave", "xcrs",
                                        "debugregs", "msrs", "events", "mp_state", "lapic", "run"};
    return t <= kLastTag ? names[t] : "?";
}

struct Header {
    uint32_t magic;
    uint16_t version;
    uint16_t reserved;
    uint32_t total_length;  // header included
    uint32_t sections;
};
static_assert(sizeof(Header) == 16);

struct SectionHeader {
    uint32_t tag;
    uint32_t length;
};
static_assert(sizeof(SectionHeader) == 8);

class Writer {
  public:
    void put(uint32_t tag, const void* data, size_t len) {
        SectionHeader s{tag, static_cast<uint32_t>(len)};
        append(&s, sizeof s);
        append(data, len);
        ++sections_;
    }
    template <class T>
    void put(uint32_t tag, const T& v) {
        put(tag, &v, sizeof v);
    }
    std::vector<uint8_t> finish() {
        Header h{CpuState::kMagic, CpuState::kVersion, 0, static_cast<uint32_t>(body_.size()),
                 sections_};
        std::memcpy(body_.data(), &h, sizeof h);  // the room left for it at the front
        return std::move(body_);
    }

  private:
    void append(const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        body_.insert(body_.end(), b, b + n);
    }
    std::vector<uint8_t> body_ = std::vector<uint8_t>(sizeof(Header));
    uint32_t sections_ = 0;
};

Error bad(const std::string& what) {
    return Error{"cpu state: " + what};
}

template <class T>
Status take(std::span<const uint8_t> body, uint32_t tag, T& out) {
    if (body.size() != sizeof(T))
        return bad(std::string(tag_name(tag)) + " section of " + std::to_string(body.size()) +
                   " bytes (expected " + std::to_string(sizeof(T)) + ")");
    std::memcpy(&out, body.data(), sizeof(T));
    return {};
}

}  // namespace

std::vector<uint8_t> CpuState::encode() const {
    Writer w;
    w.put(kRegs, regs);
    w.put(kSregs, sregs);
    w.put(kFpu, fpu);
    if (!xsave.empty()) w.put(kXsave, xsave.data(), xsave.size());
    if (xcrs) w.put(kXcrs, *xcrs);
    if (debugregs) w.put(kDebugregs, *debugregs);
    w.put(kMsrs, msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
    w.put(kEvents, events);
    w.put(kMpState, mp_state);
    w.put(kLapic, lapic);
    w.put(kRun, run);
    return w.finish();
}

Result<CpuState> CpuState::decode(std::span<const uint8_t> bytes) {
    Header h{};
    if (bytes.size() < sizeof h)
        return bad("truncated: " + std::to_string(bytes.size()) + " bytes, the header alone is " +
                   std::to_string(sizeof h));
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != kMagic) return bad("not a vCPU state (bad magic)");
    if (h.version > kVersion)
        return bad("format version " + std::to_string(h.version) + " is newer than this build's " +
                   std::to_string(kVersion));
    if (h.version != kVersion)
        return bad("format version " + std::to_string(h.version) + " unknown");
    if (h.total_length != bytes.size())
        return bad("its header says " + std::to_string(h.total_length) + " bytes, " +
                   std::to_string(bytes.size()) + " are there (" +
                   (h.total_length > bytes.size() ? "truncated" : "trailing bytes") + ")");
    CpuState s;
    bool seen[kLastTag + 1] = {};
    size_t at = sizeof h;
    for (uint32_t i = 0; i < h.sections; ++i) {
        SectionHeader sh{};
        if (bytes.size() - at < sizeof sh)
            return bad("section " + std::to_string(i) + " of " + std::to_string(h.sections) +
                       " is cut short");
        std::memcpy(&sh, bytes.data() + at, sizeof sh);
        at += sizeof sh;
        if (sh.length > bytes.size() - at)
            return bad(std::string(tag_name(sh.tag)) + " section of " + std::to_string(sh.length) +
                       " bytes runs past the end");
        auto body = bytes.subspan(at, sh.length);
        at += sh.length;
        if (sh.tag == 0 || sh.tag > kLastTag)
            return bad("unknown section tag " + std::to_string(sh.tag));
        if (seen[sh.tag]) return bad(std::string(tag_name(sh.tag)) + " section given twice");
        seen[sh.tag] = true;
        switch (sh.tag) {
            case kRegs:
                KV_TRY(take(body, sh.tag, s.regs));
                break;
            case kSregs:
                KV_TRY(take(body, sh.tag, s.sregs));
                break;
            case kFpu:
                KV_TRY(take(body, sh.tag, s.fpu));
                break;
            case kXsave:
                if (body.size() != CpuState::kXsaveBytes)
                    return bad("xsave section of " + std::to_string(body.size()) +
                               " bytes (expected " + std::to_string(CpuState::kXsaveBytes) + ")");
                s.xsave.assign(body.begin(), body.end());
                break;
            case kXcrs:
                KV_TRY(take(body, sh.tag, s.xcrs.emplace()));
                if (s.xcrs->nr_xcrs > KVM_MAX_XCRS)
                    return bad("xcrs section lists " + std::to_string(s.xcrs->nr_xcrs) +
                               " XCRs (at most " + std::to_string(KVM_MAX_XCRS) + ")");
                break;
            case kDebugregs:
                KV_TRY(take(body, sh.tag, s.debugregs.emplace()));
                break;
            case kMsrs: {
                if (body.size() % sizeof(kvm_msr_entry) != 0 ||
                    body.size() / sizeof(kvm_msr_entry) > kMaxMsrs)
                    return bad("msrs section of " + std::to_string(body.size()) +
                               " bytes (expected a multiple of " +
                               std::to_string(sizeof(kvm_msr_entry)) + ", at most " +
                               std::to_string(kMaxMsrs) + " MSRs)");
                s.msrs.resize(body.size() / sizeof(kvm_msr_entry));
                if (!body.empty()) std::memcpy(s.msrs.data(), body.data(), body.size());
                break;
            }
            case kEvents:
                KV_TRY(take(body, sh.tag, s.events));
                break;
            case kMpState:
                KV_TRY(take(body, sh.tag, s.mp_state));
                break;
            case kLapic:
                KV_TRY(take(body, sh.tag, s.lapic));
                break;
            case kRun:
                KV_TRY(take(body, sh.tag, s.run));
                if (s.run.sipi_vector > 256) return bad("run section: SIPI vector out of range");
                break;
        }
    }
    if (at != bytes.size())
        return bad(std::to_string(bytes.size() - at) + " bytes after the last section");
    for (uint32_t t : {kRegs, kSregs, kFpu, kMsrs, kEvents, kMpState, kLapic, kRun})
        if (!seen[t]) return bad(std::string("no ") + tag_name(t) + " section");
    return s;
}

std::optional<uint64_t> CpuState::msr(uint32_t index) const {
    for (const auto& m : msrs)
        if (m.index == index) return m.data;
    return std::nullopt;
}

}  // namespace kv
