#include "vcpu/vcpu.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "base/log.h"
#include "vcpu/cpuid.h"
#include "vmm/devices/clock.h"

namespace kv {

namespace {

constexpr uint32_t kMsrTsc = 0x10;  // IA32_TIME_STAMP_COUNTER

constexpr int kKickSignal = SIGUSR1;
thread_local kvm_run* tl_run = nullptr;

// Async-signal-safe: make a KVM_RUN in progress (or the next one) return at once.
void kick_handler(int) {
    if (tl_run) tl_run->immediate_exit = 1;
}

void install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = kick_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
        sigaction(kKickSignal, &sa, nullptr);
    });
}

// Set when a guest crashed: every vCPU thread prints its exit history as it ends.
std::atomic<bool> g_dump_history{false};

constexpr uint32_t kMsrMiscEnable = 0x1A0;
constexpr uint32_t kMsrMtrrDefType = 0x2FF;
constexpr uint32_t kMsrK7Hwcr = 0xC0010015;

}  // namespace

const char* exit_reason_name(uint32_t r) {
    switch (r) {
        case KVM_EXIT_UNKNOWN:
            return "unknown";
        case KVM_EXIT_EXCEPTION:
            return "exception";
        case KVM_EXIT_IO:
            return "io";
        case KVM_EXIT_HYPERCALL:
            return "hypercall";
        case KVM_EXIT_DEBUG:
            return "debug";
        case KVM_EXIT_HLT:
            return "hlt";
        case KVM_EXIT_MMIO:
            return "mmio";
        case KVM_EXIT_IRQ_WINDOW_OPEN:
            return "irq-window";
        case KVM_EXIT_SHUTDOWN:
            return "shutdown";
        case KVM_EXIT_FAIL_ENTRY:
            return "fail-entry";
        case KVM_EXIT_INTR:
            return "intr";
        case KVM_EXIT_INTERNAL_ERROR:
            return "internal-error";
        case KVM_EXIT_SYSTEM_EVENT:
            return "system-event";
        case KVM_EXIT_X86_RDMSR:
            return "rdmsr";
        case KVM_EXIT_X86_WRMSR:
            return "wrmsr";
        default:
            return "other";
    }
}

