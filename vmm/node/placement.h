// Where each vCPU of a multi-node guest runs, as this node knows it, and where an
// interrupt for a vCPU goes from here (docs/migration.md). Every node has a copy of every
// vCPU (a KVM vCPU that only runs where the vCPU is placed); the IPI router hands every
// interrupt for vCPU v to this table, which delivers it to the local copy when v runs
// here and forwards it to v's node otherwise.
//
// A migration of v is numbered (its epoch, counted by the I/O node, which coordinates
// every migration one at a time). Every interrupt sent for v carries the sender's epoch
// for v, and a node receives an interrupt for v only because it is v's node as of that
// epoch. So a node that receives one with an epoch newer than its own is the target of a
// migration it has not finished: it holds the interrupt until v arrives, then delivers it.
// Any other node that does not run v forwards it to the node it knows of, which has a
// newer epoch; interrupts follow v along its path and none is lost or delivered twice.
// While v's state is being saved, its interrupts are held too (leave()), and the held ones
// are sent on, in order, before any later one.
//
// Threads: deliver() from any thread (vCPU threads, the IOAPIC, the interconnect's receive
// thread); the migration steps from the control thread or the cluster control's worker.
// The lock is held while an interrupt is handed to a local vCPU (which never blocks) and
// never while one is sent to another node.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "interconnect/message.h"
#include "vcpu/ipi_router.h"

namespace kv {

class VcpuPlacement {
  public:
    // Sends an interrupt for `vcpu` to node `to`, carrying `epoch` (NodeLink::send_ipi).
    using Forward =
        std::function<void(NodeId to, uint32_t vcpu, const InterruptMessage& m, uint64_t epoch)>;

    // `nodes[v]` is vCPU v's node at start-up (epoch 0).
    VcpuPlacement(NodeId self, std::vector<NodeId> nodes, Forward forward);
    VcpuPlacement(const VcpuPlacement&) = delete;  // router_target() points into it
    VcpuPlacement& operator=(const VcpuPlacement&) = delete;

    // This node's copy of vCPU v: where its interrupts go while v runs here.
    void attach(uint32_t vcpu, InterruptTarget* copy);
    // What the IPI router delivers to for vCPU v (on every node, for every vCPU).
    InterruptTarget* router_target(uint32_t vcpu) { return &targets_.at(vcpu); }

    // An interrupt for vCPU v: from this node (no epoch) or from another node (its epoch).
    void deliver(uint32_t vcpu, const InterruptMessage& m, std::optional<uint64_t> epoch);

    // --- the steps of a migration -----------------------------------------------------------
    // On v's node, before its state is saved: its interrupts are held from here on.
    void hold(uint32_t vcpu);
    // On v's node, the save failed: v stays, the held interrupts are delivered to it.
    void unhold(uint32_t vcpu);
    // On v's node, its state saved: v goes to `to` as migration `epoch`; the held interrupts
    // and every later one are sent there.
    void leave(uint32_t vcpu, NodeId to, uint64_t epoch);
    // On the target node, v's state restored: v runs here from migration `epoch`; the
    // interrupts held for it are delivered to the copy, in the order they came.
    void arrive(uint32_t vcpu, uint64_t epoch);
    // On every other node: v is on `to` since migration `epoch` (an older epoch is ignored).
    void moved(uint32_t vcpu, NodeId to, uint64_t epoch);

    NodeId node_of(uint32_t vcpu) const;
    uint64_t epoch_of(uint32_t vcpu) const;
    bool here(uint32_t vcpu) const { return node_of(vcpu) == self_; }
    uint32_t num_vcpus() const { return uint32_t(entries_.size()); }

    struct Counters {
        uint64_t delivered = 0;  // to a vCPU running here
        uint64_t forwarded = 0;  // sent to the vCPU's node
        uint64_t held = 0;       // held while the vCPU was leaving or arriving
    };
    Counters counters() const;

  private:
    struct Held {
        InterruptMessage m;
        uint64_t epoch;  // the sender's (this node's own epoch for local ones)
    };
    struct Entry {
        NodeId node = 0;
        uint64_t epoch = 0;
        InterruptTarget* copy = nullptr;
        bool holding = false;   // leave() not yet called: the state is being saved
        bool flushing = false;  // leave() is sending the held interrupts on
        std::vector<Held> held;
    };
    class Target final : public InterruptTarget {
      public:
        Target(VcpuPlacement* p, uint32_t vcpu) : p_(p), vcpu_(vcpu) {}
        void deliver(const InterruptMessage& m) override { p_->deliver(vcpu_, m, std::nullopt); }

      private:
        VcpuPlacement* p_;
        uint32_t vcpu_;
    };
    // Sends the held interrupts of `vcpu` to its node until none is left (lock not held).
    void flush(uint32_t vcpu, std::unique_lock<std::mutex>& lk);

    const NodeId self_;
    Forward forward_;
    std::vector<Target> targets_;
    mutable std::mutex mu_;
    std::vector<Entry> entries_;  // under mu_
    Counters counters_;           // under mu_
};

}  // namespace kv
