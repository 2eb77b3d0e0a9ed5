// write_acpi_tables(): every table parsed back from guest memory by its spec offsets.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "memory/guest_memory.h"
#include "vmm/boot/acpi.h"

namespace {

using kv::Gpa;
using kv::GuestMemory;
using namespace kv::boot;

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

struct Table {
    uint64_t gpa = 0;
    std::vector<uint8_t> b;
    uint8_t u8(size_t o) const { return b.at(o); }
    uint16_t u16(size_t o) const { return uint16_t(u8(o) | u8(o + 1) << 8); }
    uint32_t u32(size_t o) const { return u16(o) | uint32_t(u16(o + 2)) << 16; }
    uint64_t u64(size_t o) const { return u32(o) | uint64_t(u32(o + 4)) << 32; }
    std::string str(size_t o, size_t n) const {
        return std::string(b.begin() + o, b.begin() + o + n);
    }
    std::string sig() const { return str(0, 4); }
};

Table read_at(const GuestMemory& mem, uint64_t gpa, size_t len) {
    Table t;
    t.gpa = gpa;
    t.b.resize(len);
    EXPECT_TRUE(mem.read(Gpa(gpa), t.b).ok()) << gpa;
    return t;
}

// A table with a standard header: its length is at offset 4.
Table read_table(const GuestMemory& mem, uint64_t gpa) {
    uint32_t len = read_at(mem, gpa, 8).u32(4);
    return read_at(mem, gpa, len);
}

uint8_t sum(const std::vector<uint8_t>& b, size_t n) {
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i) s = uint8_t(s + b[i]);
    return s;
}

void expect_header(const Table& t, const char* sig, uint8_t revision) {
    EXPECT_EQ(t.sig(), sig);
    EXPECT_EQ(t.u32(4), t.b.size());
    EXPECT_EQ(t.u8(8), revision) << sig;
    EXPECT_EQ(sum(t.b, t.b.size()), 0) << sig << " checksum";
    EXPECT_EQ(t.str(10, 6), "KRVSR ");
    EXPECT_EQ(t.str(16, 8), "KERRVISR");
    EXPECT_EQ(t.str(28, 4), "KRVS");
    EXPECT_GE(t.gpa, 0xE0000u);
    EXPECT_LE(t.gpa + t.b.size(), 0x100000u);
    EXPECT_EQ(t.gpa % 16, 0u);
}

struct Tables {
    Table rsdp, xsdt;
    std::map<std::string, Table> by_sig;  // reached through the XSDT and the FADT
};

// Follows RSDP -> XSDT -> each table, and FADT -> FACS, DSDT.
Tables walk(const GuestMemory& mem, Gpa rsdp_gpa) {
    Tables t;
    t.rsdp = read_at(mem, rsdp_gpa.value, 36);
    t.xsdt = read_table(mem, t.rsdp.u64(24));
    for (size_t o = 36; o + 8 <= t.xsdt.b.size(); o += 8) {
        Table x = read_table(mem, t.xsdt.u64(o));
        t.by_sig[x.sig()] = x;
    }
    if (t.by_sig.count("FACP")) {
        const Table& f = t.by_sig["FACP"];
        t.by_sig["FACS"] = read_at(mem, f.u64(132), 64);
        t.by_sig["DSDT"] = read_table(mem, f.u64(140));
    }
    return t;
}

struct Guest {
    GuestMemory mem;
    Gpa rsdp;
};

Guest make(uint64_t ram, const AcpiConfig& cfg) {
    auto mem = GuestMemory::create(ram);
    EXPECT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, cfg);
    EXPECT_TRUE(rsdp.ok()) << rsdp.error().message;
    return {std::move(mem).value(), rsdp.ok() ? *rsdp : Gpa()};
}

