// The snapshot format (vmm/snapshot/snapshot.h): a round trip; every kind of damage to a
// part or the manifest refused, naming the part and the check; an atomic commit that
// replaces an older snapshot, leaves it intact when the save fails (a full disk, here a
// file size limit) or is given up, and never replaces what is not a snapshot.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vmm/snapshot/snapshot.h"

namespace kv::snapshot {
namespace {

namespace fs = std::filesystem;

class SnapshotFormat : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kv-snapshot-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        dir_ = root_ + "/snap";
    }
    void TearDown() override { fs::remove_all(root_); }

    static Manifest manifest() {
        Manifest m;
        m.config_digest = std::string(64, 'a');
        m.nodes = 2;
        m.vcpus = 3;
        m.memory_bytes = 128ull << 20;
        return m;
    }
    // A snapshot with parts vcpu-0 ("zero..."), vcpu-1 and memory-node-0 at `dir`.
    void write_snapshot(const std::string& dir, const std::string& tag) {
        auto w = Writer::begin(dir);
        ASSERT_TRUE(w.ok()) << w.error().message;
        ASSERT_TRUE(w->add_part("vcpu-0", bytes("zero " + tag)).ok());
        ASSERT_TRUE(w->add_part("vcpu-1", bytes("one " + tag)).ok());
        ASSERT_TRUE(w->add_part("memory-node-0", std::vector<uint8_t>(10000, 7)).ok());
        auto st = w->commit(manifest());
        ASSERT_TRUE(st.ok()) << st.error().message;
    }
    static std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
    // A part's bytes (empty, and a failure, if it cannot be read).
    std::vector<uint8_t> part(const std::string& name) {
        auto r = Reader::open(dir_);
        if (!r.ok()) {
            ADD_FAILURE() << r.error().message;
            return {};
        }
        auto b = r->read_part(name);
        if (!b.ok()) {
            ADD_FAILURE() << b.error().message;
            return {};
        }
        return std::move(b).value();
    }
    std::string error_opening() {
        auto r = Reader::open(dir_);
        return r.ok() ? "" : r.error().message;
    }
    std::string error_reading(const std::string& part) {
        auto r = Reader::open(dir_);
        if (!r.ok()) return "open: " + r.error().message;
        auto b = r->read_part(part);
        return b.ok() ? "" : b.error().message;
    }
    void rewrite_manifest(const std::string& from, const std::string& to) {
        const std::string path = dir_ + "/manifest.json";
        std::ifstream in(path);
        std::string text((std::istreambuf_iterator<char>(in)), {});
        auto at = text.find(from);
        ASSERT_NE(at, std::string::npos) << from;
        text.replace(at, from.size(), to);
        std::ofstream(path, std::ios::trunc) << text;
    }
    // Nothing left behind but the snapshot itself.
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(root_)) out.push_back(e.path().filename());
        return out;
    }

    std::string root_, dir_;
};

TEST_F(SnapshotFormat, RoundTrip) {
    write_snapshot(dir_, "a");
    auto r = Reader::open(dir_);
    ASSERT_TRUE(r.ok()) << r.error().message;
    const Manifest& m = r->manifest();
    EXPECT_EQ(m.format_version, kFormatVersion);
    EXPECT_EQ(m.nodes, 2u);
    EXPECT_EQ(m.vcpus, 3u);
    EXPECT_EQ(m.memory_bytes, 128ull << 20);
    EXPECT_FALSE(m.created.empty());
    ASSERT_EQ(m.parts.size(), 3u);
    EXPECT_EQ(m.parts[2].name, "memory-node-0");
    EXPECT_EQ(m.parts[2].bytes, 10000u);
    auto one = r->read_part("vcpu-1");
    ASSERT_TRUE(one.ok()) << one.error().message;
    EXPECT_EQ(*one, bytes("one a"));
    EXPECT_TRUE(r->verify().ok());
    EXPECT_EQ(r->manifest_sha256().size(), 64u);  // the snapshot's identity
    EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
    // The manifest's text form reads back the same.
    auto again = Manifest::from_json(m.to_json());
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_EQ(again->to_json(), m.to_json());
}

