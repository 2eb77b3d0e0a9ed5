#include "vmm/node/placement.h"

namespace kv {

VcpuPlacement::VcpuPlacement(NodeId self, std::vector<NodeId> nodes, Forward forward)
    : self_(self), forward_(std::move(forward)), entries_(nodes.size()) {
    targets_.reserve(nodes.size());
    for (uint32_t v = 0; v < nodes.size(); ++v) {
        targets_.emplace_back(this, v);
        entries_[v].node = nodes[v];
    }
}

void VcpuPlacement::attach(uint32_t vcpu, InterruptTarget* copy) {
    std::lock_guard lk(mu_);
    entries_.at(vcpu).copy = copy;
}

void VcpuPlacement::deliver(uint32_t vcpu, const InterruptMessage& m,
                            std::optional<uint64_t> epoch) {
    std::unique_lock lk(mu_);
    if (vcpu >= entries_.size()) return;  // the router and the link check the index
    Entry& e = entries_[vcpu];
    const bool runs_here = e.node == self_ && e.copy;
    if (runs_here && !e.holding && !e.flushing) {
        ++counters_.delivered;
        e.copy->deliver(m);  // sets LAPIC state and kicks: never blocks
        return;
    }
    // Held: while v's state is saved (holding), while earlier held ones are sent on
    // (flushing, so that they keep their order), and when this node is the target of a
    // migration it has not finished (the sender knows a newer epoch than this node).
    if (e.holding || e.flushing || e.node == self_ || (epoch && *epoch > e.epoch)) {
        ++counters_.held;
        e.held.push_back({m, epoch.value_or(e.epoch)});
        return;
    }
    const NodeId to = e.node;
    const uint64_t known = e.epoch;
    ++counters_.forwarded;
    lk.unlock();
    forward_(to, vcpu, m, known);
}

void VcpuPlacement::flush(uint32_t vcpu, std::unique_lock<std::mutex>& lk) {
    Entry& e = entries_[vcpu];
    e.flushing = true;
    for (;;) {
        std::vector<Held> batch;
        batch.swap(e.held);
        if (batch.empty()) break;
        const NodeId to = e.node;
        const uint64_t known = e.epoch;
        counters_.forwarded += batch.size();
        lk.unlock();
        for (const Held& h : batch) forward_(to, vcpu, h.m, known);
        lk.lock();
    }
    e.flushing = false;
}

void VcpuPlacement::hold(uint32_t vcpu) {
    std::lock_guard lk(mu_);
    entries_.at(vcpu).holding = true;
}

void VcpuPlacement::unhold(uint32_t vcpu) {
    std::lock_guard lk(mu_);
    Entry& e = entries_.at(vcpu);
    e.holding = false;
    if (e.node != self_ || !e.copy) return;
    for (const Held& h : e.held) e.copy->deliver(h.m);
    counters_.delivered += e.held.size();
    e.held.clear();
}

void VcpuPlacement::leave(uint32_t vcpu, NodeId to, uint64_t epoch) {
    std::unique_lock lk(mu_);
    Entry& e = entries_.at(vcpu);
    e.node = to;
    e.epoch = epoch;
    e.holding = false;
    flush(vcpu, lk);
}

void VcpuPlacement::arrive(uint32_t vcpu, uint64_t epoch) {
    std::lock_guard lk(mu_);
    Entry& e = entries_.at(vcpu);
    e.node = self_;
    e.epoch = std::max(e.epoch, epoch);
    e.holding = false;
    if (!e.copy) return;
    std::vector<Held> later;  // for a migration after this one (not expected)
    for (const Held& h : e.held) {
        if (h.epoch > e.epoch) {
            later.push_back(h);
            continue;
        }
        e.copy->deliver(h.m);
        ++counters_.delivered;
    }
    e.held.swap(later);
}

void VcpuPlacement::moved(uint32_t vcpu, NodeId to, uint64_t epoch) {
    std::unique_lock lk(mu_);
    Entry& e = entries_.at(vcpu);
    if (epoch <= e.epoch) return;
    e.node = to;
    e.epoch = epoch;
    e.holding = false;
    // Interrupts held here for an epoch this update covers go on to v's node.
    if (!e.held.empty() && to != self_) flush(vcpu, lk);
}

NodeId VcpuPlacement::node_of(uint32_t vcpu) const {
    std::lock_guard lk(mu_);
    return entries_.at(vcpu).node;
}

uint64_t VcpuPlacement::epoch_of(uint32_t vcpu) const {
    std::lock_guard lk(mu_);
    return entries_.at(vcpu).epoch;
}

VcpuPlacement::Counters VcpuPlacement::counters() const {
    std::lock_guard lk(mu_);
    return counters_;
}

}  // namespace kv