TEST(AcpiTables, RsdpPointsToXsdtWithChecksums) {
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, AcpiConfig::single_node(*mem, 2));
    ASSERT_TRUE(rsdp.ok()) << rsdp.error().message;
    EXPECT_EQ(rsdp->value, 0xE0000u);
    Table r = read_at(*mem, rsdp->value, 36);
    EXPECT_EQ(r.str(0, 8), "RSD PTR ");
    EXPECT_EQ(sum(r.b, 20), 0);  // ACPI 1.0 checksum
    EXPECT_EQ(sum(r.b, 36), 0);  // extended checksum
    EXPECT_EQ(r.str(9, 6), "KRVSR ");
    EXPECT_EQ(r.u8(15), 2);     // revision
    EXPECT_EQ(r.u32(20), 36u);  // length
    Tables t = walk(*mem, *rsdp);
    expect_header(t.xsdt, "XSDT", 1);
    EXPECT_EQ(t.xsdt.b.size(), 36u + 4 * 8);
    for (const char* sig : {"FACP", "APIC", "SRAT", "SLIT", "DSDT", "FACS"})
        EXPECT_TRUE(t.by_sig.count(sig)) << sig;
}

TEST(AcpiTables, FadtDescribesPmHardware) {
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, AcpiConfig::single_node(*mem, 1));
    ASSERT_TRUE(rsdp.ok()) << rsdp.error().message;
    Tables t = walk(*mem, *rsdp);
    const Table& f = t.by_sig["FACP"];
    expect_header(f, "FACP", 6);
    EXPECT_EQ(f.b.size(), 276u);
    EXPECT_EQ(f.u32(40), t.by_sig["DSDT"].gpa);   // DSDT
    EXPECT_EQ(f.u64(140), t.by_sig["DSDT"].gpa);  // X_DSDT
    EXPECT_EQ(f.u32(36), f.u64(132));             // FIRMWARE_CTRL == X_FIRMWARE_CTRL
    EXPECT_EQ(f.u16(46), 9);                      // SCI_INT
    EXPECT_EQ(f.u32(48), 0u);                     // SMI_CMD: ACPI always on
    EXPECT_EQ(f.u32(56), 0x600u);                 // PM1a_EVT_BLK
    EXPECT_EQ(f.u32(60), 0u);                     // PM1b_EVT_BLK
    EXPECT_EQ(f.u32(64), 0x604u);                 // PM1a_CNT_BLK
    EXPECT_EQ(f.u32(72), 0u);                     // PM2_CNT_BLK
    EXPECT_EQ(f.u32(76), 0x608u);                 // PM_TMR_BLK
    EXPECT_EQ(f.u32(80), 0x620u);                 // GPE0_BLK
    EXPECT_EQ(f.u32(84), 0u);                     // GPE1_BLK
    EXPECT_EQ(f.u8(88), 4);                       // PM1_EVT_LEN
    EXPECT_EQ(f.u8(89), 2);                       // PM1_CNT_LEN
    EXPECT_EQ(f.u8(91), 4);                       // PM_TMR_LEN
    EXPECT_EQ(f.u8(92), 8);                       // GPE0_BLK_LEN
    EXPECT_GT(f.u16(96), 100);                    // no C2
    EXPECT_GT(f.u16(98), 1000);                   // no C3
    EXPECT_EQ(f.u8(108), 0x32);                   // CENTURY
    uint16_t boot_arch = f.u16(109);
    EXPECT_TRUE(boot_arch & 1);    // legacy devices
    EXPECT_FALSE(boot_arch & 2);   // no 8042
    EXPECT_TRUE(boot_arch & 4);    // no VGA
    EXPECT_FALSE(boot_arch & 8);   // MSI supported
    EXPECT_FALSE(boot_arch & 32);  // CMOS RTC present
    uint32_t flags = f.u32(112);
    EXPECT_TRUE(flags & (1u << 0));    // WBINVD
    EXPECT_TRUE(flags & (1u << 2));    // PROC_C1
    EXPECT_FALSE(flags & (1u << 4));   // fixed power button present (default)
    EXPECT_TRUE(flags & (1u << 5));    // no fixed sleep button
    EXPECT_FALSE(flags & (1u << 8));   // TMR_VAL_EXT: 24-bit timer
    EXPECT_TRUE(flags & (1u << 10));   // RESET_REG_SUP
    EXPECT_FALSE(flags & (1u << 20));  // not hardware-reduced
    // RESET_REG: SystemIO, 8 bits, byte access, 0xCF9; value 6.
    EXPECT_EQ(f.u8(116), 1);
    EXPECT_EQ(f.u8(117), 8);
    EXPECT_EQ(f.u8(119), 1);
    EXPECT_EQ(f.u64(120), 0xCF9u);
    EXPECT_EQ(f.u8(128), 6);
    // X_ blocks agree with the legacy fields: SystemIO, width = 8 * length.
    struct {
        size_t off;
        uint64_t port;
        uint8_t bits;
    } xs[] = {{148, 0x600, 32}, {172, 0x604, 16}, {208, 0x608, 32}, {220, 0x620, 64}};
    for (auto x : xs) {
        EXPECT_EQ(f.u8(x.off), 1) << x.off;
        EXPECT_EQ(f.u8(x.off + 1), x.bits) << x.off;
        EXPECT_EQ(f.u64(x.off + 4), x.port) << x.off;
    }
    for (size_t off : {160, 184, 196, 232, 244, 256}) EXPECT_EQ(f.u64(off + 4), 0u) << off;

    const Table& facs = t.by_sig["FACS"];
    EXPECT_EQ(facs.sig(), "FACS");
    EXPECT_EQ(facs.u32(4), 64u);
    EXPECT_EQ(facs.gpa % 64, 0u);
}