// A part another node wrote into the temporary directory (write_part) is adopted with
// the size and SHA-256 it reported, and reads back checked; a size that differs from the
// file's, a digest that is not one, a part adopted twice and a missing file are refused.
TEST_F(SnapshotFormat, PartsWrittenByAnotherNodeAreAdoptedAndChecked) {
    auto w = Writer::begin(dir_);
    ASSERT_TRUE(w.ok()) << w.error().message;
    const std::vector<uint8_t> node1(5000, 9);
    auto written = write_part(w->temp_dir(), "memory-node-1", node1);
    ASSERT_TRUE(written.ok()) << written.error().message;
    EXPECT_EQ(written->bytes, 5000u);
    PartInfo wrong_size = *written;
    wrong_size.bytes = 4999;
    auto st = w->adopt_part(wrong_size);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("holds 5000 bytes, its writer said 4999"), std::string::npos)
        << st.error().message;
    PartInfo not_sha = *written;
    not_sha.sha256 = "xyz";
    EXPECT_FALSE(w->adopt_part(not_sha).ok());
    EXPECT_FALSE(w->adopt_part(PartInfo{"memory-node-2", 1, std::string(64, '0')}).ok());
    ASSERT_TRUE(w->adopt_part(*written).ok());
    EXPECT_FALSE(w->adopt_part(*written).ok());  // twice
    ASSERT_TRUE(w->add_part("vcpu-0", bytes("zero")).ok());
    ASSERT_TRUE(w->commit(manifest()).ok());
    EXPECT_EQ(part("memory-node-1"), node1);
    // A writer that lied about the digest: the restore's read refuses the part.
    auto w2 = Writer::begin(dir_);
    ASSERT_TRUE(w2.ok());
    auto p2 = write_part(w2->temp_dir(), "memory-node-1", node1);
    ASSERT_TRUE(p2.ok());
    p2->sha256 = std::string(64, 'f');
    ASSERT_TRUE(w2->adopt_part(*p2).ok());
    ASSERT_TRUE(w2->commit(manifest()).ok());
    EXPECT_NE(error_reading("memory-node-1").find("checksum mismatch"), std::string::npos)
        << error_reading("memory-node-1");
}

TEST_F(SnapshotFormat, DamagedPartsAreRefusedNamingThePart) {
    write_snapshot(dir_, "a");
    fs::resize_file(dir_ + "/memory-node-0", 9999);
    EXPECT_EQ(error_opening(), "snapshot " + dir_ +
                                   ": part memory-node-0: 9999 bytes, the manifest says 10000 "
                                   "(truncated)");
    fs::resize_file(dir_ + "/memory-node-0", 10000);  // the last byte is now 0, not 7
    EXPECT_EQ(error_reading("memory-node-0"),
              "snapshot " + dir_ +
                  ": part memory-node-0: checksum mismatch (the file is damaged or was changed)");
    EXPECT_FALSE(Reader::open(dir_)->verify().ok());
    EXPECT_EQ(error_reading("vcpu-0"), "") << "the other parts read as before";
    fs::remove(dir_ + "/vcpu-1");
    EXPECT_EQ(error_opening(), "snapshot " + dir_ + ": part vcpu-1: missing");
    EXPECT_EQ(error_reading("devices"), "open: snapshot " + dir_ + ": part vcpu-1: missing");
}

TEST_F(SnapshotFormat, DamagedManifestsAreRefusedNamingTheCheck) {
    struct Case {
        std::string from, to, error;
    };
    const std::vector<Case> cases = {
        {"\"format_version\": 1", "\"format_version\": 2",
         "format version 2 is newer than this build's 1 (made by a newer Kerrvisor)"},
        {"\"format_version\": 1", "\"format_version\": 0", "format version 0 is unknown"},
        {"kerrvisor-snapshot", "qemu-savevm",
         "not a Kerrvisor snapshot (no \"magic\": \"kerrvisor-snapshot\")"},
        {"\"nodes\": 2", "\"nodes\": 0", "nodes: missing or not a whole number from 1 to 255"},
        {"\"vcpus\": 3", "\"vcpus\": -3", "vcpus: missing or not a whole number from 1 to 255"},
        {"\"memory_bytes\": 134217728", "\"memory_bytes\": 134217729",
         "memory_bytes: not a whole number of 4 KiB pages"},
        {std::string(64, 'a'), "abc", "config_digest: missing or not 64 hex digits"},
        {"\"name\": \"vcpu-1\"", "\"name\": \"../etc/passwd\"",
         "parts[1]: name is not a part name ([a-z0-9._-], not hidden)"},
        {"\"name\": \"vcpu-1\"", "\"name\": \"vcpu-0\"", "part vcpu-0: listed twice"},
        {"\"nodes\": 2", "\"nodes\": 2, \"extra\": 1", "unknown field \"extra\""},
        {"{", "[", "not JSON (a damaged manifest)"},
        {"\"nodes\": 2", "\"nodes\": 2, \"parent\": \"../base\"",
         "parent_manifest_sha256: missing or not 64 hex digits (an incremental snapshot names "
         "its parent's manifest)"},
        {"\"nodes\": 2",
         "\"nodes\": 2, \"parent_manifest_sha256\": \"" + std::string(64, 'c') + "\"",
         "parent_manifest_sha256: given without a parent"},
    };
    for (const auto& c : cases) {
        fs::remove_all(dir_);
        write_snapshot(dir_, "a");
        rewrite_manifest(c.from, c.to);
        EXPECT_EQ(error_opening(), "snapshot " + dir_ + ": manifest.json: " + c.error) << c.to;
    }
    fs::remove(dir_ + "/manifest.json");
    EXPECT_EQ(error_opening(),
              "snapshot " + dir_ +
                  ": no manifest.json (not a snapshot, or one whose save did not finish)");
}