Result<std::unique_ptr<Vcpu>> Vcpu::create(VmFd& vm, uint32_t index, uint32_t num_vcpus,
                                           const std::vector<kvm_cpuid_entry2>& supported,
                                           VcpuEnv env) {
    auto fd = vm.create_vcpu(index);
    if (!fd) return fd.error();
    // One package per node: siblings in a package share their delay calibration instead
    // of each recalibrating against jiffies.
    VcpuEnv::Topology topo =
        env.topology.value_or(VcpuEnv::Topology{index, num_vcpus, bits_for(num_vcpus)});
    std::unique_ptr<Vcpu> v(new Vcpu(index, topo.apic_id, std::move(fd).value(), std::move(env)));
    // The guard kicks only a vCPU inside KVM_RUN (its thread runs): the signal alone, no
    // lock (the guard kicks with the engine's lock held; the vCPU's own lock may be held by
    // its thread while it waits on a fault the engine serves).
    if (v->env_.shadow)
        v->shadow_slot_ = v->env_.shadow->add_vcpu(
            [p = v.get()] { pthread_kill(p->tid_.load(std::memory_order_acquire), kKickSignal); });
    CpuidParams params;
    params.vcpu_index = index;
    params.apic_id = topo.apic_id;
    params.num_vcpus = num_vcpus;
    params.cores_per_package = topo.cores_per_package;
    params.core_bits = topo.core_bits;
    static const uint64_t host_xsave = host_xsave_components();
    params.host_xsave_mask = host_xsave;
    auto cpuid = filter_cpuid(supported, params);
    KV_TRY(v->fd_.set_cpuid(cpuid));
    KV_TRY(v->fd_.set_msrs({kvm_msr_entry{kMsrMiscEnable, 0, 1},          // fast strings
                            kvm_msr_entry{kMsrMtrrDefType, 0, 0x806}}));  // MTRRs on, WB
    // AMD: HWCR.TscFreqSel says the TSC counts at the P0 frequency (an invariant TSC);
    // without it Linux reports a firmware bug. Older KVMs refuse the bit: not fatal.
    if (auto s = v->fd_.set_msrs({kvm_msr_entry{kMsrK7Hwcr, 0, 1ull << 24}}); !s)
        KV_DEBUG("vCPU %u: HWCR.TscFreqSel not accepted: %s", index, s.error().message.c_str());
    KV_TRY(v->fd_.get_regs(v->reset_regs_));
    KV_TRY(v->fd_.get_sregs(v->reset_sregs_));
    KV_TRY(v->fd_.get_fpu(v->reset_fpu_));
    // The exit history records the registers KVM copies out at every exit (cheap next to
    // the exit itself); without KVM_CAP_SYNC_REGS it records the exits only.
    constexpr uint64_t kSync = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
    int caps = ::ioctl(vm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
    if (caps > 0 && (uint64_t(caps) & kSync) == kSync) {
        v->fd_.run_page()->kvm_valid_regs = kSync;
        v->sync_regs_ = true;
    }
    return v;
}

Vcpu::Vcpu(uint32_t index, uint32_t apic_id, VcpuFd fd, VcpuEnv env)
    : index_(index),
      fd_(std::move(fd)),
      env_(std::move(env)),
      lapic_(index, apic_id,
             Lapic::Callbacks{[this](const InterruptMessage& m) {
                                  if (env_.router) env_.router->route(m);
                              },
                              [this](uint8_t vec) {
                                  if (env_.eoi_level) env_.eoi_level(vec);
                              },
                              [this] {
                                  if (env_.router)
                                      env_.router->update_addressing(index_, lapic_.addressing());
                              }}) {
    if (env_.router) env_.router->update_addressing(index_, lapic_.addressing());
}

Vcpu::~Vcpu() {
    request_stop();
    join();
    if (timer_created_) timer_delete(timer_);
}

Status Vcpu::set_boot_state(const kvm_regs& regs, const kvm_sregs& sregs) {
    KV_TRY(fd_.set_sregs(sregs));
    KV_TRY(fd_.set_regs(regs));
    return {};
}

void Vcpu::start(bool bsp) {
    {
        std::lock_guard lk(mu_);
        state_ = bsp ? VcpuState::Running : VcpuState::WaitForSipi;
    }
    start_thread();
}

void Vcpu::start_restored() {
    start_thread();
}

void Vcpu::start_thread() {
    install_kick_handler();
    {
        std::lock_guard lk(mu_);
        started_ = true;
    }
    started_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    thread_ = std::thread([this] { thread_main(); });
}

void Vcpu::request_stop() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    kick();
}

void Vcpu::request_pause() {
    {
        std::lock_guard lk(mu_);
        pause_ = true;
    }
    kick();
}

bool Vcpu::wait_paused(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    // A vCPU that was never started cannot run until it is: it counts as paused.
    return cv_.wait_for(lk, timeout, [&] { return paused_ || finished_ || !started_; });
}

void Vcpu::resume() {
    std::lock_guard lk(mu_);
    pause_ = false;
    cv_.notify_all();
}

VcpuRunState Vcpu::run_state() const {
    std::lock_guard lk(mu_);
    if (finished_) return VcpuRunState::Finished;
    if (!started_) return VcpuRunState::Parked;
    return paused_ ? VcpuRunState::Paused : VcpuRunState::Running;
}

const char* to_string(VcpuRunState s) {
    switch (s) {
        case VcpuRunState::Parked:
            return "parked";
        case VcpuRunState::Running:
            return "running";
        case VcpuRunState::Paused:
            return "paused";
        case VcpuRunState::Finished:
            return "finished";
    }
    return "?";
}

void Vcpu::complete_pending_exit() {
    // KVM finishes an I/O or MMIO exit (the register a read loads, the RIP past the
    // instruction) only in the next KVM_RUN, and keeps what it still has to do where no
    // ioctl shows it (api.rst, KVM_RUN): state saved before that is not the guest's, and
    // a copy re-entered later would finish a stale access on top of restored registers.
    // With immediate_exit set, KVM_RUN completes the access and returns EINTR without
    // running the guest.
    kvm_run* run = fd_.run_page();
    run->immediate_exit = 1;
    const int err = fd_.run();
    run->immediate_exit = 0;
    if (err != EINTR && err != 0)
        KV_WARN("vCPU %u: completing its last exit before a pause: %s", index_, std::strerror(err));
}

