// One guest vCPU: its KVM fd, its emulated LAPIC and the thread that runs it.
//
// The thread is an explicit state machine:
//   WaitForSipi --SIPI--> Running --HLT--> (waits in Running until an interrupt)
//   any --INIT--> WaitForSipi;  any --stop--> Stopped
// Orthogonal to it, the run state other threads see (run_state()):
//   Parked (never started: another node runs this vCPU) --start()--> Running
//   Running --request_pause(), at the next exit boundary--> Paused --resume()--> Running
//   any --the thread ends--> Finished
// A pause takes effect only between two KVM_RUNs (an exit boundary: registers, the LAPIC
// and the run page are consistent and no exit is half handled), also from HLT and from
// waiting for SIPI. Other threads talk to it only through deliver() (interrupt messages),
// set_extint(), request_stop(), request_pause() and resume(); each of those wakes it: with
// a condition variable when it waits, and with a signal that makes KVM_RUN return
// (immediate_exit) when it is in the guest.
#pragma once

#include <linux/kvm.h>
#include <time.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "memory/shadow_mmu.h"
#include "vcpu/cpu_state.h"
#include "vcpu/ipi_router.h"
#include "vcpu/kvm.h"
#include "vcpu/lapic.h"

namespace kv {

// Port and MMIO accesses a vCPU cannot handle itself (everything but its LAPIC). The
// machine answers them from its device buses, or forwards them to the I/O node.
class IoHandler {
  public:
    virtual ~IoHandler() = default;
    // Return false when nothing is there (reads then see all ones).
    virtual bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) = 0;
    virtual bool mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) = 0;
};

// What a vCPU needs from the machine around it.
struct VcpuEnv {
    IoHandler* io = nullptr;
    IpiRouter* router = nullptr;
    // The guest cannot continue (triple fault, KVM error): stop the machine.
    std::function<void(uint32_t vcpu, bool guest_fault, const std::string& reason)> fatal;
    // ExtINT: the PIC's INTA cycle.
    std::function<uint8_t()> pic_acknowledge;
    // EOI of a level-triggered vector.
    std::function<void(uint8_t vector)> eoi_level;
    // Topology (multi-node guests): the vCPUs of one node form one package of
    // `cores_per_package` cores, APIC ID = node << core_bits | core. Unset: one package of
    // every vCPU, APIC ID = index.
    struct Topology {
        uint32_t apic_id = 0;
        uint32_t cores_per_package = 1;
        uint32_t core_bits = 0;
    };
    std::optional<Topology> topology;
    // Shadow paging under a multi-node guest (memory/shadow_mmu.h): every KVM_RUN passes
    // its gate. Null: none.
    ShadowMmuGuard* shadow = nullptr;
};

enum class VcpuState { WaitForSipi, Running, Stopped };
enum class VcpuRunState { Parked, Running, Paused, Finished };
const char* to_string(VcpuRunState s);

class Vcpu : public InterruptTarget {
  public:
    static Result<std::unique_ptr<Vcpu>> create(VmFd& vm, uint32_t index, uint32_t num_vcpus,
                                                const std::vector<kvm_cpuid_entry2>& supported,
                                                VcpuEnv env);
    ~Vcpu() override;

    uint32_t index() const { return index_; }
    VcpuFd& fd() { return fd_; }
    Lapic& lapic() { return lapic_; }

    // Registers for the boot processor's entry (the loader computes them).
    Status set_boot_state(const kvm_regs& regs, const kvm_sregs& sregs);
    // Starts the thread: the BSP runs at once, APs wait for INIT/SIPI.
    void start(bool bsp);
    // Starts the thread of a vCPU that was never started here, after restore_state(): it
    // goes on as the restored state says (running, or waiting for SIPI).
    void start_restored();
    void request_stop();
    void join();

    // Any thread. request_pause() asks the vCPU to stop at its next exit boundary and
    // returns at once; wait_paused() waits (bounded) until it is there or has finished
    // (false: the deadline passed). resume() lets it run again; the time it spent paused
    // is taken out of its LAPIC timer. A pause requested before start() takes effect as
    // soon as the thread starts.
    void request_pause();
    bool wait_paused(std::chrono::milliseconds timeout);
    void resume();
    VcpuRunState run_state() const;

    // The vCPU's whole state (cpu_state.h), from any thread while it is paused or has never
    // run here (Parked); `msr_indices` is KVM_GET_MSR_INDEX_LIST (Kvm::msr_index_list()),
    // of which the MSRs the vCPU lets read are saved. The LAPIC timer is taken as it stood
    // when the vCPU paused (guest time stands still during a pause).
    Result<CpuState> save_state(std::span<const uint32_t> msr_indices);
    // Loads `s` into this vCPU, which must be paused or parked; when it runs it continues
    // where the saved vCPU stood. The guest TSC (MSR 0x10) is not written: each node keeps
    // its own guest TSC offset, which the caller sets (one TSC across nodes, docs/control.md).
    // A vCPU saved while halted resumes after its HLT, as after a spurious wake-up.
    Status restore_state(const CpuState& s);
    // Nanoseconds this vCPU has spent paused in all (read at any time).
    uint64_t paused_ns() const { return paused_ns_.load(std::memory_order_relaxed); }
    // monotonic_ns() when start() ran (0: never started here).
    uint64_t started_ns() const { return started_ns_.load(std::memory_order_relaxed); }

