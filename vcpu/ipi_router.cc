#include "vcpu/ipi_router.h"

#include <cinttypes>

namespace kv {

IpiRouter::IpiRouter(uint32_t n) : table_(n), local_(n, nullptr) {
    for (uint32_t i = 0; i < n; ++i) table_[i] = Lapic::Addressing{uint8_t(i), 0, true, false};
}

IpiRouter::IpiRouter(const std::vector<uint8_t>& apic_ids)
    : table_(apic_ids.size()), local_(apic_ids.size(), nullptr) {
    for (size_t i = 0; i < apic_ids.size(); ++i)
        table_[i] = Lapic::Addressing{apic_ids[i], 0, true, false};
}

void IpiRouter::attach_local(uint32_t vcpu, InterruptTarget* target) {
    std::lock_guard lk(mu_);
    local_.at(vcpu) = target;
}

void IpiRouter::set_remote_sink(std::function<void(uint32_t, const InterruptMessage&)> sink) {
    std::lock_guard lk(mu_);
    remote_ = std::move(sink);
}

void IpiRouter::update_addressing(uint32_t vcpu, const Lapic::Addressing& a) {
    std::function<void(uint32_t, const Lapic::Addressing&)> listener;
    {
        std::lock_guard lk(mu_);
        table_.at(vcpu) = a;
        listener = addressing_listener_;
    }
    if (listener) listener(vcpu, a);
}

void IpiRouter::set_addressing_listener(std::function<void(uint32_t, const Lapic::Addressing&)> l) {
    std::lock_guard lk(mu_);
    addressing_listener_ = std::move(l);
}

void IpiRouter::apply_remote_addressing(uint32_t vcpu, const Lapic::Addressing& a) {
    std::lock_guard lk(mu_);
    if (vcpu < table_.size()) table_[vcpu] = a;
}

bool IpiRouter::is_local(uint32_t vcpu) const {
    std::lock_guard lk(mu_);
    return vcpu < local_.size() && local_[vcpu] != nullptr;
}

bool IpiRouter::deliver_from_remote(uint32_t vcpu, const InterruptMessage& m) {
    InterruptTarget* target = nullptr;
    {
        std::lock_guard lk(mu_);
        if (vcpu < local_.size()) target = local_[vcpu];
    }
    if (!target) return false;
    counters_.from_remote.fetch_add(1, std::memory_order_relaxed);
    target->deliver(m);
    return true;
}

std::vector<uint32_t> IpiRouter::targets(const InterruptMessage& m) const {
    std::lock_guard lk(mu_);
    std::vector<uint32_t> out;
    uint32_t n = uint32_t(table_.size());
    switch (m.shorthand) {
        case Shorthand::Self:
            out.push_back(m.source_vcpu);
            return out;
        case Shorthand::AllIncludingSelf:
        case Shorthand::AllExcludingSelf:
            for (uint32_t i = 0; i < n; ++i)
                if (m.shorthand == Shorthand::AllIncludingSelf || i != m.source_vcpu)
                    out.push_back(i);
            return out;
        case Shorthand::None:
            break;
    }
    uint8_t dest = uint8_t(m.dest);
    for (uint32_t i = 0; i < n; ++i) {
        const auto& a = table_[i];
        bool match;
        if (!m.logical) {
            match = dest == 0xFF || a.apic_id == dest;
        } else if (a.flat) {
            match = (a.ldr & dest) != 0;
        } else {  // cluster model: high nibble cluster, low nibble member mask
            match = (dest >> 4) == (a.ldr >> 4) && (dest & a.ldr & 0xF) != 0;
            if (dest == 0xFF) match = true;
        }
        // INIT/SIPI reach a vCPU whose APIC is still software-disabled; logical
        // destinations need a configured LDR, which implies an enabled APIC.
        if (match) out.push_back(i);
    }
    if (m.mode == DeliveryMode::LowestPriority && out.size() > 1) {
        // Priorities are all equal under Linux (TPR 0): rotate for fairness.
        uint32_t pick = lowest_rr_.fetch_add(1, std::memory_order_relaxed) % out.size();
        out = {out[pick]};
    }
    return out;
}

size_t IpiRouter::route(const InterruptMessage& m) {
    std::vector<uint32_t> t = targets(m);
    counters_.by_mode[size_t(m.mode) & 7].fetch_add(1, std::memory_order_relaxed);
    if (t.empty()) counters_.dropped.fetch_add(1, std::memory_order_relaxed);
    for (uint32_t v : t) {
        InterruptTarget* local;
        std::function<void(uint32_t, const InterruptMessage&)> remote;
        {
            std::lock_guard lk(mu_);
            local = local_[v];
            if (!local) remote = remote_;
        }
        if (local) {
            counters_.local.fetch_add(1, std::memory_order_relaxed);
            local->deliver(m);
        } else if (remote) {
            counters_.remote.fetch_add(1, std::memory_order_relaxed);
            remote(v, m);
        } else {
            counters_.dropped.fetch_add(1, std::memory_order_relaxed);
        }
    }
    return t.size();
}

void IpiRouter::print_counters(FILE* out) const {
    static const char* names[8] = {"fixed", "lowest", "smi",  "reserved",
                                   "nmi",   "init",   "sipi", "extint"};
    std::fprintf(out, "ipi-router: routed");
    for (size_t i = 0; i < 8; ++i)
        if (uint64_t c = counters_.by_mode[i].load())
            std::fprintf(out, " %s=%" PRIu64, names[i], c);
    std::fprintf(out,
                 " local=%" PRIu64 " sent-remote=%" PRIu64 " received-remote=%" PRIu64
                 " dropped=%" PRIu64 "\n",
                 counters_.local.load(), counters_.remote.load(), counters_.from_remote.load(),
                 counters_.dropped.load());
}

}  // namespace kv
