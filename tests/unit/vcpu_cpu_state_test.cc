// The vCPU state value (vcpu/cpu_state.h): the encoded form round-trips every part, and
// every kind of damage is refused with a message naming it; the LAPIC's state, its timer
// included, carries over to another LAPIC at another time.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "vcpu/cpu_state.h"
#include "vcpu/lapic.h"

namespace kv {
namespace {

template <class T>
void fill(T& v, uint8_t seed) {
    auto* b = reinterpret_cast<uint8_t*>(&v);
    for (size_t i = 0; i < sizeof v; ++i) b[i] = uint8_t(seed + i * 7);
}

CpuState sample() {
    CpuState s;
    fill(s.regs, 1);
    fill(s.sregs, 2);
    fill(s.fpu, 3);
    s.xsave.resize(CpuState::kXsaveBytes);
    for (size_t i = 0; i < s.xsave.size(); ++i) s.xsave[i] = uint8_t(i * 13);
    s.xcrs.emplace();
    s.xcrs->nr_xcrs = 1;
    s.xcrs->xcrs[0] = {0, 0, 7};
    s.debugregs.emplace();
    fill(*s.debugregs, 4);
    for (uint32_t i = 0; i < 40; ++i) s.msrs.push_back(kvm_msr_entry{0xC0000080 + i, 0, i * 1001});
    fill(s.events, 5);
    s.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
    fill(s.lapic, 6);
    s.run = {1, 0, 0x10, 1, 0, 0};
    return s;
}

std::string refused(const std::vector<uint8_t>& bytes) {
    auto r = CpuState::decode(bytes);
    return r ? "accepted" : r.error().message;
}

TEST(CpuState, RoundTripKeepsEveryPart) {
    const CpuState s = sample();
    const auto bytes = s.encode();
    auto d = CpuState::decode(bytes);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(std::memcmp(&d->regs, &s.regs, sizeof s.regs), 0);
    EXPECT_EQ(std::memcmp(&d->sregs, &s.sregs, sizeof s.sregs), 0);
    EXPECT_EQ(std::memcmp(&d->fpu, &s.fpu, sizeof s.fpu), 0);
    EXPECT_EQ(d->xsave, s.xsave);
    ASSERT_TRUE(d->xcrs && d->debugregs);
    EXPECT_EQ(d->xcrs->xcrs[0].value, 7u);
    EXPECT_EQ(std::memcmp(&*d->debugregs, &*s.debugregs, sizeof *s.debugregs), 0);
    ASSERT_EQ(d->msrs.size(), 40u);
    EXPECT_EQ(d->msr(0xC0000080 + 39), 39u * 1001);
    EXPECT_EQ(d->msr(0x10), std::nullopt);
    EXPECT_EQ(std::memcmp(&d->events, &s.events, sizeof s.events), 0);
    EXPECT_EQ(d->mp_state.mp_state, uint32_t(KVM_MP_STATE_RUNNABLE));
    EXPECT_EQ(std::memcmp(&d->lapic, &s.lapic, sizeof s.lapic), 0);
    EXPECT_EQ(d->run.sipi_vector, 0x10u);
    EXPECT_EQ(d->run.nmi_pending, 1u);
    EXPECT_EQ(d->encode(), bytes);  // nothing lost, nothing added
}

TEST(CpuState, OptionalPartsMayBeAbsent) {
    CpuState s = sample();
    s.xsave.clear();
    s.xcrs.reset();
    s.debugregs.reset();
    s.msrs.clear();
    auto d = CpuState::decode(s.encode());
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->xsave.empty());
    EXPECT_FALSE(d->xcrs || d->debugregs);
    EXPECT_TRUE(d->msrs.empty());
}

TEST(CpuState, EveryTruncationIsRefused) {
    const auto bytes = sample().encode();
    for (size_t n = 0; n < bytes.size(); n += (n < 64 ? 1 : 97)) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(n));
        EXPECT_NE(refused(cut), "accepted") << n;
    }
    EXPECT_EQ(refused({1, 2, 3}), "cpu state: truncated: 3 bytes, the header alone is 16");
}

