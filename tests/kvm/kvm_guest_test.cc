// Tier 3: the freestanding test guest on a real KVM (docs/testing-kvm.md). Each test
// boots a fresh TestVm, runs one scenario and checks what the guest reports against what
// the vCPU, LAPIC and IPI router code counted on the host side.
//
// `kvm_guest_test --probe` only says whether this machine's /dev/kvm can run the guest
// (tests/kvm/run.sh uses it to choose between here and a lab host).
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tests/kvm/kvm_harness.h"
#include "vcpu/lapic.h"

namespace kv::kvmtest {
namespace {

constexpr auto kTimeout = std::chrono::seconds(20);

// The LAPIC timer's period: initial count x divider at the model's bus clock (Intel SDM
// vol. 3, 11.5.4: the divide configuration register encodings).
uint64_t timer_period_ns(uint32_t divide_reg, uint32_t initial) {
    uint64_t divider = 0;
    switch (divide_reg) {
        case 0x0:
            divider = 2;
            break;
        case 0x1:
            divider = 4;
            break;
        case 0x2:
            divider = 8;
            break;
        case 0x3:
            divider = 16;
            break;
        case 0x8:
            divider = 32;
            break;
        case 0x9:
            divider = 64;
            break;
        case 0xA:
            divider = 128;
            break;
        case 0xB:
            divider = 1;
            break;
    }
    return uint64_t(initial) * divider * 1'000'000'000ull / Lapic::kBusHz;
}

std::unique_ptr<TestVm> make_vm(uint32_t vcpus) {
    auto vm = TestVm::create(vcpus);
    if (!vm) {
        ADD_FAILURE() << "cannot build a KVM test VM with " << vcpus
                      << " vCPU(s): " << vm.error().message
                      << " (these tests need a /dev/kvm that runs freestanding long-mode "
                         "guests; tests/kvm/run.sh runs them in a lab host otherwise)";
        return nullptr;
    }
    return std::move(vm).value();
}

uint64_t exits(const Vcpu& v, uint32_t reason) {
    return v.counters().exits[reason].load();
}

TEST(KvmGuest, Serial) {
    auto vm = make_vm(1);
    ASSERT_TRUE(vm);
    kvt_params p{};
    p.scenario = KVT_SCENARIO_SERIAL;
    auto run = vm->run(p, kTimeout);
    ASSERT_TRUE(run) << run.error().message;
    ASSERT_TRUE(run->passed()) << run->describe();
    // The guest checked EFER.LMA itself: it is in long mode.
    EXPECT_EQ(run->serial, "kvt: hello from APIC 0, EFER.LMA=1\n") << run->describe();
    // Byte by byte: one port exit per character, plus the exit port.
    EXPECT_EQ(exits(vm->vcpu(0), KVM_EXIT_IO), run->serial.size() + 1) << run->describe();
    EXPECT_TRUE(run->unexpected_io.empty()) << run->describe();
}

TEST(KvmGuest, Ipi) {
    auto vm = make_vm(2);
    ASSERT_TRUE(vm);
    kvt_params p{};
    p.scenario = KVT_SCENARIO_IPI;
    p.ipi_fixed_count = 5;
    auto run = vm->run(p, kTimeout);
    ASSERT_TRUE(run) << run.error().message;
    ASSERT_TRUE(run->passed()) << run->describe();

    // The guest's view: the AP started once (the second SIPI was ignored) and handled
    // every IPI sent to it (5 physical, 1 all-excluding-self, 1 logical); the BSP none.
    const uint32_t sent = p.ipi_fixed_count + 2;
    const auto& r = run->results;
    EXPECT_EQ(r.ap_started, 1u) << run->describe();
    EXPECT_EQ(r.ap_ready, 1u) << run->describe();
    EXPECT_EQ(r.ipis_sent, sent) << run->describe();
    EXPECT_EQ(r.ipi_received[1], sent) << run->describe();
    EXPECT_EQ(r.ipi_received[0], 0u) << run->describe();

    // The host's view: every ICR write went through the router, each to one local vCPU.
    const auto& c = vm->router().counters();
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Init)].load(), 1u) << run->describe();
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::StartUp)].load(), 2u) << run->describe();
    EXPECT_EQ(c.by_mode[size_t(DeliveryMode::Fixed)].load(), sent) << run->describe();
    EXPECT_EQ(c.local.load(), 1u + 2u + sent) << run->describe();
    EXPECT_EQ(c.remote.load(), 0u) << run->describe();
    EXPECT_EQ(c.dropped.load(), 0u) << run->describe();
    // And vCPU 1 was injected exactly those interrupts, vCPU 0 none.
    EXPECT_EQ(vm->vcpu(1).counters().interrupts_injected.load(), sent) << run->describe();
    EXPECT_EQ(vm->vcpu(0).counters().interrupts_injected.load(), 0u) << run->describe();
    EXPECT_TRUE(run->unexpected_io.empty()) << run->describe();
}