TEST(AcpiTables, HpetTableOnlyWhenAsked) {
    auto mem = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto cfg = AcpiConfig::single_node(*mem, 1);
    auto rsdp = write_acpi_tables(*mem, cfg);
    ASSERT_TRUE(rsdp.ok());
    EXPECT_FALSE(walk(*mem, *rsdp).by_sig.count("HPET"));

    cfg.hpet = AcpiHpet{0xFED00000, 0x4B562201};
    rsdp = write_acpi_tables(*mem, cfg);
    ASSERT_TRUE(rsdp.ok()) << rsdp.error().message;
    Tables t = walk(*mem, *rsdp);
    EXPECT_EQ(t.xsdt.b.size(), 36u + 5 * 8);
    ASSERT_TRUE(t.by_sig.count("HPET"));
    const Table& h = t.by_sig["HPET"];
    expect_header(h, "HPET", 1);
    EXPECT_EQ(h.b.size(), 56u);
    EXPECT_EQ(h.u32(36), 0x4B562201u);  // Event Timer Block ID
    EXPECT_EQ(h.u8(40), 0);             // base address: system memory
    EXPECT_EQ(h.u8(41), 64);            // register width
    EXPECT_EQ(h.u64(44), 0xFED00000u);
    EXPECT_EQ(h.u8(52), 0);  // HPET number
}

TEST(AcpiTables, FadtWithoutFixedPowerButton) {
    auto mem = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto cfg = AcpiConfig::single_node(*mem, 1);
    cfg.fixed_power_button = false;
    auto rsdp = write_acpi_tables(*mem, cfg);
    ASSERT_TRUE(rsdp.ok());
    Tables all = walk(*mem, *rsdp);
    const Table& f = all.by_sig["FACP"];
    EXPECT_TRUE(f.u32(112) & (1u << 4));
    EXPECT_EQ(sum(f.b, f.b.size()), 0);
}

// Finds `needle` in the table's bytes.
bool contains(const Table& t, const std::vector<uint8_t>& needle) {
    return std::search(t.b.begin(), t.b.end(), needle.begin(), needle.end()) != t.b.end();
}

