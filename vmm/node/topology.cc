#include "vmm/node/topology.h"

#include <algorithm>

#include "vcpu/cpuid.h"

namespace kv {

GuestTopology GuestTopology::single(uint32_t vcpus) {
    GuestTopology t;
    t.max_cores = vcpus;
    t.core_bits = bits_for(vcpus);
    for (uint32_t i = 0; i < vcpus; ++i) {
        t.apic_ids.push_back(uint8_t(i));
        t.node_of.push_back(0);
    }
    return t;
}

GuestTopology GuestTopology::of(const config::Cluster& cluster) {
    GuestTopology t;
    t.num_nodes = uint32_t(cluster.nodes.size());
    t.max_cores = 1;
    for (const auto& n : cluster.nodes) t.max_cores = std::max(t.max_cores, n.vcpus);
    t.core_bits = bits_for(t.max_cores);
    for (uint32_t k = 0; k < t.num_nodes; ++k) {
        for (uint32_t c = 0; c < cluster.nodes[k].vcpus; ++c) {
            t.apic_ids.push_back(uint8_t((k << t.core_bits) | c));
            t.node_of.push_back(k);
        }
    }
    return t;
}

uint8_t GuestTopology::max_apic_id() const {
    uint8_t m = 0;
    for (uint8_t id : apic_ids) m = std::max(m, id);
    return m;
}

std::vector<boot::AcpiMemoryRange> ram_to_gpa(const GuestMemory& mem, uint64_t offset,
                                              uint64_t size) {
    std::vector<boot::AcpiMemoryRange> out;
    uint64_t at = 0;  // RAM offset of the current region's start
    const uint64_t end = offset + size;
    for (const auto& r : mem.regions()) {
        uint64_t lo = std::max(offset, at), hi = std::min(end, at + r.size);
        if (lo < hi) out.push_back({r.base.value + (lo - at), hi - lo});
        at += r.size;
    }
    return out;
}

boot::AcpiConfig cluster_acpi_config(const GuestMemory& mem, const config::Cluster& cluster,
                                     const GuestTopology& topo) {
    boot::AcpiConfig cfg;
    for (uint32_t i = 0; i < topo.num_vcpus(); ++i)
        cfg.cpus.push_back({topo.apic_ids[i], topo.node_of[i]});
    for (uint32_t k = 0; k < topo.num_nodes; ++k) {
        boot::AcpiNumaNode node;
        node.id = k;
        config::RamRange r = cluster.node_memory_range(k);
        node.memory = ram_to_gpa(mem, r.offset, r.size);
        cfg.nodes.push_back(std::move(node));
    }
    cfg.ioapic_id = uint8_t(topo.max_apic_id() + 1);
    return cfg;
}

std::vector<HomeMap::Range> cluster_homes(const config::Cluster& cluster) {
    std::vector<HomeMap::Range> out;
    for (uint32_t k = 0; k < cluster.nodes.size(); ++k) {
        config::RamRange r = cluster.node_memory_range(k);
        out.push_back({r.offset / 4096, (r.offset + r.size) / 4096, k});
    }
    return out;
}

}  // namespace kv
