#include "vmm/snapshot/snapshot.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "interconnect/auth.h"

namespace kv::snapshot {
namespace {

using Json = nlohmann::json;

Status write_all(int fd, std::span<const uint8_t> bytes, const std::string& what) {
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(what);
        done += size_t(n);
    }
    return {};
}

// Writes `path` whole (a new file), fsync'd and closed with every error checked.
Status write_file(const std::string& path, std::span<const uint8_t> bytes) {
    auto fd = Fd::check(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600),
                        path.c_str());
    if (!fd) return fd.error();
    KV_TRY(write_all(fd->get(), bytes, path));
    if (::fsync(fd->get()) != 0) return Error::from_errno(path + ": fsync");
    if (::close(fd->release()) != 0) return Error::from_errno(path + ": close");
    return {};
}

Status fsync_dir(const std::string& dir) {
    auto fd = Fd::check(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), dir.c_str());
    if (!fd) return fd.error();
    if (::fsync(fd->get()) != 0) return Error::from_errno(dir + ": fsync");
    return {};
}

// A whole file, refused beyond `limit` bytes.
Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t limit) {
    auto fd = Fd::check(::open(path.c_str(), O_RDONLY | O_CLOEXEC), path.c_str());
    if (!fd) return fd.error();
    std::vector<uint8_t> out;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(path);
        if (n == 0) break;
        if (out.size() + size_t(n) > limit)
            return Error{path + ": larger than " + std::to_string(limit) + " bytes"};
        out.insert(out.end(), buf, buf + n);
    }
    return out;
}

std::string now_utc() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

std::string without_trailing_slashes(std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
}

}  // namespace

Result<Writer> Writer::begin(const std::string& dir_in) {
    const std::string dir = without_trailing_slashes(dir_in);
    if (dir.empty()) return Error{"snapshot: an empty directory name"};
    std::filesystem::path p(dir);
    std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
    struct stat st {};
    if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Error{"snapshot: " + parent + " is not a directory"};
    if (::lstat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return Error{"snapshot: " + dir + " exists and is not a directory (not replaced)"};
        std::error_code ec;
        const bool empty = std::filesystem::is_empty(dir, ec);
        struct stat ms {};
        if (!empty && ::stat((dir + "/" + kManifestName).c_str(), &ms) != 0)
            return Error{"snapshot: " + dir + " exists and is not a snapshot (no " + kManifestName +
                         "): not replaced"};
    }
    std::string tmpl = parent + "/." + p.filename().string() + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) return Error::from_errno("snapshot: " + tmpl);
    return Writer(dir, std::string(buf.data()));
}

Writer::Writer(Writer&& o) noexcept
    : dir_(std::move(o.dir_)),
      tmp_(std::move(o.tmp_)),
      parts_(std::move(o.parts_)),
      done_(o.done_) {
    o.done_ = true;
    o.tmp_.clear();
}

