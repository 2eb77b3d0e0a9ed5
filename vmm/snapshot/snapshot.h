// A snapshot on disk (docs/snapshots.md): a directory holding a manifest and parts. The
// manifest (manifest.json) names the format version, the guest's config digest and layout,
// and every part with its size and SHA-256; each part is one file (a vCPU's state, the
// devices', the pages a node owned). This is the format layer only: what goes into the
// parts is the machine's (issue 13).
//
// Writing is atomic: the parts and the manifest go into a temporary directory beside the
// target, each fsync'd, then the directory, then it replaces the target in one rename
// (RENAME_EXCHANGE when a snapshot is there already, whose old copy is then removed). A
// crash or a full disk before that leaves the previous snapshot as it was; a Writer given
// up without commit() removes its temporary directory.
//
// Reading verifies: the manifest must be this format (magic), of a version this build
// reads, with every field in range; a part is read only whole, and its size and checksum
// must match. Every refusal names the part and the check that failed.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kv::snapshot {

inline constexpr const char* kMagic = "kerrvisor-snapshot";
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr const char* kManifestName = "manifest.json";
inline constexpr size_t kMaxManifestBytes = 1 << 20;

struct PartInfo {
    std::string name;    // a file name: [a-z0-9._-], not starting with '.', at most 64
    uint64_t bytes = 0;  // its size
    std::string sha256;  // lower-case hex
};

struct Manifest {
    uint32_t format_version = kFormatVersion;
    std::string config_digest;  // hex SHA-256 of the guest's config (vmm/config/cluster.h)
    uint32_t nodes = 1;         // the node count it was taken on
    uint32_t vcpus = 1;
    uint64_t memory_bytes = 0;          // guest RAM
    std::string created;                // UTC, ISO 8601
    std::optional<std::string> parent;  // an incremental snapshot's parent directory
    // With parent: the SHA-256 of the parent's manifest.json, which binds the chain.
    std::optional<std::string> parent_manifest_sha256;
    std::vector<PartInfo> parts;  // in the order written

    const PartInfo* part(const std::string& name) const;
    std::string to_json() const;
    // Refuses anything but this format at a version this build reads, naming the field.
    static Result<Manifest> from_json(std::string_view text);
};

// Whether `name` may name a part (no path separators, no "..", no hidden files).
bool valid_part_name(std::string_view name);

class Writer {
  public:
    // A snapshot that will become `dir` on commit(); `dir`'s parent must exist.
    static Result<Writer> begin(const std::string& dir);
    Writer(Writer&&) noexcept;
    Writer& operator=(Writer&&) = delete;
    ~Writer();  // not committed: the temporary directory goes

    // One part, written whole and fsync'd; its size and SHA-256 go into the manifest.
    Status add_part(const std::string& name, std::span<const uint8_t> bytes);
    // A part another process wrote into temp_dir() with write_part() (another node of the
    // guest, on a file system both reach): its size is checked here; its SHA-256 is what
    // the writer says (a restore checks it).
    Status adopt_part(const PartInfo& part);
    // Writes `m` (its parts replaced by those added) and puts the snapshot in place.
    Status commit(Manifest m);
    const std::string& temp_dir() const { return tmp_; }

  private:
    Writer(std::string dir, std::string tmp) : dir_(std::move(dir)), tmp_(std::move(tmp)) {}
    std::string dir_, tmp_;
    std::vector<PartInfo> parts_;
    bool done_ = false;
};

// Writes `bytes` as part `name` of the snapshot being written in temporary directory
// `dir` (Writer::temp_dir()), fsync'd; what Writer::adopt_part() then records.
Result<PartInfo> write_part(const std::string& dir, const std::string& name,
                            std::span<const uint8_t> bytes);

class Reader {
  public:
    // Reads and checks the manifest; that every part is there with its size.
    static Result<Reader> open(const std::string& dir);
    const Manifest& manifest() const { return m_; }
    // The SHA-256 of manifest.json as read (lower-case hex): the snapshot's identity, which
    // an incremental child names.
    const std::string& manifest_sha256() const { return manifest_sha_; }
    const std::string& dir() const { return dir_; }
    // A part's bytes, checked against the manifest's size and SHA-256.
    Result<std::vector<uint8_t>> read_part(const std::string& name) const;
    // Every part read and checked.
    Status verify() const;

  private:
    Reader(std::string dir, Manifest m, std::string sha)
        : dir_(std::move(dir)), m_(std::move(m)), manifest_sha_(std::move(sha)) {}
    std::string dir_;
    Manifest m_;
    std::string manifest_sha_;
};

}  // namespace kv::snapshot