TEST_F(SnapshotFormat, EveryTruncationOfTheManifestIsRefused) {
    write_snapshot(dir_, "a");
    const std::string text = Reader::open(dir_)->manifest().to_json();
    // The text ends in "}\n": every prefix shorter than the closing brace is refused.
    const size_t whole = text.rfind('}') + 1;
    for (size_t n = 0; n < whole; ++n)
        EXPECT_FALSE(Manifest::from_json(text.substr(0, n)).ok()) << n << " bytes";
    EXPECT_TRUE(Manifest::from_json(text.substr(0, whole)).ok());
}

TEST_F(SnapshotFormat, ACommitReplacesTheOldSnapshotInOneStep) {
    write_snapshot(dir_, "a");
    write_snapshot(dir_, "b");
    auto r = Reader::open(dir_);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(part("vcpu-0"), bytes("zero b"));
    EXPECT_EQ(entries(), std::vector<std::string>{"snap"}) << "the old copy is gone";
}

TEST_F(SnapshotFormat, AGivenUpSaveLeavesThePreviousSnapshot) {
    write_snapshot(dir_, "a");
    {
        auto w = Writer::begin(dir_);
        ASSERT_TRUE(w.ok());
        ASSERT_TRUE(w->add_part("vcpu-0", bytes("zero b")).ok());
        EXPECT_TRUE(fs::exists(w->temp_dir()));
    }  // no commit
    EXPECT_EQ(error_reading("vcpu-0"), "");
    EXPECT_EQ(part("vcpu-0"), bytes("zero a"));
    EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
}

TEST_F(SnapshotFormat, AFullDiskFailsTheSaveAndLeavesThePreviousSnapshot) {
    write_snapshot(dir_, "a");
    // A child with a 64 KiB file size limit (SIGXFSZ ignored: write fails with EFBIG, as a
    // full disk fails it with ENOSPC) tries to save a larger part over the snapshot.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit lim{65536, 65536};
        ::setrlimit(RLIMIT_FSIZE, &lim);
        int code = 0;
        {
            auto w = Writer::begin(dir_);
            if (!w.ok()) ::_exit(10);
            auto st = w->add_part("memory-node-0", std::vector<uint8_t>(1 << 20, 1));
            if (st.ok())
                code = 11;  // it should fail
            else if (st.error().message.find("memory-node-0") == std::string::npos)
                code = 12;
            else if (st.error().message.find("File too large") == std::string::npos)
                code = 13;
        }  // the Writer removes its temporary directory
        ::_exit(code);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: begin failed, 11: the write did not fail, 12/13: "
                                         "the error does not name the part / the cause";
    auto r = Reader::open(dir_);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(r->verify().ok());
    EXPECT_EQ(part("vcpu-0"), bytes("zero a"));
    EXPECT_EQ(entries(), std::vector<std::string>{"snap"});
}

TEST_F(SnapshotFormat, WhatIsNotASnapshotIsNotReplaced) {
    fs::create_directory(dir_);
    std::ofstream(dir_ + "/thesis.tex") << "years of work";
    auto w = Writer::begin(dir_);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(
        w.error().message,
        "snapshot: " + dir_ + " exists and is not a snapshot (no manifest.json): not replaced");
    std::ofstream(root_ + "/file") << "x";
    auto f = Writer::begin(root_ + "/file");
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().message,
              "snapshot: " + root_ + "/file exists and is not a directory (not replaced)");
    auto p = Writer::begin(root_ + "/no/such/parent/snap");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().message, "snapshot: " + root_ + "/no/such/parent is not a directory");
    // An empty directory (made for it) is fine.
    fs::create_directory(root_ + "/empty");
    write_snapshot(root_ + "/empty", "a");
    EXPECT_TRUE(Reader::open(root_ + "/empty").ok());
}

TEST_F(SnapshotFormat, PartNamesAreCheckedWhenWritten) {
    auto w = Writer::begin(dir_);
    ASSERT_TRUE(w.ok());
    for (const char* bad : {"", ".hidden", "a/b", "..", "UPPER", "manifest.json"})
        EXPECT_FALSE(w->add_part(bad, bytes("x")).ok()) << bad;
    EXPECT_TRUE(w->add_part("vcpu-0", bytes("x")).ok());
    auto twice = w->add_part("vcpu-0", bytes("y"));
    ASSERT_FALSE(twice.ok());
    EXPECT_EQ(twice.error().message, "snapshot: part vcpu-0 written twice");
}

}  // namespace
}  // namespace kv::snapshot
