// Guest page tables kept coherent under shadow paging (docs/memory.md, "Page tables under
// shadow paging").
//
// On a host whose KVM runs the guest on shadow paging (kvm-amd npt=0, kvm-intel ept=0, as
// the lab's multi-node hosts do), KVM builds its own page tables from the guest's and keeps
// them for as long as it believes the guest's are unchanged: it write-protects every guest
// page-table page it has shadowed and sees the guest's writes to it. When the coherence
// protocol replaces such a page (another node wrote it), KVM's MMU notifier drops only the
// mappings *of* that page, not the shadow pages built *from* it; the guest's TLB flushes do
// not refresh them either (KVM trusts its write protection), so a vCPU here would go on
// using translations the guest has changed or freed. The cure: before this node gives up a
// page that looks like a page table, every local vCPU is held out of guest mode, and KVM
// drops all its shadow pages (a memory-slot move of a one-page dummy slot, which makes KVM
// zap its whole MMU) before any vCPU runs guest code again.
//
// Threads: vCPU threads call enter()/leave() around KVM_RUN; the coherence engine's fault
// thread calls note_fault() before it takes the engine's lock; the engine calls
// resolved(), hold() and release() under its lock; the guard's own thread does the zap.
// Holding vCPUs out waits for nothing but local threads: a vCPU in guest mode is kicked out
// (it needs no peer to leave), and one blocked in a userfaultfd fault counts as out (it
// re-enters only after its fault is resolved, and the kick then sends it out first). The
// zap itself waits for KVM's SRCU readers, i.e. for such blocked vCPUs; it runs on the
// guard's thread, never on one the fault needs.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "base/result.h"

namespace kv {

// Does this 4 KiB page read as an x86-64 page table: at least one present entry, and every
// present entry's physical address below `max_gpa` with the reserved bits 51:46 clear?
// Data rarely does (a kernel pointer or random bits fail it); a false positive costs only a
// needless flush.
bool looks_like_page_table(std::span<const uint8_t> page, uint64_t max_gpa);

// Does this host's KVM run guests on shadow paging (kvm-amd npt=0 or kvm-intel ept=0)?
bool host_uses_shadow_paging();

class ShadowMmuGuard {
  public:
    // `zap`: drops every shadow page of this node's VM (called on the guard's thread).
    ShadowMmuGuard(std::function<Status()> zap, std::function<void(const Error&)> on_error);
    ~ShadowMmuGuard();
    ShadowMmuGuard(const ShadowMmuGuard&) = delete;
    ShadowMmuGuard& operator=(const ShadowMmuGuard&) = delete;

    // vCPU registration (before the vCPU's thread runs): `kick` makes a KVM_RUN in progress,
    // or the next one, return without running the guest. Returns the vCPU's slot.
    size_t add_vcpu(std::function<void()> kick);
    // The vCPU thread of `slot`, right before KVM_RUN: waits while vCPUs are held out.
    void enter(size_t slot);
    // The vCPU thread of `slot`, right after KVM_RUN returns.
    void leave(size_t slot);

    // The engine's fault thread, before it takes the engine's lock: thread `tid` is blocked
    // on page `pfn` (for writing if `write`).
    void note_fault(pid_t tid, uint64_t pfn, bool write);
    // Under the engine's lock: page `pfn` was installed, unprotected or woken, and is now
    // readable here (writable too if `writable`): the faults it ends are forgotten. A write
    // fault on a page that is only readable stays noted (its thread is still blocked).
    void resolved(uint64_t pfn, bool writable);
    // Under the engine's lock, before a page that may be a page table is given up: holds
    // every vCPU out of guest mode and returns once none is in it. `blocked(pfn, write)`
    // says whether a fault on `pfn` is still unresolved (the engine's state, its lock held).
    void hold(const std::function<bool(uint64_t pfn, bool write)>& blocked);
    // Under the engine's lock, after the page is gone: the guard's thread zaps KVM's shadow
    // pages, then lets the vCPUs run.
    void release();

    // The machine stops: vCPUs are never held out again (their faults may never resolve).
    void abandon();

    uint64_t flushes() const { return flushes_.load(std::memory_order_relaxed); }

  private:
    struct Slot {
        std::function<void()> kick;
        std::atomic<bool> inside{false};
        std::atomic<pid_t> tid{0};
    };
    struct Fault {
        pid_t tid;
        uint64_t pfn;
        bool write;
    };
    void thread_main();

    std::function<Status()> zap_;
    std::function<void(const Error&)> on_error_;
    std::deque<Slot> slots_;  // grows before the vCPU threads run; stable addresses

    std::atomic<bool> closed_{false};
    std::mutex mu_;               // taken inside the engine's lock, never the other way round
    std::condition_variable cv_;  // with mu_: a vCPU left, a fault was noted, the gate opened
    std::vector<Fault> faults_;   // under mu_: faults not yet resolved
    uint64_t requested_ = 0;      // under mu_: zaps asked for
    uint64_t done_ = 0;           // under mu_: zaps done
    uint64_t holding_ = 0;        // under mu_: hold()s not yet followed by release()
    bool stop_ = false;           // under mu_
    std::atomic<bool> abandoned_{false};
    std::atomic<uint64_t> flushes_{0};
    std::thread thread_;
};

}  // namespace kv
