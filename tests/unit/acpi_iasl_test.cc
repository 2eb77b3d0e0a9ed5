// Every generated table goes through ACPICA's own tools: `iasl -d` disassembles it (which
// parses the AML and checks lengths and checksums), then `iasl` recompiles the
// disassembly, which runs the compiler's semantic checks (reserved names, resource
// descriptors, table fields). Both must report no error and no warning.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "memory/guest_memory.h"
#include "vmm/boot/acpi.h"

namespace {

using kv::Gpa;
using kv::GuestMemory;
using namespace kv::boot;
namespace fs = std::filesystem;

struct CmdResult {
    int status = -1;
    std::string output;
};

CmdResult run(const std::string& cmd) {
    CmdResult r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    r.status = ::pclose(p);
    return r;
}

std::vector<uint8_t> read(const GuestMemory& mem, uint64_t gpa, size_t len) {
    std::vector<uint8_t> b(len);
    EXPECT_TRUE(mem.read(Gpa(gpa), b).ok());
    return b;
}
uint64_t u64(const std::vector<uint8_t>& b, size_t o) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | b[o + i];
    return v;
}
uint32_t u32(const std::vector<uint8_t>& b, size_t o) {
    return static_cast<uint32_t>(u64(b, o));
}

std::vector<uint8_t> table_at(const GuestMemory& mem, uint64_t gpa) {
    return read(mem, gpa, u32(read(mem, gpa, 8), 4));
}

class AcpiIasl : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kv-iasl-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }

    // Writes every table of a guest with `cfg` to DIR/<sig>.dat.
    std::vector<std::string> dump(const AcpiConfig& cfg, const GuestMemory& mem) {
        auto rsdp = write_acpi_tables(mem, cfg);
        EXPECT_TRUE(rsdp.ok()) << rsdp.error().message;
        std::vector<std::pair<std::string, std::vector<uint8_t>>> tables;
        // The RSDP itself is left out: iasl 20200925 cannot load one from a binary file
        // (it reads "PTR " as the length). acpi_tables_test checks both its checksums.
        auto r = read(mem, rsdp->value, 36);
        auto xsdt = table_at(mem, u64(r, 24));
        tables.push_back({"xsdt", xsdt});
        for (size_t o = 36; o < xsdt.size(); o += 8) {
            auto t = table_at(mem, u64(xsdt, o));
            std::string sig(t.begin(), t.begin() + 4);
            if (sig == "FACP") {
                tables.push_back({"facs", read(mem, u64(t, 132), 64)});
                tables.push_back({"dsdt", table_at(mem, u64(t, 140))});
            }
            for (auto& c : sig) c = static_cast<char>(std::tolower(c));
            tables.push_back({sig, t});
        }
        std::vector<std::string> names;
        for (auto& [name, bytes] : tables) {
            std::ofstream(dir_ / (name + ".dat"), std::ios::binary)
                .write(reinterpret_cast<const char*>(bytes.data()),
                       static_cast<std::streamsize>(bytes.size()));
            names.push_back(name);
        }
        return names;
    }

    // Disassembles and recompiles DIR/<name>.dat; returns "" or what went wrong.
    std::string check(const std::string& name) {
        std::string dat = (dir_ / (name + ".dat")).string();
        std::string dsl = (dir_ / (name + ".dsl")).string();
        CmdResult d = run("cd " + dir_.string() + " && iasl -d " + dat);
        if (d.status != 0 || d.output.find("rror") != std::string::npos || !fs::exists(dsl))
            return "iasl -d " + name + " failed:\n" + d.output;
        // The disassembler records problems it found (bad checksum, bad length) as
        // comments in the .dsl.
        std::ifstream in(dsl);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        for (const char* bad : {"Incorrect checksum", "Invalid", "**** Unknown", "rror"})
            if (text.find(bad) != std::string::npos)
                return name + ".dsl mentions \"" + bad + "\":\n" + text;
        CmdResult c = run("cd " + dir_.string() + " && iasl -p " + name + "-re " + dsl);
        if (c.status != 0 || c.output.find(" 0 Errors, 0 Warnings") == std::string::npos)
            return "recompiling " + name + ".dsl: \n" + c.output + "\n" + text;
        return "";
    }

    fs::path dir_;
};

TEST_F(AcpiIasl, IaslIsInstalled) {
    // scripts/lib/deps.sh installs acpica-tools; without it the checks below cannot run.
    CmdResult r = run("iasl -v");
    EXPECT_EQ(r.status, 0) << r.output;
}

TEST_F(AcpiIasl, SingleNodeTablesDisassembleAndRecompileCleanly) {
    auto mem = GuestMemory::create(512ull << 20);
    ASSERT_TRUE(mem.ok());
    auto names = dump(AcpiConfig::single_node(*mem, 4), *mem);
    EXPECT_EQ(names.size(), 7u);  // xsdt facs dsdt facp apic srat slit
    for (const auto& n : names) EXPECT_EQ(check(n), "") << n;
}

TEST_F(AcpiIasl, TwoNodeTablesDisassembleAndRecompileCleanly) {
    auto mem = GuestMemory::create(2ull << 30);
    ASSERT_TRUE(mem.ok());
    AcpiConfig cfg;
    cfg.cpus = {{0, 0}, {1, 1}};
    cfg.nodes = {{0, {{0, 1ull << 30}}}, {1, {{1ull << 30, 1ull << 30}}}};
    cfg.distances = {{10, 30}, {30, 10}};
    for (const auto& n : dump(cfg, *mem))
        if (n == "srat" || n == "slit" || n == "apic") {
            EXPECT_EQ(check(n), "") << n;
        }
}

TEST_F(AcpiIasl, DsdtWithPciRootBridgeDisassemblesAndRecompilesCleanly) {
    auto mem = GuestMemory::create(1ull << 30);
    ASSERT_TRUE(mem.ok());
    auto cfg = AcpiConfig::single_node(*mem, 2);
    cfg.pci_root_bridge = true;
    dump(cfg, *mem);
    EXPECT_EQ(check("dsdt"), "");
    std::ifstream in(dir_ / "dsdt.dsl");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("EisaId (\"PNP0A03\")"), std::string::npos) << text;
    EXPECT_NE(text.find("0xFEBFFFFF"), std::string::npos) << text;
    if (::getenv("KV_SHOW_DSDT")) std::fputs(text.c_str(), stderr);
}

TEST_F(AcpiIasl, HpetTableDisassemblesAndRecompilesCleanly) {
    auto mem = GuestMemory::create(256ull << 20);
    ASSERT_TRUE(mem.ok());
    auto cfg = AcpiConfig::single_node(*mem, 1);
    cfg.hpet = AcpiHpet{0xFED00000, 0x4B562201};
    auto names = dump(cfg, *mem);
    ASSERT_NE(std::find(names.begin(), names.end(), "hpet"), names.end());
    EXPECT_EQ(check("hpet"), "");
    std::ifstream in(dir_ / "hpet.dsl");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("00000000FED00000"), std::string::npos) << text;
}

TEST_F(AcpiIasl, CheckerCatchesABadTable) {
    // The check above is only worth something if it fails on a broken table: corrupt the
    // DSDT checksum byte.
    auto mem = GuestMemory::create(64ull << 20);
    ASSERT_TRUE(mem.ok());
    dump(AcpiConfig::single_node(*mem, 1), *mem);
    std::fstream f(dir_ / "dsdt.dat", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(9);
    f.put(0x55);  // checksum
    f.close();
    EXPECT_NE(check("dsdt"), "");
}

}  // namespace
