// Page tables under shadow paging (memory/shadow_mmu.h): which pages count as page tables,
// and the guard that holds vCPUs out of guest mode until KVM's shadow pages are gone.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <thread>

#include "memory/shadow_mmu.h"

namespace kv {
namespace {

constexpr uint64_t kMax = uint64_t{1} << 32;

std::array<uint8_t, 4096> page_of(std::initializer_list<uint64_t> entries) {
    std::array<uint8_t, 4096> p{};
    size_t i = 0;
    for (uint64_t e : entries) std::memcpy(p.data() + 8 * i++, &e, 8);
    return p;
}

TEST(ShadowMmu, AZeroPageIsNoPageTable) {
    EXPECT_FALSE(looks_like_page_table(page_of({}), kMax));
}

TEST(ShadowMmu, PresentEntriesInsideGuestMemoryArePageTable) {
    // A PTE with NX and Linux's software bits (62:52), a PMD entry to a table, a
    // non-present swap entry with arbitrary bits, an MMIO mapping below 4 GiB.
    EXPECT_TRUE(looks_like_page_table(page_of({0x8000000000203063ull, 0x0000000000202067ull,
                                               0xdeadbeefcafe0ull, 0x00000000fee00073ull}),
                                      kMax));
}

TEST(ShadowMmu, KernelPointersAndAddressesPastMemoryAreNot) {
    // A kernel pointer has reserved bits 51:46 set; a present entry past max_gpa cannot be
    // one of this guest's.
    EXPECT_FALSE(looks_like_page_table(page_of({0x1003, 0xffff888000001001ull}), kMax));
    EXPECT_FALSE(looks_like_page_table(page_of({0x1003, 0x200000003ull}), kMax));
    EXPECT_TRUE(looks_like_page_table(page_of({0x1003, 0x200000003ull}), uint64_t{1} << 34));
}

struct Guard {
    std::atomic<int> zaps{0};
    std::atomic<int> kicks{0};
    std::atomic<bool> fail_zap{false};
    std::promise<std::string> error;
    ShadowMmuGuard g{[this]() -> Status {
                         zaps.fetch_add(1);
                         if (fail_zap) return Error{"KVM_SET_USER_MEMORY_REGION: EINVAL"};
                         return {};
                     },
                     [this](const Error& e) { error.set_value(e.message); }};
    size_t slot = g.add_vcpu([this] { kicks.fetch_add(1); });
};

auto never_blocked = [](uint64_t, bool) { return false; };

// A vCPU thread blocked inside KVM_RUN (in a fault the engine has not resolved): it has
// entered t's gate and stays in, its thread id in tid, until let_go().
struct BlockedVcpu {
    Guard& t;
    std::promise<pid_t> entered;
    std::promise<void> done;
    std::thread thread{[this] {
        t.g.enter(t.slot);
        entered.set_value(::gettid());
        done.get_future().wait();
        t.g.leave(t.slot);
    }};
    const pid_t tid = entered.get_future().get();

    explicit BlockedVcpu(Guard& guard) : t(guard) {}
    ~BlockedVcpu() {
        if (thread.joinable()) let_go();
    }
    // It leaves the gate (returns from KVM_RUN); its thread ends.
    void let_go() {
        done.set_value();
        thread.join();
    }
};

TEST(ShadowMmu, HoldKicksAVcpuInGuestModeAndWaitsUntilItLeaves) {
    Guard t;
    t.g.enter(t.slot);  // "in guest mode"
    std::atomic<bool> returned{false};
    auto held = std::async(std::launch::async, [&] {
        t.g.hold(never_blocked);
        returned = true;
    });
    // It kicks the vCPU first: then it can only be waiting for the vCPU.
    while (t.kicks.load() == 0) std::this_thread::yield();
    EXPECT_FALSE(returned.load()) << "hold() returned with a vCPU in guest mode";
    EXPECT_EQ(t.zaps.load(), 0);
    t.g.leave(t.slot);
    held.get();  // returns once the vCPU is out
    t.g.release();
}

TEST(ShadowMmu, AVcpuBlockedInAnUnresolvedFaultCountsAsOut) {
    Guard t;
    BlockedVcpu vcpu(t);
    t.g.note_fault(vcpu.tid, 7, false);
    // Page 7 is still missing for it: hold() returns with the vCPU still inside.
    t.g.hold([](uint64_t pfn, bool) { return pfn == 7; });
    EXPECT_EQ(t.kicks.load(), 1);
    t.g.resolved(7, false);
    t.g.release();
    vcpu.let_go();
}

TEST(ShadowMmu, AResolvedFaultNoLongerCountsAsOut) {
    Guard t;
    t.g.enter(t.slot);
    t.g.note_fault(::gettid(), 7, false);
    t.g.resolved(7, false);  // readable: the vCPU may be back in guest mode
    std::atomic<bool> returned{false};
    auto held = std::async(std::launch::async, [&] {
        t.g.hold([](uint64_t pfn, bool) { return pfn == 7; });
        returned = true;
    });
    while (t.kicks.load() == 0) std::this_thread::yield();
    EXPECT_FALSE(returned.load()) << "hold() took a resolved fault for a blocked vCPU";
    t.g.leave(t.slot);
    held.get();
    t.g.release();
}

TEST(ShadowMmu, AWriteFaultOutlivesAReadOnlyResolution) {
    // KVM's read fault ends with a Shared install; its write fault on the same page is
    // noted next; a later Wake of the page (still only readable) must not forget it, or
    // hold() would wait for a vCPU that is blocked, while the fault waits for the engine.
    Guard t;
    BlockedVcpu vcpu(t);
    t.g.note_fault(vcpu.tid, 7, true);
    t.g.resolved(7, false);
    t.g.hold([](uint64_t pfn, bool write) { return pfn == 7 && write; });  // returns
    t.g.resolved(7, true);
    t.g.release();
    vcpu.let_go();
}

TEST(ShadowMmu, AVcpuEntersOnlyAfterTheZap) {
    Guard t;
    t.g.hold(never_blocked);  // no vCPU inside: returns at once
    auto entered = std::async(std::launch::async, [&] {
        t.g.enter(t.slot);  // waits: held out
        return t.zaps.load();
    });
    t.g.release();
    EXPECT_EQ(entered.get(), 1) << "the vCPU entered before KVM's shadow pages were dropped";
    t.g.leave(t.slot);
}

TEST(ShadowMmu, AFailedZapIsReportedAndLetsTheVcpusGo) {
    Guard t;
    t.fail_zap = true;
    t.g.hold(never_blocked);
    t.g.release();
    EXPECT_NE(t.error.get_future().get().find("KVM_SET_USER_MEMORY_REGION"), std::string::npos);
    t.g.enter(t.slot);  // not held: the machine stops, and the vCPU must see it
    t.g.leave(t.slot);
}

TEST(ShadowMmu, AbandonedItHoldsNothing) {
    Guard t;
    t.g.enter(t.slot);
    t.g.abandon();
    t.g.hold(never_blocked);  // would wait for the vCPU inside otherwise
    t.g.release();
    t.g.leave(t.slot);
    EXPECT_EQ(t.kicks.load(), 0);
}

}  // namespace
}  // namespace kv