// Checks the time between the guest's TIMER_START and TIMER_DONE marks: at least the
// programmed time (an early or back-to-back timer fails), at most a generous multiple.
void expect_elapsed(const GuestRun& run, uint64_t expected_ns) {
    auto start = run.mark_ns(KVT_MARK_TIMER_START), done = run.mark_ns(KVT_MARK_TIMER_DONE);
    ASSERT_TRUE(start && done) << "the guest did not write both timer marks\n" << run.describe();
    uint64_t elapsed = *done - *start;
    EXPECT_GE(elapsed, expected_ns) << "ticks came faster than programmed\n" << run.describe();
    EXPECT_LE(elapsed, 10 * expected_ns + 1'000'000'000ull)
        << "ticks came far slower than programmed\n"
        << run.describe();
    std::printf("timer: %.3f ms elapsed for %.3f ms programmed\n", double(elapsed) / 1e6,
                double(expected_ns) / 1e6);
}

TEST(KvmGuest, TimerPeriodic) {
    auto vm = make_vm(1);
    ASSERT_TRUE(vm);
    kvt_params p{};
    p.scenario = KVT_SCENARIO_TIMER_PERIODIC;
    p.timer_divide = 0x3;      // divide by 16
    p.timer_initial = 125000;  // 2 ms at the 1 GHz model bus clock
    p.timer_ticks = 25;
    auto run = vm->run(p, kTimeout);
    ASSERT_TRUE(run) << run.error().message;
    ASSERT_TRUE(run->passed()) << run->describe();
    EXPECT_EQ(run->results.timer_ticks, p.timer_ticks) << run->describe();
    EXPECT_EQ(vm->vcpu(0).counters().interrupts_injected.load(), p.timer_ticks) << run->describe();
    expect_elapsed(*run, p.timer_ticks * timer_period_ns(p.timer_divide, p.timer_initial));
    EXPECT_TRUE(run->unexpected_io.empty()) << run->describe();
}

void one_shot(bool rewrite_lvt) {
    auto vm = make_vm(1);
    ASSERT_TRUE(vm);
    kvt_params p{};
    p.scenario = KVT_SCENARIO_TIMER_ONESHOT;
    p.timer_divide = 0xB;          // divide by 1
    p.timer_initial = 10'000'000;  // 10 ms
    p.oneshot_quiet_us = 30'000;   // then watch three periods for a second tick
    p.oneshot_rewrite_lvt = rewrite_lvt;
    auto run = vm->run(p, kTimeout);
    ASSERT_TRUE(run) << run.error().message;
    ASSERT_TRUE(run->passed()) << run->describe();
    EXPECT_EQ(run->results.timer_ticks, 1u) << run->describe();
    EXPECT_EQ(run->results.timer_count_after, 0u) << run->describe();
    EXPECT_EQ(vm->vcpu(0).counters().interrupts_injected.load(), 1u) << run->describe();
    expect_elapsed(*run, timer_period_ns(p.timer_divide, p.timer_initial));
    EXPECT_TRUE(run->unexpected_io.empty()) << run->describe();
}

TEST(KvmGuest, TimerOneShot) {
    one_shot(false);
}

// Writing LVT Timer (mode, vector, mask) does not restart the count (Intel SDM vol. 3,
// 11.5.4): a one-shot timer that fired stays quiet when its LVT entry is written again.
TEST(KvmGuest, TimerOneShotLvtWrite) {
    one_shot(true);
}

// A running vCPU paused from another thread stops at its next exit boundary: the count
// it writes stands still while it is paused (watched for 200 ms: the behaviour asserted,
// not a wait for something to happen), its run state says Paused, and after resume() the
// count moves again. Three rounds; then the guest is told to stop and ends normally.
TEST(KvmGuest, PauseResume) {
    auto vm = make_vm(1);
    ASSERT_TRUE(vm);
    kvt_params p{};
    p.scenario = KVT_SCENARIO_COUNT;
    const Gpa count_gpa(KVT_RESULTS_GPA + offsetof(kvt_results, count));
    const Gpa stop_gpa(KVT_PARAMS_GPA + offsetof(kvt_params, count_stop));
    std::vector<std::string> problems;
    auto during = [&](TestVm& t) {
        auto count = [&] {
            uint64_t c = 0;
            if (!t.memory().read_obj(count_gpa, c).ok()) problems.push_back("count unreadable");
            return c;
        };
        // Bounded wait for the count to pass `v` (the guest runs: it must).
        auto moves_past = [&](uint64_t v) {
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            while (count() <= v)
                if (std::chrono::steady_clock::now() > deadline) return false;
            return true;
        };
        Vcpu& v = t.vcpu_mut(0);
        if (!moves_past(0)) problems.push_back("the guest never started counting");
        for (int round = 0; round < 3 && problems.empty(); ++round) {
            const std::string r = "round " + std::to_string(round) + ": ";
            v.request_pause();
            if (!v.wait_paused(std::chrono::seconds(30))) {
                problems.push_back(r + "the vCPU did not pause within 30 s");
                break;
            }
            if (v.run_state() != VcpuRunState::Paused)
                problems.push_back(r + "run state " + to_string(v.run_state()) + " after pausing");
            const uint64_t exits_paused = v.counters().exits[KVM_EXIT_INTR].load();
            const uint64_t at_pause = count();
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            const uint64_t later = count();
            if (later != at_pause)
                problems.push_back(r + "the count moved while paused: " + std::to_string(at_pause) +
                                   " -> " + std::to_string(later));
            if (v.counters().exits[KVM_EXIT_INTR].load() != exits_paused)
                problems.push_back(r + "the vCPU entered the guest while paused");
            v.resume();
            if (!moves_past(later)) problems.push_back(r + "the count did not move after resume");
            if (v.run_state() != VcpuRunState::Running)
                problems.push_back(r + "run state " + to_string(v.run_state()) + " after resume");
        }
        uint32_t one = 1;
        if (!t.memory().write_obj(stop_gpa, one).ok()) problems.push_back("cannot stop the guest");
    };
    auto run = vm->run(p, std::chrono::seconds(120), during);
    ASSERT_TRUE(run) << run.error().message;
    for (const auto& pr : problems) ADD_FAILURE() << pr;
    EXPECT_TRUE(run->passed()) << run->describe();
    EXPECT_GT(run->results.count, 0u);
    EXPECT_GE(vm->vcpu(0).paused_ns(), 3 * 200'000'000ull);
}

// The vCPU state value on a real KVM: a counting vCPU is paused, its whole state saved
// and encoded, its registers wrecked (RIP, RSP and RFLAGS of nonsense: run like that it
// would fault at once), the decoded state restored, and after resume the count goes on
// and the guest ends normally. A second save after the restore equals the first, but for
// the TSC (which runs) and the LAPIC timer's times.
TEST(KvmGuest, StateSaveRestore) {
    auto vm = make_vm(1);
    ASSERT_TRUE(vm);
    auto msr_list = vm->kvm().msr_index_list();
    ASSERT_TRUE(msr_list) << msr_list.error().message;
    kvt_params p{};
    p.scenario = KVT_SCENARIO_COUNT;
    const Gpa count_gpa(KVT_RESULTS_GPA + offsetof(kvt_results, count));
    const Gpa stop_gpa(KVT_PARAMS_GPA + offsetof(kvt_params, count_stop));
    std::vector<std::string> problems;
    size_t msrs_saved = 0, encoded_bytes = 0;
    auto during = [&](TestVm& t) {
        auto count = [&] {
            uint64_t c = 0;
            if (!t.memory().read_obj(count_gpa, c).ok()) problems.push_back("count unreadable");
            return c;
        };
        auto moves_past = [&](uint64_t v) {
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            while (count() <= v)
                if (std::chrono::steady_clock::now() > deadline) return false;
            return true;
        };
        Vcpu& v = t.vcpu_mut(0);
        if (!moves_past(0)) problems.push_back("the guest never started counting");
        v.request_pause();
        if (!v.wait_paused(std::chrono::seconds(30))) {
            problems.push_back("the vCPU did not pause");
            return;
        }
        auto saved = v.save_state(*msr_list);
        if (!saved) {
            problems.push_back("save: " + saved.error().message);
            v.resume();
            return;
        }
        msrs_saved = saved->msrs.size();
        const auto bytes = saved->encode();
        encoded_bytes = bytes.size();
        auto decoded = CpuState::decode(bytes);
        if (!decoded) problems.push_back("decode: " + decoded.error().message);
        kvm_regs wreck = saved->regs;
        wreck.rip = 0xdead0000;
        wreck.rsp = 0x1;
        wreck.rflags = 0x2;
        if (!v.fd().set_regs(wreck).ok()) problems.push_back("cannot wreck the registers");
        if (decoded) {
            if (auto st = v.restore_state(*decoded); !st)
                problems.push_back("restore: " + st.error().message);
            auto again = v.save_state(*msr_list);
            if (!again) {
                problems.push_back("second save: " + again.error().message);
            } else {
                if (std::memcmp(&again->regs, &saved->regs, sizeof saved->regs) != 0)
                    problems.push_back("registers differ after the restore");
                if (std::memcmp(&again->sregs, &saved->sregs, sizeof saved->sregs) != 0)
                    problems.push_back("special registers differ after the restore");
                if (again->xsave != saved->xsave) problems.push_back("XSAVE area differs");
                // Not the counters that run: the TSC, Hyper-V's VP runtime and reference
                // time count.
                auto runs = [](uint32_t i) {
                    return i == 0x10 || i == 0x40000010 || i == 0x40000020;
                };
                for (const auto& m : saved->msrs)
                    if (!runs(m.index) && again->msr(m.index) != m.data)
                        problems.push_back("MSR " + std::to_string(m.index) + " differs");
                LapicState a = again->lapic, b = saved->lapic;
                a.timer_elapsed_ns = b.timer_elapsed_ns = a.timer_remaining_ns =
                    b.timer_remaining_ns = 0;
                if (std::memcmp(&a, &b, sizeof a) != 0) problems.push_back("LAPIC differs");
            }
        }
        const uint64_t at = count();
        v.resume();
        if (!moves_past(at)) problems.push_back("the count did not move after the restore");
        uint32_t one = 1;
        if (!t.memory().write_obj(stop_gpa, one).ok()) problems.push_back("cannot stop the guest");
    };
    auto run = vm->run(p, std::chrono::seconds(120), during);
    ASSERT_TRUE(run) << run.error().message;
    for (const auto& pr : problems) ADD_FAILURE() << pr;
    EXPECT_TRUE(run->passed()) << run->describe();
    EXPECT_GT(msrs_saved, 10u) << "KVM_GET_MSR_INDEX_LIST gave " << msr_list->size();
    std::printf("vCPU state: %zu MSRs of %zu listed, %zu bytes encoded\n", msrs_saved,
                msr_list->size(), encoded_bytes);
}

}  // namespace
}  // namespace kv::kvmtest

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--probe") == 0) {
            auto r = kv::kvmtest::probe();
            if (!r) {
                std::printf("kvm probe: no: %s\n", r.error().message.c_str());
                return 1;
            }
            std::printf("kvm probe: yes: %s\n", r->c_str());
            return 0;
        }
    }
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