    void deliver(const InterruptMessage& m) override;
    void set_extint(bool level);

    struct Counters {
        std::array<std::atomic<uint64_t>, 64> exits{};  // by KVM_EXIT_* reason
        std::atomic<uint64_t> interrupts_injected{0}, nmis_injected{0}, halts{0};
        std::atomic<uint64_t> pio_unhandled{0}, mmio_unhandled{0}, kicks{0};
        std::atomic<uint64_t> halted_ns{0};  // time in HLT (waiting for an interrupt)
    };
    const Counters& counters() const { return counters_; }
    void print_counters(FILE* out) const;

    // The last exits of this vCPU, for a post-mortem: on AMD, KVM resets a vCPU before it
    // reports a triple fault, so its registers say nothing afterwards; the history does.
    // Written by the vCPU thread only; printed by it when the guest crashes.
    struct ExitRecord {
        uint64_t seq = 0, t_ns = 0;
        uint32_t reason = 0;  // KVM_EXIT_*, or KVM_EXIT_INTR for EINTR
        uint64_t rip = 0, rsp = 0, rflags = 0, cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
        uint16_t cs = 0;
        uint8_t cpl = 0;
        uint64_t addr = 0, data = 0;  // port or GPA, and the bytes written or read
        uint8_t len = 0, write = 0;
        int16_t injected = -1;  // vector queued with KVM_INTERRUPT before this run, or -1
        uint8_t nmi = 0, window = 0, if_flag = 0, ready = 0;
        kvm_vcpu_events ev{};  // after the exit (KVM_SYNC_X86_EVENTS)
    };
    static constexpr size_t kExitHistory = 48;
    void print_exit_history(FILE* out) const;

  private:
    Vcpu(uint32_t index, uint32_t apic_id, VcpuFd fd, VcpuEnv env);
    void start_thread();
    void thread_main();
    bool run_once();  // false when the vCPU stops
    void inject_pending();
    bool handle_exit();  // false when the vCPU stops
    void handle_pio(kvm_run* run);
    void handle_mmio(kvm_run* run);
    void wait_halted();
    void wait_for_sipi();
    bool pause_point();            // at an exit boundary: parks while a pause is asked; false: stop
    void complete_pending_exit();  // KVM_RUN with immediate_exit: KVM ends the last exit
    bool process_init_sipi();      // applies a pending INIT/SIPI; true if state changed
    void kick();
    void arm_timer(uint64_t deadline_ns);
    bool interruptible_pending(bool if_flag);

    uint32_t index_;
    VcpuFd fd_;
    VcpuEnv env_;
    size_t shadow_slot_ = 0;  // its slot in env_.shadow
    Lapic lapic_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    VcpuState state_ = VcpuState::WaitForSipi;
    bool stop_ = false;
    bool pause_ = false;           // under mu_: a pause is asked
    bool paused_ = false;          // under mu_: the thread is parked at its pause point
    uint64_t pause_start_ns_ = 0;  // under mu_: when it parked (valid while paused_)
    // save_state(): whether KVM lets this vCPU write each MSR index (one caller at a time).
    std::map<uint32_t, bool> msr_writable_;
    bool started_ = false;   // under mu_: start() ran
    bool finished_ = false;  // under mu_: the thread has ended
    std::atomic<uint64_t> paused_ns_{0};
    std::atomic<uint64_t> started_ns_{0};
    bool init_pending_ = false;
    bool restored_ = false;  // under mu_: restore_state() replaced the state since the pause
    std::optional<uint8_t> sipi_vector_;
    std::atomic<bool> nmi_pending_{false};
    std::atomic<bool> extint_{false};

    // Architectural reset state captured at creation, for INIT.
    kvm_regs reset_regs_{};
    kvm_sregs reset_sregs_{};
    kvm_fpu reset_fpu_{};

    std::thread thread_;
    std::atomic<pthread_t> tid_{};
    std::atomic<bool> thread_ready_{false};
    timer_t timer_{};
    bool timer_created_ = false;
    uint64_t armed_deadline_ = 0;
    Counters counters_;
    bool sync_regs_ = false;  // KVM copies regs, sregs and events to the run page
    std::array<ExitRecord, kExitHistory> history_{};
    uint64_t history_seq_ = 0;
    ExitRecord pending_record_{};  // what the next KVM_RUN starts with (injections)
    void record_exit(int err);
};

const char* exit_reason_name(uint32_t reason);

}  // namespace kv
