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
    explicit IpiRouter(uint32_t num_vcpus);

    // A vCPU that runs on this node.
    void attach_local(uint32_t vcpu, InterruptTarget* target);
    // Where messages for vCPUs on other nodes go (vcpu index, message).
    void set_remote_sink(std::function<void(uint32_t, const InterruptMessage&)> sink);

    void update_addressing(uint32_t vcpu, const Lapic::Addressing& a);

    // Resolves the destination and delivers; returns the number of target vCPUs.
    size_t route(const InterruptMessage& m);
    // The vCPUs a message is for (exposed for tests).
    std::vector<uint32_t> targets(const InterruptMessage& m) const;

    struct Counters {
        std::array<std::atomic<uint64_t>, 8> by_mode{};  // by DeliveryMode
        std::atomic<uint64_t> local{0}, remote{0}, dropped{0};
    };
    const Counters& counters() const { return counters_; }
    void print_counters(FILE* out) const;

  private:
    mutable std::mutex mu_;
    std::vector<Lapic::Addressing> table_;
    std::vector<InterruptTarget*> local_;
    std::function<void(uint32_t, const InterruptMessage&)> remote_;
    mutable std::atomic<uint32_t> lowest_rr_{0};
    Counters counters_;
};

}  // namespace kv
