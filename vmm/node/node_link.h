// What one node of a multi-node guest says to the others, apart from coherence (memory/):
// interrupts for vCPUs on other nodes, LAPIC addressing changes, port and MMIO accesses
// forwarded to the I/O node (node 0, which has every device), level-triggered EOIs for
// its IOAPIC, the start-up handshake of the guest (TSC alignment, "ready"), and the stop of
// the guest. docs/multi-node.md describes the protocol and its threads.
//
// The link is the coherence engine's `next` handler: it sees every message the engine
// does not take, on the transport's receive thread. Forwarded I/O is served on that thread
// by the I/O node's devices, which never touch guest memory (so they cannot wait on a page
// that the same thread would have to deliver).
//
// Threads: send_*() / forward_*() from any thread (vCPU threads mostly); forward_io()
// blocks its caller until the I/O node replies or the link closes. close() wakes every
// waiter; after it, forward_io() fails at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "interconnect/payloads.h"
#include "interconnect/transport.h"
#include "vcpu/interrupt.h"
#include "vcpu/lapic.h"
#include "vmm/devices/hpet.h"
#include "vmm/node/link_messages.h"
#include "vmm/stop.h"

namespace kv {

constexpr NodeId kIoNode = 0;

class NodeLink : public MessageHandler {
  public:
    // What the link calls on this node's machine (on the receive thread).
    struct Host {
        // An interrupt another node sent for `vcpu`, with the sender's placement epoch for
        // it (placement.h): this node runs the vCPU, or receives it, or knows where it went.
        std::function<void(uint32_t vcpu, const InterruptMessage&, uint64_t epoch)> deliver_ipi;
        // Another node's LAPIC changed its addressing.
        std::function<void(uint32_t vcpu, const Lapic::Addressing&)> apply_addressing;
        // I/O node only: a forwarded access; false if no device answered.
        std::function<bool(IoKind kind, uint64_t address, std::span<uint8_t> data, bool write)>
            serve_io;
        // I/O node only: a vCPU elsewhere EOIed level-triggered `vector`.
        std::function<void(uint8_t vector)> serve_eoi;
        // The guest must stop: another node stopped it, or a node was lost.
        std::function<void(StopReason, std::string)> stop;
    };

    NodeLink(NodeId self, uint32_t num_nodes, Host host);

    // MessageHandler (the transport's receive thread).
    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    // Shutdown, Ping/Pong, Ready, TscRate, HpetCounter, Ipi, ApicIdUpdate, IoReq, IoReply.
    std::span<const MessageSpec> messages() const override;
    void on_peer_lost(NodeId peer, const Error& why) override;

    NodeId self() const { return self_; }
    // The transport, once it is up (before that, sends fail).
    void attach(Transport& transport);

    // --- start-up -------------------------------------------------------------------------
    // Node 0: the guest TSC counts from `base` (a host TSC value of node 0).
    void set_tsc_base(uint64_t base) { tsc_base_.store(base); }
    // Nodes other than 0: asks node 0 for its TSC `rounds` times and returns the KVM TSC
    // offset that makes this node's guest TSC equal node 0's (guest = host + offset). The
    // round trip with the shortest time wins; its half bounds the error. With `same_host`
    // (--local) the two host TSCs are the same counter and only the base is fetched.
    struct TscSync {
        uint64_t kvm_offset = 0;
        int64_t host_delta = 0;  // node 0's host TSC minus ours
        uint64_t best_rtt = 0;   // host TSC ticks of the best round
    };
    Result<TscSync> sync_tsc(bool same_host, int rounds,
                             std::chrono::steady_clock::time_point deadline);
    // Other nodes: tell node 0 this node's vCPUs exist (they wait for SIPI).
    Status send_ready();
    // Node 0: tells every other node the guest TSC's rate (kHz as it runs), which they
    // need to serve the ACPI PM timer themselves (Machine::pio); sent before the BSP
    // starts, so it reaches a node before any SIPI does.
    Status announce_tsc_khz(uint64_t khz);
    // Other nodes: that rate, 0 until it has come.
    uint64_t tsc_khz() const { return tsc_khz_.load(); }
    // Node 0: tells every other node the HPET's main counter changed (started, stopped or
    // written), so that they serve counter reads themselves (Machine::mmio). Sent from the
    // HPET's write, before the writing access completes: a node whose vCPU wrote has it
    // before the reply to its forwarded write.
    void announce_hpet(const Hpet::Counter& c);
    // Other nodes: the HPET counter's state as node 0 last told it (halted at 0 at first,
    // as on node 0).
    Hpet::Counter hpet_counter() const;
    // Node 0: wait for every other node's Ready; the error names those missing.
    Status wait_ready(std::chrono::steady_clock::time_point deadline);