Writer::~Writer() {
    if (done_ || tmp_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
}

Result<PartInfo> write_part(const std::string& dir, const std::string& name,
                            std::span<const uint8_t> bytes) {
    if (!valid_part_name(name)) return Error{"snapshot: \"" + name + "\" is not a part name"};
    auto digest = sha256(bytes);
    if (!digest) return digest.error();
    if (auto st = write_file(dir + "/" + name, bytes); !st)
        return Error{"snapshot: part " + name + ": " + st.error().message};
    return PartInfo{name, bytes.size(), to_hex(*digest)};
}

Status Writer::add_part(const std::string& name, std::span<const uint8_t> bytes) {
    if (done_) return Error{"snapshot: already committed"};
    for (const auto& p : parts_)
        if (p.name == name) return Error{"snapshot: part " + name + " written twice"};
    auto part = write_part(tmp_, name, bytes);
    if (!part) return part.error();
    parts_.push_back(std::move(part).value());
    return {};
}

Status Writer::adopt_part(const PartInfo& part) {
    if (done_) return Error{"snapshot: already committed"};
    if (!valid_part_name(part.name))
        return Error{"snapshot: \"" + part.name + "\" is not a part name"};
    for (const auto& p : parts_)
        if (p.name == part.name) return Error{"snapshot: part " + part.name + " written twice"};
    bool hex = part.sha256.size() == 64;
    for (char c : part.sha256) hex &= (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!hex) return Error{"snapshot: part " + part.name + ": not a SHA-256: " + part.sha256};
    struct stat st {};
    if (::stat((tmp_ + "/" + part.name).c_str(), &st) != 0)
        return Error::from_errno("snapshot: part " + part.name);
    if (uint64_t(st.st_size) != part.bytes)
        return Error{"snapshot: part " + part.name + " holds " + std::to_string(st.st_size) +
                     " bytes, its writer said " + std::to_string(part.bytes)};
    parts_.push_back(part);
    return {};
}

Status Writer::commit(Manifest m) {
    if (done_) return Error{"snapshot: already committed"};
    m.parts = parts_;
    if (m.created.empty()) m.created = now_utc();
    const std::string text = m.to_json();
    const std::string manifest = tmp_ + "/" + kManifestName;
    if (auto st =
            write_file(manifest, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
        !st)
        return Error{"snapshot: " + st.error().message};
    KV_TRY(fsync_dir(tmp_));
    struct stat st {};
    if (::lstat(dir_.c_str(), &st) == 0) {
        // The new snapshot and the old one change places in one step; then the old goes.
        if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) != 0)
            return Error::from_errno("snapshot: replacing " + dir_);
        done_ = true;
        std::error_code ec;
        std::filesystem::remove_all(tmp_, ec);
    } else {
        if (::rename(tmp_.c_str(), dir_.c_str()) != 0)
            return Error::from_errno("snapshot: " + tmp_ + " -> " + dir_);
        done_ = true;
    }
    std::filesystem::path p(dir_);
    return fsync_dir(p.has_parent_path() ? p.parent_path().string() : ".");
}

Result<Reader> Reader::open(const std::string& dir_in) {
    const std::string dir = without_trailing_slashes(dir_in);
    const std::string path = dir + "/" + kManifestName;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Error{"snapshot " + dir + ": not a directory"};
    if (::stat(path.c_str(), &st) != 0)
        return Error{"snapshot " + dir + ": no " + kManifestName +
                     " (not a snapshot, or one whose save did not finish)"};
    auto text = read_file(path, kMaxManifestBytes);
    if (!text) return Error{"snapshot " + dir + ": " + text.error().message};
    auto m = Manifest::from_json(
        std::string_view(reinterpret_cast<const char*>(text->data()), text->size()));
    if (!m) return Error{"snapshot " + dir + ": " + kManifestName + ": " + m.error().message};
    for (const auto& p : m->parts) {
        struct stat ps {};
        if (::stat((dir + "/" + p.name).c_str(), &ps) != 0)
            return Error{"snapshot " + dir + ": part " + p.name + ": missing"};
        if (uint64_t(ps.st_size) != p.bytes)
            return Error{"snapshot " + dir + ": part " + p.name + ": " +
                         std::to_string(ps.st_size) + " bytes, the manifest says " +
                         std::to_string(p.bytes) +
                         (uint64_t(ps.st_size) < p.bytes ? " (truncated)" : "")};
    }
    auto sha = sha256(*text);
    if (!sha) return Error{"snapshot " + dir + ": " + sha.error().message};
    return Reader(dir, std::move(m).value(), to_hex(*sha));
}

Result<std::vector<uint8_t>> Reader::read_part(const std::string& name) const {
    const PartInfo* p = m_.part(name);
    if (!p) return Error{"snapshot " + dir_ + ": no part " + name};
    auto bytes = read_file(dir_ + "/" + name, p->bytes);
    if (!bytes) return Error{"snapshot " + dir_ + ": part " + name + ": " + bytes.error().message};
    if (bytes->size() != p->bytes)
        return Error{"snapshot " + dir_ + ": part " + name + ": " + std::to_string(bytes->size()) +
                     " bytes, the manifest says " + std::to_string(p->bytes) + " (truncated)"};
    auto digest = sha256(*bytes);
    if (!digest) return digest.error();
    if (to_hex(*digest) != p->sha256)
        return Error{"snapshot " + dir_ + ": part " + name +
                     ": checksum mismatch (the file is damaged or was changed)"};
    return bytes;
}

Status Reader::verify() const {
    for (const auto& p : m_.parts) KV_TRY(read_part(p.name));
    return {};
}

}  // namespace kv::snapshot
