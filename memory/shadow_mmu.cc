#include "memory/shadow_mmu.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>

#include "base/log.h"

namespace kv {

bool looks_like_page_table(std::span<const uint8_t> page, uint64_t max_gpa) {
    constexpr uint64_t kPresent = 1;
    constexpr uint64_t kReserved = 0x000fc00000000000ull;  // bits 51:46
    constexpr uint64_t kAddress = 0x000ffffffffff000ull;   // bits 51:12
    bool any = false;
    for (size_t off = 0; off + 8 <= page.size(); off += 8) {
        uint64_t e;
        std::memcpy(&e, page.data() + off, sizeof e);
        if (!(e & kPresent)) continue;
        if ((e & kReserved) || (e & kAddress) >= max_gpa) return false;
        any = true;
    }
    return any;
}

namespace {

// "N", "0" or "n" in a module parameter file: off.
bool param_off(const char* path) {
    std::ifstream f(path);
    std::string v;
    if (!(f >> v)) return false;
    return v == "N" || v == "n" || v == "0";
}

}  // namespace

bool host_uses_shadow_paging() {
    return param_off("/sys/module/kvm_amd/parameters/npt") ||
           param_off("/sys/module/kvm_intel/parameters/ept");
}

ShadowMmuGuard::ShadowMmuGuard(std::function<Status()> zap,
                               std::function<void(const Error&)> on_error)
    : zap_(std::move(zap)), on_error_(std::move(on_error)) {
    thread_ = std::thread([this] { thread_main(); });
}

ShadowMmuGuard::~ShadowMmuGuard() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
        closed_.store(false);
    }
    cv_.notify_all();
    thread_.join();
}

size_t ShadowMmuGuard::add_vcpu(std::function<void()> kick) {
    slots_.emplace_back();
    slots_.back().kick = std::move(kick);
    return slots_.size() - 1;
}

void ShadowMmuGuard::enter(size_t slot) {
    Slot& s = slots_[slot];
    if (s.tid.load(std::memory_order_relaxed) == 0)
        s.tid.store(::gettid(), std::memory_order_relaxed);
    for (;;) {
        // Inside first, then the gate (both sequentially consistent): hold() either sees
        // this vCPU inside and kicks it, or this vCPU sees the gate closed.
        s.inside.store(true);
        if (!closed_.load()) return;
        s.inside.store(false);
        std::unique_lock lk(mu_);
        cv_.notify_all();
        cv_.wait(lk, [&] { return !closed_.load() || stop_ || abandoned_.load(); });
        if (stop_) return;
    }
}

void ShadowMmuGuard::leave(size_t slot) {
    slots_[slot].inside.store(false);
    if (closed_.load()) {
        std::lock_guard lk(mu_);
        cv_.notify_all();
    }
}

void ShadowMmuGuard::note_fault(pid_t tid, uint64_t pfn, bool write) {
    std::lock_guard lk(mu_);
    // A thread waits for one fault at a time: this one replaces any older note of it.
    std::erase_if(faults_, [&](const Fault& f) { return f.tid == tid; });
    faults_.push_back({tid, pfn, write});
    if (closed_.load()) cv_.notify_all();
}

void ShadowMmuGuard::resolved(uint64_t pfn, bool writable) {
    std::lock_guard lk(mu_);
    std::erase_if(faults_, [&](const Fault& f) { return f.pfn == pfn && (writable || !f.write); });
}

void ShadowMmuGuard::abandon() {
    std::lock_guard lk(mu_);
    abandoned_.store(true);
    closed_.store(false);
    cv_.notify_all();
}

void ShadowMmuGuard::hold(const std::function<bool(uint64_t, bool)>& blocked) {
    if (abandoned_.load()) return;
    {
        // Counted before the gate closes: a zap already under way must not open it.
        std::lock_guard lk(mu_);
        ++holding_;
        closed_.store(true);
    }
    for (Slot& s : slots_)
        if (s.inside.load()) s.kick();
    std::unique_lock lk(mu_);
    auto out = [&] {
        if (abandoned_.load()) return true;
        for (Slot& s : slots_) {
            if (!s.inside.load()) continue;
            // Inside KVM_RUN but blocked in a fault that is still unresolved: it cannot be
            // in guest mode, and the kick sends it out before it gets there again.
            const pid_t tid = s.tid.load(std::memory_order_relaxed);
            bool in_fault = std::any_of(faults_.begin(), faults_.end(), [&](const Fault& f) {
                return f.tid == tid && blocked(f.pfn, f.write);
            });
            if (!in_fault) return false;
        }
        return true;
    };
    // Bounded waits only to say what it waits for if that takes long (a diagnostic: the
    // condition alone ends the wait).
    const auto start = std::chrono::steady_clock::now();
    auto next_report = start + std::chrono::seconds(2);
    while (!cv_.wait_until(lk, next_report, out)) {
        std::string who;
        for (size_t i = 0; i < slots_.size(); ++i)
            if (slots_[i].inside.load())
                who +=
                    " " + std::to_string(i) + "(tid " + std::to_string(slots_[i].tid.load()) + ")";
        std::string notes;
        for (const Fault& f : faults_)
            notes +=
                " " + std::to_string(f.tid) + ":" + std::to_string(f.pfn) + (f.write ? "w" : "r");
        KV_WARN(
            "shadow guard: %lld s waiting for vCPU slot(s)%s to leave guest mode; faults noted:%s",
            static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count()),
            who.c_str(), notes.c_str());
        next_report += std::chrono::seconds(5);
    }
}

void ShadowMmuGuard::release() {
    std::lock_guard lk(mu_);
    if (holding_ > 0) --holding_;  // none if hold() found the guard abandoned
    ++requested_;
    cv_.notify_all();
}

void ShadowMmuGuard::thread_main() {
    std::unique_lock lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return stop_ || requested_ != done_; });
        if (stop_) return;
        const uint64_t target = requested_;
        lk.unlock();
        const auto t0 = std::chrono::steady_clock::now();
        Status st = zap_();
        const auto took = std::chrono::steady_clock::now() - t0;
        if (took > std::chrono::seconds(1))
            KV_WARN("shadow guard: a zap took %lld ms",
                    static_cast<long long>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
        const uint64_t n = flushes_.fetch_add(1, std::memory_order_relaxed) + 1;
        if ((n & (n - 1)) == 0)
            KV_INFO("shadow guard: %llu zaps", static_cast<unsigned long long>(n));
        lk.lock();
        if (!st) {
            // The guest cannot go on safely: the machine stops (on_error), and the vCPUs
            // are let go so that they see the stop.
            abandoned_.store(true);
            closed_.store(false);
            cv_.notify_all();
            lk.unlock();
            if (on_error_)
                on_error_(Error{"flushing KVM's shadow page tables: " + st.error().message});
            lk.lock();
            done_ = target;
            continue;
        }
        done_ = target;
        if (done_ == requested_ && holding_ == 0 && !abandoned_.load()) {
            closed_.store(false);
            cv_.notify_all();
        }
    }
}

}  // namespace kv
