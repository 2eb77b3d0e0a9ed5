// How a guest's vCPUs and RAM are laid out over its nodes, as the guest sees it: the APIC
// ID of every vCPU (the vCPUs of one node are the cores of one package: APIC ID =
// node << core_bits | core), the ACPI tables' CPUs and NUMA nodes (one per host node, its
// vCPUs and its RAM slice), and the memory homes (each node is the home of its own slice).
#pragma once

#include <cstdint>
#include <vector>

#include "memory/guest_memory.h"
#include "memory/home_map.h"
#include "vmm/boot/acpi.h"
#include "vmm/config/config.h"

namespace kv {

struct GuestTopology {
    uint32_t num_nodes = 1;
    uint32_t core_bits = 0;         // width of the core number in an APIC ID
    uint32_t max_cores = 1;         // vCPUs of the largest node
    std::vector<uint8_t> apic_ids;  // by vCPU
    std::vector<uint32_t> node_of;  // by vCPU

    // One node with `vcpus` vCPUs: APIC ID = vCPU index.
    static GuestTopology single(uint32_t vcpus);
    // The cluster's nodes in order (node 0 gets vCPUs 0..v0-1, ...).
    static GuestTopology of(const config::Cluster& cluster);

    uint32_t num_vcpus() const { return uint32_t(apic_ids.size()); }
    uint8_t max_apic_id() const;
};

// RAM offsets (guest order, as config::RamRange) to guest-physical ranges of `mem`.
std::vector<boot::AcpiMemoryRange> ram_to_gpa(const GuestMemory& mem, uint64_t offset,
                                              uint64_t size);

// ACPI for a multi-node guest: cpus with their APIC IDs and nodes, one NUMA node per host
// node holding its RAM slice, SLIT 10 local / 20 remote, the IOAPIC's ID after the CPUs'.
boot::AcpiConfig cluster_acpi_config(const GuestMemory& mem, const config::Cluster& cluster,
                                     const GuestTopology& topo);

// The coherence homes: node k is the home of its own RAM slice (in pages).
std::vector<HomeMap::Range> cluster_homes(const config::Cluster& cluster);

}  // namespace kv
