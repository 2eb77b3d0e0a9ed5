// The IPI router: every interrupt message (an ICR write, an IOAPIC or MSI delivery) is
// resolved to its target vCPUs here and handed to them. Shorthands and logical
// destinations are expanded on the sending node from a table of every LAPIC's addressing
// state, which all nodes keep current; a target on another node is handed to the
// `remote` sink (the interconnect) instead of a local vCPU.
//
// Threading: route() is called from any thread; the table is guarded by a mutex that is
// never held while delivering.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <vector>

#include "vcpu/interrupt.h"
#include "vcpu/lapic.h"

namespace kv {

class InterruptTarget {
  public:
    virtual ~InterruptTarget() = default;
    virtual void deliver(const InterruptMessage& m) = 0;
};

class IpiRouter {
  public:
    // vCPU i starts with APIC ID i, or apic_ids[i].
    explicit IpiRouter(uint32_t num_vcpus);
    explicit IpiRouter(const std::vector<uint8_t>& apic_ids);

    // A vCPU that runs on this node.
    void attach_local(uint32_t vcpu, InterruptTarget* target);
    // Where messages for vCPUs on other nodes go (vcpu index, message).
    void set_remote_sink(std::function<void(uint32_t, const InterruptMessage&)> sink);

    // A local LAPIC's addressing changed: updates the table and tells the listener (which
    // announces it to the other nodes).
    void update_addressing(uint32_t vcpu, const Lapic::Addressing& a);
    void set_addressing_listener(std::function<void(uint32_t, const Lapic::Addressing&)> l);
    // Another node announced a change of a LAPIC it runs: the table only. Applied even for a
    // vCPU attached here: over several nodes every vCPU is attached on every node (through
    // the placement table, vmm/node/placement.h), and only the node running it announces.
    void apply_remote_addressing(uint32_t vcpu, const Lapic::Addressing& a);
    // A message another node routed to local vCPU `vcpu` (its destination already resolved).
    // False if `vcpu` is not local.
    bool deliver_from_remote(uint32_t vcpu, const InterruptMessage& m);
    bool is_local(uint32_t vcpu) const;
    uint32_t num_vcpus() const { return uint32_t(local_.size()); }

    // Resolves the destination and delivers; returns the number of target vCPUs.
    size_t route(const InterruptMessage& m);
    // The vCPUs a message is for (exposed for tests).
    std::vector<uint32_t> targets(const InterruptMessage& m) const;

    struct Counters {
        std::array<std::atomic<uint64_t>, 8> by_mode{};  // by DeliveryMode
        // Deliveries: to a local vCPU, sent to another node, dropped (no target), and
        // received from another node for a local vCPU.
        std::atomic<uint64_t> local{0}, remote{0}, dropped{0}, from_remote{0};
    };
    const Counters& counters() const { return counters_; }
    void print_counters(FILE* out) const;

  private:
    mutable std::mutex mu_;
    std::vector<Lapic::Addressing> table_;
    std::vector<InterruptTarget*> local_;
    std::function<void(uint32_t, const InterruptMessage&)> remote_;
    std::function<void(uint32_t, const Lapic::Addressing&)> addressing_listener_;
    mutable std::atomic<uint32_t> lowest_rr_{0};
    Counters counters_;
};

}  // namespace kv