TEST(AcpiTables, DsdtHoldsS5AndIsaDevices) {
    auto mem = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, AcpiConfig::single_node(*mem, 1));
    ASSERT_TRUE(rsdp.ok());
    Tables all = walk(*mem, *rsdp);
    const Table& d = all.by_sig["DSDT"];
    expect_header(d, "DSDT", 2);
    // Name (\_S5, Package (4) {5, 5, 0, 0})
    EXPECT_TRUE(contains(
        d, {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}));
    // Scope (\_SB) and the two devices (ExtOp Device).
    EXPECT_TRUE(contains(d, {'\\', '_', 'S', 'B', '_'}));
    EXPECT_TRUE(contains(d, {'C', 'O', 'M', '1', 0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05,
                             0x01}));  // EISAID ("PNP0501")
    EXPECT_TRUE(contains(d, {'R', 'T', 'C', '_', 0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0B,
                             0x00}));  // EISAID ("PNP0B00")
    // COM1 _CRS: IO (Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags {4}, end tag.
    EXPECT_TRUE(contains(
        d, {0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00}));
    // RTC _CRS: IO (Decode16, 0x70, 0x70, 1, 2), IRQNoFlags {8}.
    EXPECT_TRUE(contains(
        d, {0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x22, 0x00, 0x01, 0x79, 0x00}));
    EXPECT_TRUE(contains(d, {'_', 'S', 'T', 'A', 0x0A, 0x0F}));
}

TEST(AcpiTables, PciRootBridgeOnlyWhenAsked) {
    const std::vector<uint8_t> pnp0a03{0x0C, 0x41, 0xD0, 0x0A, 0x03};
    // _PRT entry {0x1FFFF, 0, 0, 17}: slot 1 INTA -> GSI 16 + (1 + 0) % 4.
    const std::vector<uint8_t> slot1_inta{0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF,
                                          0x01, 0x00, 0x00, 0x00, 0x0A, 0x11};
    for (bool pci : {false, true}) {
        auto mem = GuestMemory::create(64 * kMiB);
        ASSERT_TRUE(mem.ok());
        auto cfg = AcpiConfig::single_node(*mem, 1);
        cfg.pci_root_bridge = pci;
        auto rsdp = write_acpi_tables(*mem, cfg);
        ASSERT_TRUE(rsdp.ok());
        Tables all = walk(*mem, *rsdp);
        const Table& d = all.by_sig["DSDT"];
        EXPECT_EQ(sum(d.b, d.b.size()), 0);
        EXPECT_EQ(contains(d, pnp0a03), pci);
        EXPECT_EQ(contains(d, slot1_inta), pci);
    }
}

struct MadtEntry {
    uint8_t type;
    std::vector<uint8_t> body;
};

std::vector<MadtEntry> subtables(const Table& t, size_t first) {
    std::vector<MadtEntry> v;
    for (size_t o = first; o < t.b.size();) {
        uint8_t len = t.u8(o + 1);
        EXPECT_GE(len, 2);
        if (len < 2) break;
        v.push_back({t.u8(o), std::vector<uint8_t>(t.b.begin() + o, t.b.begin() + o + len)});
        o += len;
    }
    return v;
}

