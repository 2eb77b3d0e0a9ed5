// Machine: snapshots of the whole guest, saved (save_snapshot, from the control plane) and
// restored (--restore, instead of a boot). docs/snapshots.md.
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <filesystem>

#include "base/log.h"
#include "interconnect/auth.h"
#include "vmm/config/cluster.h"
#include "vmm/devices/device_state.h"
#include "vmm/machine.h"
#include "vmm/snapshot/memory_image.h"
#include "vmm/snapshot/snapshot.h"

namespace kv {

using control::Json;

namespace {

constexpr std::chrono::milliseconds kSnapshotPauseTimeout{10'000};
constexpr const char* kMachinePart = "machine.json";
constexpr uint32_t kMachineStateVersion = 1;

std::string vcpu_part(uint32_t v) {
    return "vcpu-" + std::to_string(v);
}
std::string memory_part(uint32_t node) {
    return "memory-node-" + std::to_string(node);
}

uint64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
    return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - since)
                        .count());
}

// An incremental snapshot's parent, named relative to the snapshot's own directory.
std::string parent_dir(const std::string& child, const std::string& parent) {
    return parent.starts_with("/") ? parent : child + "/" + parent;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Result<Machine::SnapshotSave> Machine::save_snapshot(const std::string& dir, bool stop,
                                                     const std::optional<std::string>& parent) {
    if (!io_node()) return Error{"snapshot-save: only the I/O node saves the guest"};
    if (multi_)
        return Error{
            "snapshot-save: a guest over several nodes cannot be saved yet (each node's "
            "pages are not gathered: issue 13); single-node guests only",
            ErrorCode::Refused};
    if (dir.empty()) return Error{"snapshot-save: empty directory name"};
    // Before the pause: the first call hashes the kernel and initrd.
    if (auto d = guest_digest(); !d) return Error{"snapshot-save: " + d.error().message};
    const auto t0 = std::chrono::steady_clock::now();
    const bool was_paused = paused();
    if (!was_paused)
        if (auto st = pause(kSnapshotPauseTimeout); !st)
            return Error{"snapshot-save: " + st.error().message, st.error().code};
    const auto paused_at = std::chrono::steady_clock::now();
    SnapshotSave out;
    out.dir = dir;
    Status written = write_snapshot(dir, parent, out);
    if (written)
        if (auto st = reset_dirty(dir); !st) {
            // The snapshot stands; only snapshots incremental from it cannot be taken.
            dirty_base_.reset();
            KV_WARN(
                "snapshot-save: %s: the guest's writes since it cannot be logged (%s): no "
                "snapshot can be incremental from it",
                dir.c_str(), st.error().message.c_str());
        }
    out.pause_ns = was_paused ? 0 : elapsed_ns(paused_at);
    // The guest runs on unless it was paused before, or the save worked and the user asked
    // it to stay paused (a failed save with --stop leaves it as it was).
    out.paused = was_paused || (stop && written);
    if (!out.paused)
        if (auto st = resume(); !st)
            KV_WARN("snapshot-save: resume: %s", st.error().message.c_str());
    out.total_ns = elapsed_ns(t0);
    if (!written) {
        emit_event("SNAPSHOT_FAILED", {{"dir", dir}, {"error", written.error().message}});
        return Error{"snapshot-save: " + written.error().message};
    }
    emit_event("SNAPSHOT_DONE", {{"dir", dir},
                                 {"bytes", out.bytes},
                                 {"pages", out.pages},
                                 {"pause_ns", out.pause_ns},
                                 {"total_ns", out.total_ns}});
    return out;
}

Status Machine::write_snapshot(const std::string& dir, const std::optional<std::string>& parent,
                               SnapshotSave& out) {
    namespace fs = std::filesystem;
    auto digest = guest_digest();
    if (!digest) return digest.error();
    std::optional<std::string> parent_sha, parent_rel;
    if (parent) {
        auto p = snapshot::Reader::open(*parent);
        if (!p) return Error{"incremental-from: " + p.error().message};
        if (!dirty_base_ || p->manifest_sha256() != *dirty_base_)
            return Error{"incremental-from: " + *parent +
                         " is not the last snapshot this guest saved or was restored from "
                         "(the writes since it are not known)"};
        std::error_code ec;
        if (fs::equivalent(*parent, dir, ec))
            return Error{"incremental-from: " + *parent + " is the snapshot being written"};
        parent_sha = p->manifest_sha256();
        // Relative to the new snapshot's directory, so that the chain can move as a whole.
        parent_rel = fs::proximate(fs::absolute(*parent), fs::absolute(dir)).string();
        KV_TRY(collect_dirty());
    }
    auto w = snapshot::Writer::begin(dir);
    if (!w) return w.error();
    auto progress = [&](const char* phase) {
        emit_event("SNAPSHOT_PROGRESS", {{"dir", dir}, {"phase", phase}, {"bytes", out.bytes}});
    };
    auto add = [&](const std::string& name, std::span<const uint8_t> bytes) -> Status {
        KV_TRY(w->add_part(name, bytes));
        out.bytes += bytes.size();
        return {};
    };

    progress("vcpus");
    for (auto& v : vcpus_) {
        auto s = v->save_state(msr_indices_);
        if (!s) return Error{"vCPU " + std::to_string(v->index()) + ": " + s.error().message};
        KV_TRY(add(vcpu_part(v->index()), s->encode()));
    }

    progress("devices");
    // The guest TSC where the guest stopped: the host TSC at the pause through vCPU 0's
    // KVM offset (every vCPU of a single-node guest has the same).
    auto off = vcpus_.at(0)->fd().get_tsc_offset();
    if (!off) return Error{"vCPU 0: " + off.error().message};
    uint64_t paused_at_tsc = 0;
    {
        std::lock_guard g(pause_mu_);
        if (!paused_at_tsc_) return Error{"the guest is not paused"};
        paused_at_tsc = *paused_at_tsc_;
    }
    Json devices = Json::object();
    for (auto& [name, dev] : devices_) {
        StateSaver s;
        dev->save_state(s);
        devices[name] = s.take();
    }
    const Json machine{{"version", kMachineStateVersion},
                       {"guest_tsc", paused_at_tsc + *off},
                       {"device_clock_ns", device_clock_->now()},
                       {"devices", std::move(devices)}};
    KV_TRY(add(kMachinePart, bytes_of(machine.dump(1))));

    progress("memory");
    std::vector<snapshot::RamSpan> ram;
    const auto& regions = mem_->regions();
    for (size_t i = 0; i < regions.size(); ++i) {
        const auto& r = regions[i];
        const auto* base = static_cast<const uint8_t*>(r.mapping.data());
        if (!parent) {
            ram.push_back({r.base.value, {base, r.size}});
            continue;
        }
        // Incremental: the runs of pages written since the parent, zero or not.
        const uint64_t pages = r.size / snapshot::kImagePageSize;
        auto dirty = [&](uint64_t pg) { return dirty_[i][pg / 64] >> (pg % 64) & 1; };
        for (uint64_t pg = 0; pg < pages;) {
            if (!dirty(pg)) {
                ++pg;
                continue;
            }
            uint64_t end = pg;
            while (end < pages && dirty(end)) ++end;
            ram.push_back(
                {r.base.value + pg * snapshot::kImagePageSize,
                 {base + pg * snapshot::kImagePageSize, (end - pg) * snapshot::kImagePageSize}});
            pg = end;
        }
    }
    snapshot::MemoryImageInfo info;
    const std::vector<uint8_t> image =
        snapshot::encode_memory_image(ram, &info, /*keep_zero_pages=*/parent.has_value());
    KV_TRY(add(memory_part(0), image));
    out.pages = info.pages;
    out.zero_pages = info.zero_pages;

    progress("commit");
    snapshot::Manifest m;
    m.config_digest = *digest;
    m.nodes = topo_.num_nodes;
    m.vcpus = topo_.num_vcpus();
    m.memory_bytes = mem_->ram_size();
    m.parent = parent_rel;
    m.parent_manifest_sha256 = parent_sha;
    return w->commit(std::move(m));
}

Status Machine::collect_dirty() {
    if (!dirty_logging_) return {};
    const auto& regions = mem_->regions();
    std::vector<uint64_t> bits;
    for (size_t i = 0; i < regions.size(); ++i) {
        bits.assign(dirty_[i].size(), 0);
        KV_TRY(vm_.get_dirty_log(regions[i].slot, bits));
        for (size_t w = 0; w < bits.size(); ++w) dirty_[i][w] |= bits[w];
    }
    return {};
}

Status Machine::reset_dirty(const std::string& base_dir) {
    // The guest is paused (or has not run): nothing is written between the snapshot and
    // the start of the new log.
    auto r = snapshot::Reader::open(base_dir);
    if (!r) return r.error();
    const auto& regions = mem_->regions();
    if (!dirty_logging_) {
        dirty_.resize(regions.size());
        for (size_t i = 0; i < regions.size(); ++i) {
            const uint64_t pages = regions[i].size / snapshot::kImagePageSize;
            dirty_[i].assign((pages + 63) / 64, 0);
            KV_TRY(vm_.set_user_memory_region(regions[i].slot, regions[i].base.value,
                                              regions[i].size, regions[i].mapping.data(),
                                              KVM_MEM_LOG_DIRTY_PAGES));
        }
        dirty_logging_ = true;
    }
    KV_TRY(collect_dirty());  // what KVM logged before this point is the parent's
    for (auto& d : dirty_) std::fill(d.begin(), d.end(), 0);
    dirty_base_ = r->manifest_sha256();
    return {};
}

Result<std::string> Machine::guest_digest() {
    if (!guest_digest_) {
        auto d = config::guest_digest(cfg_);
        if (!d) return d.error();
        guest_digest_ = to_hex(*d);
    }
    return *guest_digest_;
}

snapshot::RamTarget Machine::ram_target() {
    return [this](uint64_t gpa, uint64_t bytes) -> Result<uint8_t*> {
        uint8_t* p = mem_->host_ptr(Gpa(gpa), bytes);
        if (!p) return Error{"not guest RAM"};
        return p;
    };
}

Status Machine::restore_memory(const std::string& dir, const std::optional<std::string>& want_sha,
                               unsigned depth) {
    constexpr unsigned kMaxChain = 64;
    if (depth > kMaxChain)
        return Error{"a chain of more than " + std::to_string(kMaxChain) +
                     " incremental snapshots (a loop?)"};
    auto reader = snapshot::Reader::open(dir);
    if (!reader) return Error{"parent: " + reader.error().message};
    const snapshot::Manifest& m = reader->manifest();
    if (!want_sha || reader->manifest_sha256() != *want_sha)
        return Error{"parent " + dir +
                     ": not the snapshot its child was taken from (its "
                     "manifest's SHA-256 differs)"};
    auto digest = guest_digest();
    if (!digest) return digest.error();
    if (m.config_digest != *digest || m.memory_bytes != mem_->ram_size())
        return Error{"parent " + dir + ": taken of another guest"};
    if (m.parent)
        KV_TRY(restore_memory(parent_dir(reader->dir(), *m.parent), m.parent_manifest_sha256,
                              depth + 1));
    auto image = reader->read_part(memory_part(0));
    if (!image) return Error{"parent " + dir + ": " + image.error().message};
    auto info = snapshot::decode_memory_image(*image, memory_part(0), ram_target());
    if (!info) return Error{"parent " + dir + ": " + info.error().message};
    return {};
}

Status Machine::restore_snapshot(const std::string& dir) {
    auto fail = [&](const std::string& why) { return Error{"restore: " + dir + ": " + why}; };
    const auto t0 = std::chrono::steady_clock::now();
    if (multi_) return fail("a guest over several nodes cannot be restored yet (issue 13)");
    auto reader = snapshot::Reader::open(dir);
    if (!reader) return fail(reader.error().message);
    const snapshot::Manifest& m = reader->manifest();
    auto digest = guest_digest();
    if (!digest) return digest.error();
    if (m.config_digest != *digest)
        return fail(
            "it was taken of another guest (its config digest differs: kernel, initrd, cmdline, "
            "time-dilation, vCPUs or memory)");
    if (m.vcpus != topo_.num_vcpus())
        return fail("it has " + std::to_string(m.vcpus) + " vCPUs, this guest " +
                    std::to_string(topo_.num_vcpus()));
    if (m.memory_bytes != mem_->ram_size())
        return fail("it has " + std::to_string(m.memory_bytes) + " bytes of RAM, this guest " +
                    std::to_string(mem_->ram_size()));
    // Every part is read whole and its size and checksum checked (read_part) before
    // anything is restored; each is read once.
    for (const auto& part : m.parts) {
        bool known = part.name == kMachinePart || part.name == memory_part(0);
        for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) known |= part.name == vcpu_part(v);
        if (!known) return fail("part " + part.name + ": not a part this build restores");
    }

    std::vector<CpuState> cpus;
    for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) {
        auto bytes = reader->read_part(vcpu_part(v));
        if (!bytes) return fail(bytes.error().message);
        auto s = CpuState::decode(*bytes);
        if (!s) return fail("part " + vcpu_part(v) + ": " + s.error().message);
        cpus.push_back(std::move(s).value());
    }

    auto image = reader->read_part(memory_part(0));
    if (!image) return fail(image.error().message);
    auto mbytes = reader->read_part(kMachinePart);
    if (!mbytes) return fail(mbytes.error().message);
    const Json j = Json::parse(mbytes->begin(), mbytes->end(), nullptr, false);
    const std::string mp = std::string("part ") + kMachinePart;
    if (j.is_discarded() || !j.is_object()) return fail(mp + ": not JSON");
    if (!j.contains("version") || !j["version"].is_number_unsigned())
        return fail(mp + ": version: missing or not a number");
    if (j["version"].get<uint64_t>() != kMachineStateVersion)
        return fail(mp + ": version " + j["version"].dump() + ", this build reads " +
                    std::to_string(kMachineStateVersion));
    RestoredClocks clocks;
    for (auto [key, field] : {std::pair{"guest_tsc", &clocks.guest_tsc},
                              std::pair{"device_clock_ns", &clocks.device_ns}}) {
        if (!j.contains(key) || !j[key].is_number_unsigned())
            return fail(mp + ": " + key + ": missing or not a number");
        *field = j[key].get<uint64_t>();
    }
    if (!j.contains("devices") || !j["devices"].is_object())
        return fail(mp + ": devices: missing or not an object");
    const Json& devs = j["devices"];
    for (auto it = devs.begin(); it != devs.end(); ++it) {
        bool known = false;
        for (auto& d : devices_) known |= d.first == it.key();
        if (!known) return fail(mp + ": devices." + it.key() + ": no such device");
    }
    for (auto& [name, dev] : devices_) {
        if (!devs.contains(name)) return fail(mp + ": devices." + name + ": missing");
        StateLoader l(devs[name], "devices." + name);
        if (auto st = dev->restore_state(l); !st) return fail(mp + ": " + st.error().message);
    }

    // Guest RAM: zero-filled again (the ACPI tables build() wrote, whatever the guest had
    // left there is in the images), then the chain's images, the oldest first.
    for (const auto& r : mem_->regions())
        if (::madvise(r.mapping.data(), r.size, MADV_DONTNEED) != 0)
            return Error::from_errno("restore: madvise(MADV_DONTNEED) on guest RAM");
    if (m.parent)
        if (auto st =
                restore_memory(parent_dir(reader->dir(), *m.parent), m.parent_manifest_sha256, 1);
            !st)
            return fail(st.error().message);
    auto info = snapshot::decode_memory_image(*image, memory_part(0), ram_target());
    if (!info) return fail(info.error().message);

    for (uint32_t v = 0; v < topo_.num_vcpus(); ++v)
        if (auto st = vcpus_[v]->restore_state(cpus[v]); !st)
            return fail("vCPU " + std::to_string(v) + ": " + st.error().message);
    restored_ = clocks;
    // Later snapshots may be incremental from this one.
    if (auto st = reset_dirty(dir); !st) {
        dirty_base_.reset();
        KV_WARN(
            "restore: %s: the guest's writes cannot be logged (%s): no snapshot can be "
            "incremental from it",
            dir.c_str(), st.error().message.c_str());
    }
    // scripts/bench/snapshot reads this line.
    KV_INFO("restored %s: %u vCPU(s), %" PRIu64 " pages of RAM in %" PRIu64 " ns", dir.c_str(),
            topo_.num_vcpus(), info->pages, elapsed_ns(t0));
    return {};
}

Status Machine::finish_restore() {
    if (!restored_) return {};
    // The guest TSC and the devices' clock go on from where they stood at the save, at the
    // same moment, just before the vCPUs start.
    const uint64_t offset = restored_->guest_tsc - __builtin_ia32_rdtsc();
    for (auto& v : vcpus_)
        if (auto st = v->fd().set_tsc_offset(offset); !st)
            return Error{"restore: vCPU " + std::to_string(v->index()) +
                         ": its TSC cannot continue from the snapshot: " + st.error().message};
    device_clock_->restart_at(restored_->device_ns);
    return {};
}

}  // namespace kv