bool Vcpu::pause_point() {
    std::unique_lock lk(mu_);
    if (stop_) return false;
    if (!pause_) return true;
    lk.unlock();
    complete_pending_exit();
    lk.lock();
    if (stop_) return false;
    if (!pause_) return true;
    const uint64_t start = monotonic_ns();
    restored_ = false;  // restore_state() during this pause sets it
    paused_ = true;
    pause_start_ns_ = start;
    cv_.notify_all();  // wait_paused()
    cv_.wait(lk, [&] { return stop_ || !pause_; });
    paused_ = false;
    const uint64_t ns = monotonic_ns() - start;
    paused_ns_.fetch_add(ns, std::memory_order_relaxed);
    lk.unlock();
    lapic_.shift_timer(ns);
    return !stop_;
}

Result<CpuState> Vcpu::save_state(std::span<const uint32_t> msr_indices) {
    CpuState s;
    uint64_t lapic_now;
    {
        std::lock_guard lk(mu_);
        if (started_ && !paused_ && !finished_)
            return Error{"vCPU " + std::to_string(index_) + ": save_state while it runs"};
        lapic_now = paused_ ? pause_start_ns_ : monotonic_ns();
        s.run.waiting_for_sipi = state_ == VcpuState::WaitForSipi;
        s.run.init_pending = init_pending_;
        s.run.sipi_vector = sipi_vector_ ? uint32_t(*sipi_vector_) + 1 : 0;
    }
    s.run.nmi_pending = nmi_pending_.load(std::memory_order_acquire);
    s.run.extint = extint_.load(std::memory_order_acquire);
    const std::string who = "vCPU " + std::to_string(index_) + ": ";
    auto wrap = [&](Status st) -> Status {
        if (!st) return Error{who + st.error().message};
        return {};
    };
    KV_TRY(wrap(fd_.get_regs(s.regs)));
    KV_TRY(wrap(fd_.get_sregs(s.sregs)));
    KV_TRY(wrap(fd_.get_fpu(s.fpu)));
    // Optional parts: absent where the host's KVM lacks them (the restore then skips them).
    {
        std::vector<uint8_t> x;
        if (fd_.get_xsave(x)) s.xsave = std::move(x);
    }
    if (kvm_xcrs x{}; fd_.get_xcrs(x)) s.xcrs = x;
    if (kvm_debugregs d{}; fd_.get_debugregs(d)) s.debugregs = d;
    KV_TRY(wrap(fd_.get_vcpu_events(s.events)));
    KV_TRY(wrap(fd_.get_mp_state(s.mp_state)));
    // KVM_GET_MSRS stops at the first MSR it cannot read: skip that one and go on.
    std::vector<uint32_t> left(msr_indices.begin(), msr_indices.end());
    while (!left.empty() && s.msrs.size() < CpuState::kMaxMsrs) {
        std::vector<kvm_msr_entry> batch;
        for (uint32_t i : left) batch.push_back(kvm_msr_entry{i, 0, 0});
        KV_TRY(wrap(fd_.get_msrs(batch)));
        s.msrs.insert(s.msrs.end(), batch.begin(), batch.end());
        left.erase(left.begin(), left.begin() + long(std::min(left.size(), batch.size() + 1)));
    }
    if (s.msrs.size() > CpuState::kMaxMsrs) s.msrs.resize(CpuState::kMaxMsrs);
    // Keep the MSRs the vCPU also lets write (the paravirtual ones of features its CPUID
    // does not offer read as 0 but refuse a write, so a restore would fail on them).
    // Writing back the value just read changes nothing; the answer is kept per index.
    std::vector<kvm_msr_entry> keep;
    for (const auto& m : s.msrs) {
        // Never the TSC: a host write of it moves the vCPU's TSC offset (KVM re-bases it
        // by the time since the read), and restore_state() does not write it anyway.
        if (m.index == kMsrTsc) {
            keep.push_back(m);
            continue;
        }
        auto known = msr_writable_.find(m.index);
        bool ok;
        if (known != msr_writable_.end()) {
            ok = known->second;
        } else {
            ok = fd_.set_msrs({m}).ok();
            msr_writable_[m.index] = ok;
        }
        if (ok) keep.push_back(m);
    }
    s.msrs = std::move(keep);
    s.lapic = lapic_.save(lapic_now);
    return s;
}