TEST(AcpiTables, MadtHasEveryCpuIoApicOverridesAndNmi) {
    auto mem = GuestMemory::create(256 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, AcpiConfig::single_node(*mem, 4));
    ASSERT_TRUE(rsdp.ok());
    Tables all = walk(*mem, *rsdp);
    const Table& m = all.by_sig["APIC"];
    expect_header(m, "APIC", 5);
    EXPECT_EQ(m.u32(36), 0xFEE00000u);
    EXPECT_EQ(m.u32(40), 1u);  // PCAT_COMPAT
    auto e = subtables(m, 44);
    ASSERT_EQ(e.size(), 4u + 1 + 2 + 1);
    for (unsigned i = 0; i < 4; ++i) {
        EXPECT_EQ(e[i].type, 0);
        ASSERT_EQ(e[i].body.size(), 8u);
        EXPECT_EQ(e[i].body[2], i);  // processor UID
        EXPECT_EQ(e[i].body[3], i);  // APIC id
        EXPECT_EQ(e[i].body[4], 1);  // enabled
    }
    Table io{0, e[4].body};
    EXPECT_EQ(io.u8(0), 1);
    EXPECT_EQ(io.u8(1), 12);
    EXPECT_EQ(io.u8(2), 4);  // IOAPIC id = number of CPUs
    EXPECT_EQ(io.u32(4), 0xFEC00000u);
    EXPECT_EQ(io.u32(8), 0u);
    Table iso0{0, e[5].body}, iso9{0, e[6].body};
    EXPECT_EQ(iso0.u8(0), 2);
    EXPECT_EQ(iso0.u8(1), 10);
    EXPECT_EQ(iso0.u8(3), 0);     // IRQ 0
    EXPECT_EQ(iso0.u32(4), 2u);   // -> GSI 2
    EXPECT_EQ(iso0.u16(8), 0);    // conforming
    EXPECT_EQ(iso9.u8(3), 9);     // IRQ 9 (SCI)
    EXPECT_EQ(iso9.u32(4), 9u);   // -> GSI 9
    EXPECT_EQ(iso9.u16(8), 0xD);  // level, active high
    Table nmi{0, e[7].body};
    EXPECT_EQ(nmi.u8(0), 4);
    EXPECT_EQ(nmi.u8(1), 6);
    EXPECT_EQ(nmi.u8(2), 0xFF);  // all processors
    EXPECT_EQ(nmi.u8(5), 1);     // LINT1
}

TEST(AcpiTables, SratAndSlitForOneNode) {
    auto mem = GuestMemory::create(5 * kGiB);
    ASSERT_TRUE(mem.ok());
    auto rsdp = write_acpi_tables(*mem, AcpiConfig::single_node(*mem, 2));
    ASSERT_TRUE(rsdp.ok());
    Tables t = walk(*mem, *rsdp);
    const Table& s = t.by_sig["SRAT"];
    expect_header(s, "SRAT", 3);
    EXPECT_EQ(s.u32(36), 1u);
    auto e = subtables(s, 48);
    ASSERT_EQ(e.size(), 2u + 2);
    for (unsigned i = 0; i < 2; ++i) {
        Table c{0, e[i].body};
        EXPECT_EQ(c.u8(0), 0);
        EXPECT_EQ(c.u8(1), 16);
        EXPECT_EQ(c.u8(2), 0);  // node
        EXPECT_EQ(c.u8(3), i);  // APIC id
        EXPECT_EQ(c.u32(4), 1u);
    }
    // The whole RAM: below the hole and above 4 GiB.
    uint64_t want[2][2] = {{0, 3 * kGiB}, {4 * kGiB, 2 * kGiB}};
    for (unsigned i = 0; i < 2; ++i) {
        Table r{0, e[2 + i].body};
        EXPECT_EQ(r.u8(0), 1);
        EXPECT_EQ(r.u8(1), 40);
        EXPECT_EQ(r.u32(2), 0u);
        EXPECT_EQ(r.u64(8), want[i][0]);
        EXPECT_EQ(r.u64(16), want[i][1]);
        EXPECT_EQ(r.u32(28), 1u);  // enabled, not hot-pluggable
    }
    const Table& l = t.by_sig["SLIT"];
    expect_header(l, "SLIT", 1);
    EXPECT_EQ(l.u64(36), 1u);
    EXPECT_EQ(l.b.size(), 44u + 1);
    EXPECT_EQ(l.u8(44), 10);
}

AcpiConfig two_nodes() {
    AcpiConfig cfg;
    cfg.cpus = {{0, 0}, {1, 0}, {2, 1}, {3, 1}};
    cfg.nodes = {{0, {{0, 1 * kGiB}}}, {1, {{1 * kGiB, 1 * kGiB}}}};
    return cfg;
}

