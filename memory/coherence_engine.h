// The coherence engine of one node: guest RAM made coherent across nodes with
// userfaultfd and the protocol core (coherence_protocol.h).
//
// Threads:
//   - the fault thread (owned here) reads userfaultfd events and feeds them to the core;
//   - the transport's receive thread calls on_message() with coherence messages;
//   - any thread (vCPUs, the VMM's own) touches guest memory and may block in a fault.
// One mutex serialises the core and the execution of its actions, so that the actions of
// one input (install, protect, read, drop, send) happen in order and before those of the
// next input. Neither engine thread ever touches guest memory except (a) UFFDIO_COPY into
// it and (b) reading a page that the core says is present locally and has just been
// write-protected (Payload::LocalPage): present, so the read cannot fault and wait on the
// fault thread itself; protected first, so no writer changes it while it is copied.
//
// Page numbers: the core's page frame number is the index of a page in the concatenation
// of the GuestMemory's regions (the same on every node, since every node lays out the same
// RAM size).
//
// Errors (a peer lost, a protocol violation, a failed ioctl) are fatal for the guest:
// the first one is kept (error()) and reported through the on_error callback; the engine
// then stops serving faults. Threads blocked in faults stay blocked until the engine is
// destroyed (closing the userfaultfd wakes them); the owner stops the guest.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "interconnect/transport.h"
#include "memory/coherence_protocol.h"
#include "memory/dsm_stats.h"
#include "memory/guest_memory.h"
#include "memory/shadow_mmu.h"
#include "memory/uffd.h"

namespace kv {

// The coherence protocol's messages and their payload length rules: requests and
// acknowledgements carry everything in the header (`arg` = page frame number); only the
// page-carrying replies (FetchReply, Grant) have a payload, a whole page or nothing.
std::span<const MessageSpec> coherence_messages();

class CoherenceEngine : public MessageHandler {
  public:
    struct Options {
        NodeId self = 0;
        uint32_t num_nodes = 1;
        // Home ranges in pages; empty: one equal slice per node.
        std::vector<HomeMap::Range> homes;
        // Called once, on the thread that met the first fatal error.
        std::function<void(const Error&)> on_error;
        // Messages that are not coherence messages go here (may be null: dropped).
        MessageHandler* next = nullptr;
        // Hold window (ns, 0: none): a page this node has just gained access to is kept at
        // least this long before a message that would take that access away (Inv, Fetch,
        // FetchInv; at the home a ReadReq or WriteReq) is handled. Such a message waits,
        // and later messages from the same node about the same page wait behind it, which
        // is a delay on that connection and nothing the protocol does not already allow.
        // It lets a vCPU finish a burst of accesses instead of losing the page between
        // them (docs/memory.md "Hold window").
        uint64_t hold_ns = 0;
        // This node's KVM runs the guest on shadow paging: a page that looks like a page
        // table is given up only with every local vCPU held out of guest mode, and KVM's
        // shadow pages are dropped before they run again (shadow_mmu.h). Must outlive the
        // engine; null: not needed (nested paging).
        ShadowMmuGuard* shadow = nullptr;
    };

    // Registers every region of `mem` with a new userfaultfd. `mem` must outlive the
    // engine; its pages must not have been touched yet (they start Invalid).
    static Result<std::unique_ptr<CoherenceEngine>> create(GuestMemory& mem, Options opts);
    ~CoherenceEngine() override;

    // Starts the fault thread; messages are sent with `transport` (must outlive stop()).
    Status start(Transport& transport);
    // Stops the fault thread (idempotent). Call before the transport shuts down.
    void stop();
    // The guest is stopping everywhere: a peer that leaves from now on is not an error.
    void expect_peers_to_leave() { stopping_ = true; }

    // MessageHandler (the transport's receive thread).
    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    // The coherence messages (coherence_messages()), then those of Options::next.
    std::span<const MessageSpec> messages() const override { return messages_; }
    void on_peer_lost(NodeId peer, const Error& why) override;