Status Vcpu::restore_state(const CpuState& s) {
    uint64_t lapic_now;
    {
        std::lock_guard lk(mu_);
        if (started_ && !paused_ && !finished_)
            return Error{"vCPU " + std::to_string(index_) + ": restore_state while it runs"};
        lapic_now = paused_ ? pause_start_ns_ : monotonic_ns();
    }
    const std::string who = "vCPU " + std::to_string(index_) + ": restore: ";
    auto wrap = [&](Status st) -> Status {
        if (!st) return Error{who + st.error().message};
        return {};
    };
    // sregs before regs and the MSRs (EFER and the mode decide what the rest means).
    KV_TRY(wrap(fd_.set_sregs(s.sregs)));
    KV_TRY(wrap(fd_.set_regs(s.regs)));
    if (!s.xsave.empty())
        KV_TRY(wrap(fd_.set_xsave(s.xsave)));
    else
        KV_TRY(wrap(fd_.set_fpu(s.fpu)));
    if (s.xcrs) KV_TRY(wrap(fd_.set_xcrs(*s.xcrs)));
    if (s.debugregs) KV_TRY(wrap(fd_.set_debugregs(*s.debugregs)));
    std::vector<kvm_msr_entry> msrs;
    for (const auto& m : s.msrs)
        if (m.index != kMsrTsc) msrs.push_back(kvm_msr_entry{m.index, 0, m.data});
    if (!msrs.empty()) KV_TRY(wrap(fd_.set_msrs(msrs)));
    kvm_vcpu_events ev = s.events;
    ev.flags = (s.events.flags & (KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)) |
               KVM_VCPUEVENT_VALID_NMI_PENDING;
    KV_TRY(wrap(fd_.set_vcpu_events(ev)));
    KV_TRY(wrap(fd_.set_mp_state(s.mp_state)));
    lapic_.restore(s.lapic, lapic_now);
    {
        std::lock_guard lk(mu_);
        state_ = s.run.waiting_for_sipi ? VcpuState::WaitForSipi : VcpuState::Running;
        init_pending_ = s.run.init_pending != 0;
        restored_ = true;
        if (s.run.sipi_vector)
            sipi_vector_ = uint8_t(s.run.sipi_vector - 1);
        else
            sipi_vector_.reset();
    }
    nmi_pending_.store(s.run.nmi_pending != 0, std::memory_order_release);
    // Not extint: the PIC's INTR wire belongs to this node (only the I/O node has a PIC),
    // not to the vCPU; the saved value only says what it was where the vCPU stood.
    // The other vCPUs find this one by its restored APIC ID and logical destination.
    if (env_.router) env_.router->update_addressing(index_, lapic_.addressing());
    return {};
}

void Vcpu::join() {
    if (thread_.joinable()) thread_.join();
}

void Vcpu::kick() {
    counters_.kicks.fetch_add(1, std::memory_order_relaxed);
    // The signal is sent under mu_, and the thread clears thread_ready_ under mu_ before
    // it ends, so a kick never signals a thread that has exited.
    std::lock_guard lk(mu_);
    cv_.notify_all();
    if (thread_ready_.load(std::memory_order_acquire))
        pthread_kill(tid_.load(std::memory_order_acquire), kKickSignal);
}

void Vcpu::deliver(const InterruptMessage& m) {
    switch (m.mode) {
        case DeliveryMode::Fixed:
        case DeliveryMode::LowestPriority:
            if (!lapic_.accept(m.vector, m.level_triggered)) return;
            break;
        case DeliveryMode::Nmi:
            nmi_pending_.store(true, std::memory_order_release);
            break;
        case DeliveryMode::Init: {
            if (!m.assert && m.level_triggered) return;  // INIT level de-assert: no effect
            std::lock_guard lk(mu_);
            init_pending_ = true;
            sipi_vector_.reset();
            break;
        }
        case DeliveryMode::StartUp: {
            std::lock_guard lk(mu_);
            // A SIPI counts only while waiting for it, or right behind an INIT that the
            // vCPU thread has not processed yet (it must never be lost). Others are
            // dropped without disturbing the vCPU.
            if (!((state_ == VcpuState::WaitForSipi || init_pending_) && !sipi_vector_)) return;
            sipi_vector_ = m.vector;
            break;
        }
        case DeliveryMode::ExtInt:
            extint_.store(true, std::memory_order_release);
            break;
        case DeliveryMode::Smi:
        default:
            return;
    }
    kick();
}

