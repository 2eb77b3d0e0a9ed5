#include "vmm/boot/acpi.h"

#include <set>

#include "vmm/boot/acpi_tables.h"
#include "vmm/boot/layout.h"

namespace kv::boot {

namespace {

constexpr uint8_t kLocalDistance = 10;   // SLIT: a node to itself
constexpr uint8_t kRemoteDistance = 20;  // SLIT default between nodes
constexpr uint8_t kUnreachable = 0xFF;
constexpr uint8_t kBroadcastApicId = 0xFF;

Result<std::vector<std::vector<uint8_t>>> check_config(const AcpiConfig& cfg, uint8_t& ioapic) {
    size_t n = cfg.nodes.size();
    if (cfg.cpus.empty()) return Error{"acpi: no CPUs"};
    if (cfg.cpus.size() > 255) return Error{"acpi: more than 255 CPUs (xAPIC ids are 8-bit)"};
    if (n == 0) return Error{"acpi: no NUMA nodes"};
    std::set<uint32_t> node_ids;
    for (const auto& node : cfg.nodes) {
        if (node.id >= n || !node_ids.insert(node.id).second)
            return Error{"acpi: NUMA node ids must be 0.." + std::to_string(n - 1) +
                         ", each once (got " + std::to_string(node.id) + ")"};
        for (const auto& r : node.memory)
            if (r.size == 0 || r.base + r.size < r.base)
                return Error{"acpi: node " + std::to_string(node.id) +
                             " has an empty or "
                             "wrapping memory range"};
    }
    std::set<uint8_t> apic_ids;
    for (const auto& cpu : cfg.cpus) {
        if (cpu.apic_id == kBroadcastApicId)
            return Error{"acpi: APIC id 255 is the xAPIC broadcast id"};
        if (!apic_ids.insert(cpu.apic_id).second)
            return Error{"acpi: APIC id " + std::to_string(cpu.apic_id) + " used twice"};
        if (cpu.node >= n)
            return Error{"acpi: CPU with APIC id " + std::to_string(cpu.apic_id) +
                         " is on NUMA node " + std::to_string(cpu.node) + ", which is not defined"};
    }
    ioapic = cfg.ioapic_id.value_or(static_cast<uint8_t>(cfg.cpus.size()));
    if (apic_ids.count(ioapic) || ioapic == kBroadcastApicId)
        return Error{"acpi: IOAPIC id " + std::to_string(ioapic) + " clashes with an APIC id"};

    std::vector<std::vector<uint8_t>> dist = cfg.distances;
    if (dist.empty()) {
        dist.assign(n, std::vector<uint8_t>(n, kRemoteDistance));
        for (size_t i = 0; i < n; ++i) dist[i][i] = kLocalDistance;
    }
    if (dist.size() != n)
        return Error{"acpi: SLIT must be " + std::to_string(n) + "x" + std::to_string(n)};
    for (size_t i = 0; i < n; ++i) {
        if (dist[i].size() != n)
            return Error{"acpi: SLIT must be " + std::to_string(n) + "x" + std::to_string(n)};
        // Linux ignores a SLIT whose diagonal is not 10 or whose other entries are <= 10.
        for (size_t j = 0; j < n; ++j) {
            bool ok = i == j ? dist[i][j] == kLocalDistance
                             : dist[i][j] > kLocalDistance && dist[i][j] != kUnreachable;
            if (!ok)
                return Error{"acpi: SLIT distance " + std::to_string(i) + "->" + std::to_string(j) +
                             " = " + std::to_string(dist[i][j]) +
                             " (10 to itself, 11-254 to another node)"};
        }
    }
    return dist;
}

// Hands out 16-byte aligned space in the ACPI area and writes tables there.
class Placer {
  public:
    explicit Placer(const GuestMemory& mem) : mem_(mem) {}
    Result<uint64_t> put(const std::vector<uint8_t>& table, uint64_t align = 16) {
        next_ = (next_ + align - 1) / align * align;
        if (next_ + table.size() > kAcpiGpa + kAcpiSize)
            return Error{"acpi: tables do not fit in the 128 KiB BIOS area"};
        uint64_t at = next_;
        KV_TRY(mem_.write(Gpa(at), table));
        next_ += table.size();
        return at;
    }

  private:
    const GuestMemory& mem_;
    uint64_t next_ = kRsdpGpa + 64;  // the RSDP takes the first 36 bytes
};

}  // namespace

uint8_t acpi_checksum(const uint8_t* data, size_t len) {
    uint8_t sum = 0;
    for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + data[i]);
    return sum;
}

AcpiConfig AcpiConfig::single_node(const GuestMemory& mem, unsigned vcpus) {
    AcpiConfig cfg;
    for (unsigned i = 0; i < vcpus; ++i) cfg.cpus.push_back({static_cast<uint8_t>(i), 0});
    AcpiNumaNode node;
    for (const auto& r : mem.regions()) node.memory.push_back({r.base.value, r.size});
    cfg.nodes.push_back(std::move(node));
    return cfg;
}

Result<Gpa> write_acpi_tables(const GuestMemory& mem, const AcpiConfig& cfg) {
    uint8_t ioapic_id = 0;
    auto dist = check_config(cfg, ioapic_id);
    if (!dist) return dist.error();
    if (!mem.host_ptr(Gpa(kAcpiGpa), kAcpiSize))
        return Error{"memory: guest RAM does not cover the ACPI area at 0xE0000"};

    // Referenced tables go first so that their referrers can be built with the addresses.
    Placer place(mem);
    auto facs = place.put(acpi::facs(), 64);  // the FACS must be 64-byte aligned
    if (!facs) return facs.error();
    auto dsdt = place.put(acpi::dsdt(cfg));
    if (!dsdt) return dsdt.error();
    std::vector<uint64_t> entries;
    for (auto table : {acpi::fadt(*facs, *dsdt, cfg.fixed_power_button), acpi::madt(cfg, ioapic_id),
                       acpi::srat(cfg), acpi::slit(*dist)}) {
        auto at = place.put(table);
        if (!at) return at.error();
        entries.push_back(*at);
    }
    if (cfg.hpet) {
        auto at = place.put(acpi::hpet(*cfg.hpet));
        if (!at) return at.error();
        entries.push_back(*at);
    }
    auto xsdt = place.put(acpi::xsdt(entries));
    if (!xsdt) return xsdt.error();
    KV_TRY(mem.write(Gpa(kRsdpGpa), acpi::rsdp(*xsdt)));
    return Gpa(kRsdpGpa);
}

}  // namespace kv::boot