TEST(AcpiTables, SratAndSlitForTwoNodes) {
    auto cfg = two_nodes();
    cfg.distances = {{10, 21}, {21, 10}};
    auto g = make(2 * kGiB, cfg);
    Tables t = walk(g.mem, g.rsdp);
    auto e = subtables(t.by_sig["SRAT"], 48);
    ASSERT_EQ(e.size(), 4u + 2);
    for (unsigned i = 0; i < 4; ++i) {
        EXPECT_EQ(e[i].body[3], i);              // APIC id
        EXPECT_EQ(e[i].body[2], i < 2 ? 0 : 1);  // node
    }
    Table m0{0, e[4].body}, m1{0, e[5].body};
    EXPECT_EQ(m0.u32(2), 0u);
    EXPECT_EQ(m0.u64(8), 0u);
    EXPECT_EQ(m0.u64(16), 1 * kGiB);
    EXPECT_EQ(m1.u32(2), 1u);
    EXPECT_EQ(m1.u64(8), 1 * kGiB);
    EXPECT_EQ(m1.u64(16), 1 * kGiB);
    const Table& l = t.by_sig["SLIT"];
    EXPECT_EQ(l.u64(36), 2u);
    EXPECT_EQ(l.b.size(), 44u + 4);
    EXPECT_EQ(std::vector<uint8_t>(l.b.begin() + 44, l.b.end()),
              (std::vector<uint8_t>{10, 21, 21, 10}));
    // MADT: IOAPIC id defaults past the 4 APIC ids.
    auto me = subtables(t.by_sig["APIC"], 44);
    EXPECT_EQ(me[4].body[2], 4);
}

TEST(AcpiTables, SlitDefaultsTo10Local20Remote) {
    auto g = make(2 * kGiB, two_nodes());
    Tables all = walk(g.mem, g.rsdp);
    const Table& l = all.by_sig["SLIT"];
    EXPECT_EQ(std::vector<uint8_t>(l.b.begin() + 44, l.b.end()),
              (std::vector<uint8_t>{10, 20, 20, 10}));
}

kv::Status write_with(AcpiConfig cfg) {
    auto mem = GuestMemory::create(64 * kMiB);
    EXPECT_TRUE(mem.ok());
    auto r = write_acpi_tables(*mem, cfg);
    if (!r.ok()) return r.error();
    return {};
}

TEST(AcpiTables, RejectsInconsistentConfig) {
    auto cfg = two_nodes();
    cfg.ioapic_id = 2;
    EXPECT_EQ(write_with(cfg).error().message, "acpi: IOAPIC id 2 clashes with an APIC id");

    cfg = two_nodes();
    cfg.cpus[1].apic_id = 0;
    EXPECT_EQ(write_with(cfg).error().message, "acpi: APIC id 0 used twice");

    cfg = two_nodes();
    cfg.cpus[3].node = 5;
    EXPECT_EQ(write_with(cfg).error().message,
              "acpi: CPU with APIC id 3 is on NUMA node 5, which is not defined");

    cfg = two_nodes();
    cfg.distances = {{10, 10}, {20, 10}};
    EXPECT_EQ(write_with(cfg).error().message,
              "acpi: SLIT distance 0->1 = 10 (10 to itself, 11-254 to another node)");

    cfg = two_nodes();
    cfg.cpus.clear();
    EXPECT_EQ(write_with(cfg).error().message, "acpi: no CPUs");

    cfg = two_nodes();
    cfg.cpus[0].apic_id = 255;
    EXPECT_EQ(write_with(cfg).error().message, "acpi: APIC id 255 is the xAPIC broadcast id");
}

TEST(AcpiTables, ManyCpusStillFitAndChecksum) {
    auto mem = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(mem.ok());
    auto cfg = AcpiConfig::single_node(*mem, 254);
    auto rsdp = write_acpi_tables(*mem, cfg);
    ASSERT_TRUE(rsdp.ok()) << rsdp.error().message;
    Tables t = walk(*mem, *rsdp);
    for (auto& [sig, tab] : t.by_sig)
        if (sig != "FACS") {
            EXPECT_EQ(sum(tab.b, tab.b.size()), 0) << sig;
        }
    EXPECT_EQ(subtables(t.by_sig["APIC"], 44).size(), 254u + 4);
    EXPECT_EQ(subtables(t.by_sig["APIC"], 44)[254].body[2], 254);  // IOAPIC id
}

}  // namespace