void Vcpu::set_extint(bool level) {
    extint_.store(level, std::memory_order_release);
    if (level) kick();
}

void Vcpu::arm_timer(uint64_t deadline) {
    if (deadline == armed_deadline_) return;
    armed_deadline_ = deadline;
    itimerspec its{};
    if (deadline) {
        its.it_value.tv_sec = time_t(deadline / 1'000'000'000ull);
        its.it_value.tv_nsec = long(deadline % 1'000'000'000ull);
    }
    timer_settime(timer_, TIMER_ABSTIME, &its, nullptr);
}

bool Vcpu::process_init_sipi() {
    std::unique_lock lk(mu_);
    bool changed = false;
    // Each branch sets the new state before it drops the lock to load registers, so a
    // SIPI that arrives meanwhile is judged against that state: one right behind an INIT is
    // kept, a second SIPI after the first is ignored (and does not kick the vCPU out of
    // the trampoline it is running).
    if (init_pending_) {
        init_pending_ = false;
        state_ = VcpuState::WaitForSipi;
        lk.unlock();
        // INIT: architectural reset of the registers and the LAPIC (its ID stays).
        (void)fd_.set_sregs(reset_sregs_);
        (void)fd_.set_regs(reset_regs_);
        (void)fd_.set_fpu(reset_fpu_);
        kvm_vcpu_events ev{};  // INIT drops pending and injected events (exception, IRQ, NMI)
        (void)fd_.set_vcpu_events(ev);
        lapic_.reset();
        if (env_.router) env_.router->update_addressing(index_, lapic_.addressing());
        lk.lock();
        changed = true;
    }
    if (state_ == VcpuState::WaitForSipi && sipi_vector_) {
        uint8_t vec = *sipi_vector_;
        sipi_vector_.reset();
        state_ = VcpuState::Running;
        lk.unlock();
        kvm_sregs s = reset_sregs_;
        s.cs.selector = uint16_t(vec << 8);
        s.cs.base = uint64_t(vec) << 12;
        kvm_regs r = reset_regs_;
        r.rip = 0;
        (void)fd_.set_sregs(s);
        (void)fd_.set_regs(r);
        lk.lock();
        changed = true;
    }
    return changed;
}

void Vcpu::wait_for_sipi() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return stop_ || pause_ || init_pending_ || sipi_vector_.has_value(); });
}

bool Vcpu::interruptible_pending(bool if_flag) {
    if (nmi_pending_.load(std::memory_order_acquire)) return true;
    if (!if_flag) return false;
    if (extint_.load(std::memory_order_acquire) && lapic_.lint0_extint()) return true;
    return lapic_.pending_vector().has_value();
}

void Vcpu::wait_halted() {
    counters_.halts.fetch_add(1, std::memory_order_relaxed);
    bool if_flag = fd_.run_page()->if_flag;
    const uint64_t start = monotonic_ns();
    struct AddTime {
        std::atomic<uint64_t>& to;
        uint64_t start;
        ~AddTime() { to.fetch_add(monotonic_ns() - start, std::memory_order_relaxed); }
    } add_time{counters_.halted_ns, start};
    std::unique_lock lk(mu_);
    for (;;) {
        if (stop_ || pause_ || init_pending_) return;
        uint64_t now = monotonic_ns();
        uint64_t deadline = lapic_.poll_timer(now);
        if (interruptible_pending(if_flag)) return;
        if (deadline) {
            auto wait = std::chrono::nanoseconds(deadline - now);
            cv_.wait_for(lk, wait);
        } else {
            cv_.wait(lk);
        }
    }
}