    // --- the running guest ----------------------------------------------------------------
    // An interrupt for `vcpu` to the node that runs it as of placement `epoch`.
    void send_ipi(NodeId to, uint32_t vcpu, const InterruptMessage& m, uint64_t epoch);
    void announce_addressing(uint32_t vcpu, const Lapic::Addressing& a);
    // Other nodes: an access to the I/O node's devices; blocks until the reply. False if
    // no device answered or the link is closed (reads then see all ones).
    bool forward_io(IoKind kind, uint64_t address, std::span<uint8_t> data, bool write);
    void forward_eoi(uint8_t vector);
    // Tells every other node that the guest stopped here (once; later calls do nothing, and
    // nothing is sent once a stop came from another node). A node told of a stop passes it
    // on to every node but the sender and the origin before it stops itself: connections
    // are not ordered with each other, and a node that saw a peer's connection close before
    // the origin's Shutdown arrived would stop reporting that peer lost.
    void broadcast_stop(StopReason reason, const std::string& detail);
    // Fails every waiting and future forward_io(); sends nothing more.
    void close();

    struct Counters {
        std::atomic<uint64_t> ipis_sent{0}, ipis_received{0};
        std::atomic<uint64_t> addressing_sent{0}, addressing_received{0};
        std::atomic<uint64_t> io_forwarded{0}, io_served{0}, eois_forwarded{0}, eois_served{0};
        std::atomic<uint64_t> io_wait_ns{0};  // total time vCPUs waited for forwarded I/O
    };
    const Counters& counters() const { return counters_; }
    void print_counters(FILE* out) const;

  private:
    struct PendingIo {
        bool done = false;
        bool ok = false;
        uint64_t data = 0;
    };
    // Sends on the transport; an error if it failed (or there is no transport yet).
    Status send(NodeId to, const MsgHeader& h, std::span<const uint8_t> payload);
    // send(), and a failure only logged: the receive side reports the lost peer.
    void send_or_report(NodeId to, const MsgHeader& h, std::span<const uint8_t> payload);
    void handle_io_request(NodeId from, const MsgHeader& h, const IoPayload& io);
    // Sends a Shutdown to every reachable node but `skip_a` and `skip_b`. A failed send is
    // a warning on the node where the guest stopped (h.arg), a debug line on a relay.
    void send_stop(const MsgHeader& h, const ShutdownPayload& p, NodeId skip_a, NodeId skip_b);
    // Another node whose connection is not lost: one that can still be told something.
    bool reachable(NodeId k) const { return k != self_ && k < num_nodes_ && !lost_[k].load(); }

    const NodeId self_;
    const uint32_t num_nodes_;
    Host host_;
    std::atomic<Transport*> transport_{nullptr};
    std::atomic<uint64_t> tsc_base_{0};
    std::atomic<uint64_t> tsc_khz_{0};
    mutable std::mutex hpet_mu_;
    Hpet::Counter hpet_;                   // under hpet_mu_
    std::vector<std::atomic<bool>> lost_;  // by node: its connection was lost
    std::atomic<bool> stop_sent_{false};
    Counters counters_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool closed_ = false;                                // under mu_
    uint64_t next_request_ = 1;                          // under mu_
    std::map<uint64_t, PendingIo*> pending_io_;          // under mu_: request id -> waiter
    std::vector<bool> ready_;                            // under mu_: Ready seen, by node
    std::optional<uint64_t> pong_request_;               // under mu_: the ping being answered
    std::optional<std::pair<uint64_t, uint64_t>> pong_;  // under mu_: (node 0 TSC, base)
    uint64_t pong_arrival_ = 0;                          // under mu_: our TSC when it came
};

}  // namespace kv