    DsmStats stats() const { return counters_.snapshot(); }
    std::optional<Error> error() const;
    NodeId self() const { return opts_.self; }
    uint64_t num_pages() const { return num_pages_; }
    // Host address of page `pfn` and back (nullptr / nullopt outside guest RAM).
    uint8_t* page_ptr(uint64_t pfn) const;
    std::optional<uint64_t> pfn_of(uint64_t host_addr) const;
    // Local state and pending flag of a page (tests and tools; takes the lock).
    LocalState local_state(uint64_t pfn) const;
    // This node is the home of page `pfn` and no node has ever had it (the directory is
    // Uncached, which no page returns to): its contents are zero (snapshots skip it
    // without the missing fault a read would take). Takes the lock.
    bool never_granted(uint64_t pfn) const;
    // How many pages are in each local state here (I, S, M), one pass under the lock.
    struct StateCounts {
        uint64_t invalid = 0, shared = 0, modified = 0;
    };
    StateCounts state_counts() const;
    // The `n` pages with the most faults here so far (diagnostics: a page bouncing
    // between nodes shows at the top).
    struct HotPage {
        uint64_t pfn;
        uint32_t faults;
    };
    std::vector<HotPage> hottest_pages(size_t n) const;

  private:
    std::vector<MessageSpec> messages_;
    struct Span {
        uint8_t* base;
        uint64_t first_pfn, pages;
    };

    CoherenceEngine(GuestMemory& mem, Options opts, Userfaultfd uffd, Fd stop_fd,
                    std::vector<Span> spans, HomeMap homes);
    struct HeldMessage {
        NodeId from;
        MsgHeader h;
        std::vector<uint8_t> payload;
    };

    void fault_loop();
    void fault_handler_loop();
    void hold_loop();
    // Before dropping the copy `page` (lock held): with a shadow guard and a page that
    // looks like a page table, holds the vCPUs out; true if release() is owed.
    bool hold_for_drop(const uint8_t* page);
    void handle_fault(const uffd_msg& m);
    // Hands a message to the core and runs its actions (lock held).
    void deliver(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload, uint64_t now);
    // Would handling `h` now take away access this node gained less than hold_ns ago?
    bool in_hold(const MsgHeader& h, uint64_t now) const;
    // Delivers the held messages of one page whose time has come; `next` gets the
    // earliest time a remaining one may go (lock held).
    void release_held(uint64_t pfn, std::deque<HeldMessage>& q, uint64_t now, uint64_t& next);
    // Runs `actions_` (lock held).
    Status run_actions(uint64_t now_ns);
    void fail(const Error& e);
    static uint64_t now_ns();

    GuestMemory& mem_;
    Options opts_;
    Userfaultfd uffd_;
    Fd stop_fd_;  // eventfd: wakes the fault thread's poll() to stop
    std::vector<Span> spans_;
    uint64_t num_pages_ = 0;
    Transport* transport_ = nullptr;  // under mu_
    std::thread fault_thread_;
    // With a shadow guard the fault thread only reads and notes faults (it must never wait
    // for the lock: ShadowMmuGuard::hold() waits, lock held, for faults to be noted), and
    // this thread handles them.
    std::thread fault_handler_thread_;
    std::mutex fq_mu_;
    std::condition_variable fq_cv_;
    std::deque<uffd_msg> fault_queue_;  // under fq_mu_
    bool fq_stop_ = false;              // under fq_mu_
    uint64_t max_gpa_ = 0;              // page-table test: addresses below this
    std::atomic<bool> failed_{false};
    std::atomic<bool> stopping_{false};
    DsmCounters counters_;
    std::vector<uint8_t> zero_page_;

    mutable std::mutex mu_;
    CoherenceCore core_;                 // under mu_
    Actions actions_;                    // under mu_: reused, no allocation per fault
    std::vector<uint64_t> fault_start_;  // under mu_: per page, ns of the first fault waiting
    std::vector<uint32_t> fault_count_;  // under mu_: per page, faults taken here
    std::vector<uint64_t> inv_start_;    // under mu_: per page, ns of the first Inv sent
    // Hold window (opts_.hold_ns != 0 only).
    std::vector<uint64_t> gained_at_;  // under mu_: per page, ns this node last gained access
    std::unordered_map<uint64_t, std::deque<HeldMessage>> held_;  // under mu_: by page
    std::condition_variable held_cv_;                             // with mu_: held_ grew
    bool hold_stop_ = false;                                      // under mu_
    std::thread hold_thread_;

    mutable std::mutex err_mu_;   // taken alone or inside mu_, never the other way round
    std::optional<Error> error_;  // under err_mu_
};

}  // namespace kv