void Vcpu::inject_pending() {
    kvm_run* run = fd_.run_page();
    pending_record_ = ExitRecord{};
    if (nmi_pending_.exchange(false, std::memory_order_acq_rel)) {
        if (fd_.nmi().ok()) {
            counters_.nmis_injected.fetch_add(1, std::memory_order_relaxed);
            pending_record_.nmi = 1;
        }
    }
    bool can_inject = run->ready_for_interrupt_injection && run->if_flag;
    bool want = false;
    if (extint_.load(std::memory_order_acquire) && lapic_.lint0_extint() && env_.pic_acknowledge) {
        if (can_inject) {
            uint8_t vec = env_.pic_acknowledge();
            if (fd_.interrupt(vec).ok()) {
                counters_.interrupts_injected.fetch_add(1, std::memory_order_relaxed);
                pending_record_.injected = vec;
            }
            can_inject = false;
        }
        want = true;
    }
    if (auto vec = lapic_.pending_vector()) {
        if (can_inject) {
            lapic_.ack(*vec);
            if (fd_.interrupt(*vec).ok()) {
                counters_.interrupts_injected.fetch_add(1, std::memory_order_relaxed);
                pending_record_.injected = *vec;
            }
            want = lapic_.pending_vector().has_value();
        } else {
            want = true;
        }
    }
    run->request_interrupt_window = want ? 1 : 0;
    pending_record_.window = want ? 1 : 0;
    pending_record_.if_flag = run->if_flag;
    pending_record_.ready = run->ready_for_interrupt_injection;
}

void Vcpu::thread_main() {
    tl_run = fd_.run_page();
    tid_.store(pthread_self(), std::memory_order_release);
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = kKickSignal;
    sev._sigev_un._tid = pid_t(syscall(SYS_gettid));
    timer_created_ = timer_create(CLOCK_MONOTONIC, &sev, &timer_) == 0;
    thread_ready_.store(true, std::memory_order_release);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kKickSignal);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

    while (run_once()) {
    }
    if (g_dump_history.load(std::memory_order_acquire)) print_exit_history(stderr);
    {
        std::lock_guard lk(mu_);
        state_ = VcpuState::Stopped;
        finished_ = true;
        cv_.notify_all();  // wait_paused()
        thread_ready_.store(false, std::memory_order_release);
    }
    tl_run = nullptr;
}