TEST(CpuState, DamageIsRefusedNamingIt) {
    const auto good = sample().encode();
    auto with = [&](size_t off, uint32_t v) {
        auto b = good;
        std::memcpy(b.data() + off, &v, sizeof v);
        return refused(b);
    };
    EXPECT_EQ(with(0, 0x12345678), "cpu state: not a vCPU state (bad magic)");
    {
        auto b = good;
        b[4] = 2;  // version 2
        EXPECT_EQ(refused(b), "cpu state: format version 2 is newer than this build's 1");
    }
    {
        auto b = good;
        b.push_back(0);
        EXPECT_NE(refused(b).find("trailing bytes"), std::string::npos) << refused(b);
    }
    // The first section is regs: its tag at 16, its length at 20.
    EXPECT_EQ(with(16, 99), "cpu state: unknown section tag 99");
    EXPECT_EQ(with(16, 2), "cpu state: sregs section of 144 bytes (expected 312)");
    EXPECT_EQ(with(16 + 8 + sizeof(kvm_regs), 1), "cpu state: regs section given twice");
    EXPECT_EQ(with(20, 8), "cpu state: regs section of 8 bytes (expected 144)");
    EXPECT_EQ(with(20, 1u << 30), "cpu state: regs section of 1073741824 bytes runs past the end");
    {
        auto b = good;
        const uint32_t len = 100;  // a regs section 100 bytes long, moved data and all
        std::memcpy(b.data() + 20, &len, sizeof len);
        EXPECT_NE(refused(b), "accepted");
    }
    {
        // One section fewer than there are: the last one is counted as trailing bytes.
        auto b = good;
        uint32_t sections = 0;
        std::memcpy(&sections, b.data() + 12, 4);
        --sections;
        std::memcpy(b.data() + 12, &sections, 4);
        EXPECT_NE(refused(b).find("bytes after the last section"), std::string::npos) << refused(b);
    }
}

TEST(CpuState, MissingOrMisSizedSectionsAreRefused) {
    CpuState s = sample();
    s.msrs.resize(CpuState::kMaxMsrs + 1);
    EXPECT_NE(refused(s.encode()).find("msrs section of"), std::string::npos);
    s = sample();
    s.xcrs->nr_xcrs = KVM_MAX_XCRS + 1;
    EXPECT_NE(refused(s.encode()).find("xcrs section lists"), std::string::npos);
    s = sample();
    s.run.sipi_vector = 300;
    EXPECT_EQ(refused(s.encode()), "cpu state: run section: SIPI vector out of range");
    s = sample();
    s.xsave.resize(100);
    EXPECT_EQ(refused(s.encode()), "cpu state: xsave section of 100 bytes (expected " +
                                       std::to_string(CpuState::kXsaveBytes) + ")");
    // Drop the regs section by hand: header + regs section removed, counts fixed.
    auto b = sample().encode();
    const size_t regs_len = 8 + sizeof(kvm_regs);
    b.erase(b.begin() + 16, b.begin() + 16 + long(regs_len));
    uint32_t total = uint32_t(b.size()), sections = 0;
    std::memcpy(&sections, b.data() + 12, 4);
    --sections;
    std::memcpy(b.data() + 8, &total, 4);
    std::memcpy(b.data() + 12, &sections, 4);
    EXPECT_EQ(refused(b), "cpu state: no regs section");
}

// A LAPIC saved with a running one-shot timer and pending interrupts, restored into
// another LAPIC much later (another host's clock): the same registers, IRR and ISR, and
// the timer fires after the time it had left, not at the old absolute deadline.
TEST(CpuState, LapicStateCarriesItsTimerRelatively) {
    Lapic a(0, 0, {}), b(1, 1, {});
    const uint64_t t0 = 1'000'000'000;
    a.write(0xF0, 0x1FF, t0);       // SVR: enabled
    a.write(0x3E0, 0xB, t0);        // divide by 1
    a.write(0x320, 0x40, t0);       // LVT timer: one-shot, vector 0x40
    a.write(0x380, 1'000'000, t0);  // 1 ms at 1 GHz
    ASSERT_TRUE(a.accept(0x51, false));
    const LapicState s = a.save(t0 + 400'000);  // 0.4 ms in: 0.6 ms left
    EXPECT_EQ(s.timer_running, 1u);
    EXPECT_EQ(s.timer_elapsed_ns, 400'000u);
    EXPECT_EQ(s.timer_remaining_ns, 600'000u);

    const uint64_t t1 = 50'000'000'000;  // elsewhere, later
    b.restore(s, t1);
    EXPECT_EQ(b.timer_deadline(), t1 + 600'000);
    EXPECT_EQ(b.addressing().apic_id, 0);  // the saved LAPIC's identity came along
    EXPECT_EQ(b.pending_vector(), std::optional<uint8_t>(0x51));
    EXPECT_EQ(b.poll_timer(t1 + 599'999), t1 + 600'000);  // not yet
    b.poll_timer(t1 + 600'000);
    const LapicState after = b.save(t1 + 600'000);
    EXPECT_TRUE(after.irr[0x40 / 32] & (1u << (0x40 % 32)));  // fired, on time
    EXPECT_EQ(after.timer_running, 0u);                       // one-shot: once
    // The current count continues from where it stood (0.4 ms of 1 ms elapsed).
    Lapic c(2, 2, {});
    c.restore(s, t1);
    EXPECT_EQ(c.read(0x390, t1), 600'000u);
}

}  // namespace
}  // namespace kv