bool Vcpu::run_once() {
    // The exit boundary: the last exit is handled, the next entry not prepared.
    if (!pause_point()) return false;
    process_init_sipi();
    VcpuState st;
    {
        std::lock_guard lk(mu_);
        st = state_;
    }
    if (st == VcpuState::WaitForSipi) {
        wait_for_sipi();
        return true;
    }
    uint64_t now = monotonic_ns();
    uint64_t deadline = lapic_.poll_timer(now);
    if (timer_created_) arm_timer(deadline);
    kvm_run* run = fd_.run_page();
    run->cr8 = lapic_.tpr() >> 4;
    inject_pending();
    // Held out of guest mode while this node's KVM drops shadow pages (shadow_mmu.h).
    if (env_.shadow) env_.shadow->enter(shadow_slot_);
    int err = fd_.run();
    if (env_.shadow) env_.shadow->leave(shadow_slot_);
    record_exit(err);
    lapic_.set_tpr(uint8_t((run->cr8 & 0xF) << 4) | (lapic_.tpr() & 0xF));
    if (err == EINTR || err == EAGAIN) {
        run->immediate_exit = 0;
        counters_.exits[KVM_EXIT_INTR].fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    if (err != 0) {
        if (env_.fatal) env_.fatal(index_, false, std::string("KVM_RUN: ") + std::strerror(err));
        return false;
    }
    return handle_exit();
}

bool Vcpu::handle_exit() {
    kvm_run* run = fd_.run_page();
    uint32_t reason = run->exit_reason;
    counters_.exits[reason < 64 ? reason : 0].fetch_add(1, std::memory_order_relaxed);
    switch (reason) {
        case KVM_EXIT_IO:
            handle_pio(run);
            return true;
        case KVM_EXIT_MMIO:
            handle_mmio(run);
            return true;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
            return true;
        case KVM_EXIT_HLT:
            // A pause that comes while the vCPU is halted keeps it halted across the
            // pause: after resume() it waits again unless an interrupt came meanwhile.
            for (;;) {
                wait_halted();
                {
                    std::lock_guard lk(mu_);
                    if (!pause_ || stop_) break;
                }
                if (!pause_point()) return false;
                // Another vCPU's state was restored into this one while it stood here
                // (it migrated back): that state runs, it is not halted.
                std::lock_guard lk(mu_);
                if (restored_) {
                    restored_ = false;
                    break;
                }
            }
            return true;
        case KVM_EXIT_SHUTDOWN: {
            // No RIP in the message: on AMD, KVM resets the vCPU before it reports a
            // shutdown (the VMCB is undefined after one), so the registers say 0xfff0.
            g_dump_history.store(true, std::memory_order_release);
            if (env_.fatal)
                env_.fatal(index_, true, "guest triple fault on vCPU " + std::to_string(index_));
            return false;
        }
        case KVM_EXIT_FAIL_ENTRY: {
            char buf[96];
            std::snprintf(
                buf, sizeof buf, "KVM entry failed on vCPU %u (reason 0x%llx)", index_,
                static_cast<unsigned long long>(run->fail_entry.hardware_entry_failure_reason));
            if (env_.fatal) env_.fatal(index_, false, buf);
            return false;
        }
        case KVM_EXIT_INTERNAL_ERROR: {
            char buf[96];
            std::snprintf(buf, sizeof buf, "KVM internal error on vCPU %u (suberror %u)", index_,
                          run->internal.suberror);
            if (env_.fatal) env_.fatal(index_, false, buf);
            return false;
        }
        default: {
            std::string why = "unhandled exit '" + std::string(exit_reason_name(reason)) + "' (" +
                              std::to_string(reason) + ") on vCPU " + std::to_string(index_);
            if (env_.fatal) env_.fatal(index_, false, why);
            return false;
        }
    }
}

void Vcpu::handle_pio(kvm_run* run) {
    auto* base = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
    for (uint32_t i = 0; i < run->io.count; ++i) {
        std::span<uint8_t> data(base + i * run->io.size, run->io.size);
        bool handled = env_.io && env_.io->pio(run->io.port, data, is_write);
        if (!handled) {
            counters_.pio_unhandled.fetch_add(1, std::memory_order_relaxed);
            if (!is_write) std::memset(data.data(), 0xFF, data.size());
        }
    }
}

void Vcpu::handle_mmio(kvm_run* run) {
    uint64_t addr = run->mmio.phys_addr;
    std::span<uint8_t> data(run->mmio.data, run->mmio.len);
    if (addr >= Lapic::kBase && addr < Lapic::kBase + Lapic::kSize) {
        uint32_t off = uint32_t(addr - Lapic::kBase);
        uint64_t now = monotonic_ns();
        if (run->mmio.is_write) {
            uint32_t v = 0;
            std::memcpy(&v, data.data(), std::min<size_t>(4, data.size()));
            lapic_.write(off & ~3u, v, now);
        } else {
            uint32_t v = lapic_.read(off & ~3u, now);
            std::memset(data.data(), 0, data.size());
            std::memcpy(data.data(), &v, std::min<size_t>(4, data.size()));
        }
        return;
    }
    bool handled = env_.io && env_.io->mmio(addr, data, run->mmio.is_write);
    if (!handled) {
        counters_.mmio_unhandled.fetch_add(1, std::memory_order_relaxed);
        if (!run->mmio.is_write) std::memset(data.data(), 0xFF, data.size());
    }
}

void Vcpu::record_exit(int err) {
    const kvm_run* run = fd_.run_page();
    ExitRecord r = pending_record_;
    r.seq = ++history_seq_;
    r.t_ns = monotonic_ns();
    r.reason = err == 0 ? run->exit_reason : KVM_EXIT_INTR;
    if (err == 0 && sync_regs_) {
        const auto& regs = run->s.regs.regs;
        const auto& sregs = run->s.regs.sregs;
        r.rip = regs.rip;
        r.rsp = regs.rsp;
        r.rflags = regs.rflags;
        r.cr0 = sregs.cr0;
        r.cr3 = sregs.cr3;
        r.cr4 = sregs.cr4;
        r.efer = sregs.efer;
        r.cs = sregs.cs.selector;
        r.cpl = sregs.ss.dpl;
        r.ev = run->s.regs.events;
    }
    if (err == 0 && run->exit_reason == KVM_EXIT_IO) {
        r.addr = run->io.port;
        r.len = run->io.size;
        r.write = run->io.direction == KVM_EXIT_IO_OUT;
        if (r.write && run->io.count == 1)
            std::memcpy(&r.data, reinterpret_cast<const uint8_t*>(run) + run->io.data_offset,
                        std::min<size_t>(run->io.size, 8));
    } else if (err == 0 && run->exit_reason == KVM_EXIT_MMIO) {
        r.addr = run->mmio.phys_addr;
        r.len = uint8_t(run->mmio.len);
        r.write = run->mmio.is_write;
        if (r.write) std::memcpy(&r.data, run->mmio.data, std::min<size_t>(run->mmio.len, 8));
    }
    history_[r.seq % kExitHistory] = r;
}

void Vcpu::print_exit_history(FILE* out) const {
    uint64_t last = history_seq_;
    uint64_t first = last >= kExitHistory ? last - kExitHistory + 1 : 1;
    if (last == 0) return;
    const uint64_t t_end = history_[last % kExitHistory].t_ns;
    std::fprintf(out,
                 "vcpu%u: last %" PRIu64 " of %" PRIu64
                 " exits (oldest first, t = us before the last)%s\n",
                 index_, last - first + 1, last,
                 sync_regs_ ? "" : " (no registers: KVM_CAP_SYNC_REGS missing)");
    for (uint64_t s = first; s <= last; ++s) {
        const ExitRecord& r = history_[s % kExitHistory];
        char buf[512];
        int n = std::snprintf(buf, sizeof buf,
                              "vcpu%u: #%" PRIu64 " -%" PRIu64 "us %-10s rip=%016" PRIx64
                              " rsp=%016" PRIx64 " fl=%06" PRIx64 " cs=%04x cpl=%u cr0=%08" PRIx64
                              " cr3=%" PRIx64 " cr4=%" PRIx64,
                              index_, r.seq, (t_end - r.t_ns) / 1000, exit_reason_name(r.reason),
                              r.rip, r.rsp, r.rflags, r.cs, r.cpl, r.cr0, r.cr3, r.cr4);
        if (r.reason == KVM_EXIT_IO || r.reason == KVM_EXIT_MMIO)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " %s %" PRIx64 "/%u=%" PRIx64,
                               r.write ? "wr" : "rd", r.addr, r.len, r.data);
        if (r.injected >= 0)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " INJ=%#x", unsigned(r.injected));
        if (r.nmi) n += std::snprintf(buf + n, sizeof buf - size_t(n), " INJ=NMI");
        n += std::snprintf(buf + n, sizeof buf - size_t(n), " [before: if=%u ready=%u win=%u]",
                           r.if_flag, r.ready, r.window);
        const auto& e = r.ev;
        if (e.exception.injected || e.exception.pending)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " exc=%u%s%s ec=%#x",
                               e.exception.nr, e.exception.injected ? " injected" : "",
                               e.exception.pending ? " pending" : "", e.exception.error_code);
        if (e.interrupt.injected)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " irq=%#x injected%s",
                               e.interrupt.nr, e.interrupt.soft ? " soft" : "");
        if (e.interrupt.shadow)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " shadow=%u", e.interrupt.shadow);
        if (e.nmi.injected || e.nmi.pending || e.nmi.masked)
            n += std::snprintf(buf + n, sizeof buf - size_t(n), " nmi(inj=%u pend=%u masked=%u)",
                               e.nmi.injected, e.nmi.pending, e.nmi.masked);
        std::fprintf(out, "%s\n", buf);
    }
}

void Vcpu::print_counters(FILE* out) const {
    std::fprintf(out, "vcpu%u: exits", index_);
    for (size_t i = 0; i < counters_.exits.size(); ++i)
        if (uint64_t c = counters_.exits[i].load())
            std::fprintf(out, " %s=%" PRIu64, exit_reason_name(uint32_t(i)), c);
    std::fprintf(out,
                 "; injected irq=%" PRIu64 " nmi=%" PRIu64 "; halts=%" PRIu64
                 " unhandled pio=%" PRIu64 " mmio=%" PRIu64 "\n",
                 counters_.interrupts_injected.load(), counters_.nmis_injected.load(),
                 counters_.halts.load(), counters_.pio_unhandled.load(),
                 counters_.mmio_unhandled.load());
}

}  // namespace kv
