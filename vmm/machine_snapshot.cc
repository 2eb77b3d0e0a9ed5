// Machine: snapshots of the whole guest, saved (save_snapshot, from the control plane) and
// restored (--restore, instead of a boot). docs/snapshots.md.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <deque>
#include <filesystem>
#include <random>
#include <thread>

#include "base/log.h"
#include "interconnect/auth.h"
#include "memory/coherence_engine.h"
#include "vmm/config/cluster.h"
#include "vmm/devices/device_state.h"
#include "vmm/machine.h"
#include "vmm/node/node_control.h"
#include "vmm/node/node_link.h"
#include "vmm/node/placement.h"
#include "vmm/node/topology.h"
#include "vmm/snapshot/memory_image.h"
#include "vmm/snapshot/snapshot.h"

namespace kv {

using control::Json;

namespace {

constexpr std::chrono::milliseconds kSnapshotPauseTimeout{10'000};
// One snapshot step on another node (a vCPU's state, or one chunk of pages).
constexpr std::chrono::milliseconds kStepTimeout{10'000};
constexpr const char* kMachinePart = "machine.json";
constexpr uint32_t kMachineStateVersion = 1;
constexpr uint64_t kPage = snapshot::kImagePageSize;
// Pages per SaveMemory / RestoreMemory message: 48 KiB of data and the addresses stay
// under the cluster control's 64 KiB payload.
constexpr size_t kChunkPages = 12;
// The clocks the guest's timers (PM timer, HPET) count on: the devices' clock on one
// node, the guest TSC shared by every node of a cluster (machine.cc, setup_devices). A
// snapshot restores onto the same kind, or its timers would jump.
constexpr const char* kClockDevice = "device";
constexpr const char* kClockGuestTsc = "guest-tsc";

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

// How long another node may take to read, encode and write its whole memory part.
constexpr std::chrono::milliseconds kPartTimeout{600'000};

// 32 hex digits from the kernel's random source (std::random_device is /dev/urandom
// or RDRAND with libstdc++).
std::string random_token() {
    std::random_device rd;
    char buf[33];
    for (int i = 0; i < 4; ++i) std::snprintf(buf + 8 * i, 9, "%08x", unsigned(rd()));
    return buf;
}

Status write_text(const std::string& path, const std::string& text) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) return Error::from_errno(path);
    if (::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()))
        return Error::from_errno(path);
    return {};
}

std::optional<std::string> read_text(const std::string& path, size_t max) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return std::nullopt;
    std::string out(max, '\0');
    ssize_t n = ::read(fd.get(), out.data(), max);
    if (n < 0) return std::nullopt;
    out.resize(size_t(n));
    return out;
}

// Runs of consecutive pages of `gpas` (ascending), each one span of `data` (a page each).
std::vector<snapshot::RamSpan> page_runs(const std::vector<uint64_t>& gpas,
                                         const std::vector<uint8_t>& data) {
    std::vector<snapshot::RamSpan> ram;
    for (size_t p = 0; p < gpas.size();) {
        size_t e = p + 1;
        while (e < gpas.size() && gpas[e] == gpas[e - 1] + kPage) ++e;
        ram.push_back({gpas[p], {data.data() + p * kPage, (e - p) * kPage}});
        p = e;
    }
    return ram;
}

// A page-aligned address inside one of `ranges` ([first, second)).
bool in_ranges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t gpa) {
    return gpa % kPage == 0 && std::any_of(ranges.begin(), ranges.end(), [&](const auto& r) {
               return gpa >= r.first && gpa < r.second;
           });
}

// A request's address `a` as a page of node `self`'s home range `ranges`; the error names
// the request `op`.
Result<uint64_t> home_page(const Json& a, const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                           uint32_t self, const char* op) {
    const uint64_t gpa = a.is_number_unsigned() ? a.get<uint64_t>() : 1;
    if (!in_ranges(ranges, gpa))
        return Error{std::string(op) + ": " + a.dump() + " is not a page of node " +
                     std::to_string(self) + "'s home range"};
    return gpa;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Result<Machine::SnapshotSave> Machine::save_snapshot(const std::string& dir, bool stop,
                                                     const std::optional<std::string>& parent) {
    if (!io_node()) return Error{"snapshot-save: only the I/O node saves the guest"};
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

    auto commit_manifest = [&]() -> Status {
        progress("commit");
        snapshot::Manifest m;
        m.config_digest = *digest;
        m.nodes = topo_.num_nodes;
        m.vcpus = topo_.num_vcpus();
        m.memory_bytes = mem_->ram_size();
        m.parent = parent_rel;
        m.parent_manifest_sha256 = parent_sha;
        return w->commit(std::move(m));
    };

    progress("vcpus");
    for (auto& v : vcpus_) {
        const uint32_t i = v->index();
        const std::string who = "vCPU " + std::to_string(i);
        if (runs_here(i)) {
            auto st = v->save_state(msr_indices_);
            if (!st) return Error{who + ": " + st.error().message};
            KV_TRY(add(vcpu_part(i), st->encode()));
            continue;
        }
        // Placed on another node: that node's copy is the vCPU.
        const uint32_t k = placement_->node_of(i);
        auto r = snapshot_step_on(k, ControlOp::SaveVcpu, {{"vcpu", i}});
        if (!r) return Error{who + " (on node " + std::to_string(k) + "): " + r.error().message};
        if (!r->contains("state") || !(*r)["state"].is_binary())
            return Error{who + " (on node " + std::to_string(k) + "): no state in the answer"};
        const auto& bytes = (*r)["state"].get_binary();
        if (auto d = CpuState::decode(bytes); !d)
            return Error{who + " (on node " + std::to_string(k) + "): " + d.error().message};
        KV_TRY(add(vcpu_part(i), bytes));
    }

    progress("devices");
    uint64_t guest_tsc = 0;
    {
        std::lock_guard g(pause_mu_);
        if (!paused_at_tsc_) return Error{"the guest is not paused"};
        if (multi_) {
            // Every node's guest TSC stood at this when the guest as a whole stopped.
            guest_tsc = frozen_tsc_.load();
        } else {
            // The host TSC at the pause through vCPU 0's KVM offset (every vCPU of a
            // single-node guest has the same).
            auto off = vcpus_.at(0)->fd().get_tsc_offset();
            if (!off) return Error{"vCPU 0: " + off.error().message};
            guest_tsc = *paused_at_tsc_ + *off;
        }
    }
    Json devices = Json::object();
    for (auto& [name, dev] : devices_) {
        StateSaver s;
        dev->save_state(s);
        devices[name] = s.take();
    }
    Json machine{{"version", kMachineStateVersion},
                 {"guest_tsc", guest_tsc},
                 {"device_clock_ns", device_clock_->now()},
                 {"clock", multi_ ? kClockGuestTsc : kClockDevice},
                 {"devices", std::move(devices)}};
    // The rate the guest's timers convert the TSC at (a restore keeps it, so that they go
    // on where they stood rather than at a rate measured again).
    if (multi_) machine["tsc_khz"] = tsc_khz_.load();
    KV_TRY(add(kMachinePart, bytes_of(machine.dump(1))));

    progress("memory");
    if (multi_) {
        // Each node reads its own home range (through the coherence engine: a page another
        // node holds modified is fetched) and sends the non-zero pages, every node at
        // once (a thread per other node, this one's own range here); one part each.
        const uint32_t n = topo_.num_nodes;
        // Incremental: the pages any node's vCPUs wrote since the parent (every node's
        // KVM dirty log), each read on its home node, zero or not.
        std::vector<std::vector<uint64_t>> written(n);
        if (parent) {
            auto dirty = dirty_pages_everywhere();
            if (!dirty) return dirty.error();
            for (uint32_t k = 0; k < n; ++k)
                for (auto [first, end] : home_ranges(k))
                    for (uint64_t g : *dirty)
                        if (g >= first && g < end) written[k].push_back(g);
        }
        std::vector<HomePages> pages(n);
        std::vector<Status> got(n);
        // A full save: another node that reaches the temporary directory (same host, or a
        // shared file system; it proves it by reading the token written there) writes its
        // part itself; otherwise it sends its pages here.
        std::vector<std::optional<snapshot::PartInfo>> remote(n);
        std::vector<uint64_t> remote_pages(n);
        const std::string token_file = w->temp_dir() + "/.node-token";
        std::string token;
        if (!parent) {
            token = random_token();
            KV_TRY(write_text(token_file, token));
        }
        std::atomic<uint64_t> gathered{0};  // bytes of pages, every node's
        std::mutex done_mu;
        std::condition_variable done_cv;
        uint32_t done = 0;  // under done_mu
        {
            std::vector<std::jthread> readers;
            for (uint32_t k = 0; k < n; ++k)
                readers.emplace_back([&, k] {
                    if (!parent && k != self_) {
                        auto r = control_->ask(k, ControlOp::SaveMemoryPart,
                                               {{"dir", fs::absolute(w->temp_dir()).string()},
                                                {"token", token},
                                                {"name", memory_part(k)}},
                                               kPartTimeout);
                        if (r && r->value("written", false)) {
                            const Json& j = *r;
                            if (j.contains("bytes") && j["bytes"].is_number_unsigned() &&
                                j.contains("sha256") && j["sha256"].is_string() &&
                                j.contains("pages") && j["pages"].is_number_unsigned()) {
                                remote[k] =
                                    snapshot::PartInfo{memory_part(k), j["bytes"].get<uint64_t>(),
                                                       j["sha256"].get<std::string>()};
                                remote_pages[k] = j["pages"].get<uint64_t>();
                            } else {
                                got[k] = Error{"a malformed answer to save-memory-part"};
                            }
                        } else if (!r) {
                            got[k] = r.error();
                        } else {
                            KV_DEBUG("snapshot: node %u sends its pages: %s", k,
                                     r->value("why", std::string("?")).c_str());
                            got[k] = gather_home_pages(k, pages[k], gathered);
                        }
                    } else {
                        got[k] = parent ? gather_listed_pages(k, written[k], pages[k], gathered)
                                        : gather_home_pages(k, pages[k], gathered);
                    }
                    std::lock_guard g(done_mu);
                    ++done;
                    done_cv.notify_all();
                });
            // This thread reports progress while they read (kvctl waits on it).
            std::unique_lock lk(done_mu);
            while (!done_cv.wait_for(lk, std::chrono::seconds(1), [&] { return done == n; })) {
                lk.unlock();
                emit_event(
                    "SNAPSHOT_PROGRESS",
                    {{"dir", dir}, {"phase", "memory"}, {"bytes", out.bytes + gathered.load()}});
                lk.lock();
            }
        }
        if (!parent) ::unlink(token_file.c_str());
        for (uint32_t k = 0; k < n; ++k) {
            if (!got[k])
                return Error{"memory of node " + std::to_string(k) + ": " + got[k].error().message};
            if (remote[k]) {
                KV_TRY(w->adopt_part(*remote[k]));
                ++out.node_parts;
                out.bytes += remote[k]->bytes;
                out.pages += remote_pages[k];
                progress("memory");
                continue;
            }
            snapshot::MemoryImageInfo info;
            KV_TRY(add(memory_part(k),
                       snapshot::encode_memory_image(page_runs(pages[k].gpas, pages[k].data), &info,
                                                     parent.has_value())));
            out.pages += info.pages;
            progress("memory");
        }
        out.zero_pages = mem_->ram_size() / kPage - out.pages;
        return commit_manifest();
    }
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

    return commit_manifest();
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
    // the start of the new log, on any node.
    auto r = snapshot::Reader::open(base_dir);
    if (!r) return r.error();
    KV_TRY(clear_dirty_log());
    if (control_)
        for (auto& a : control_->ask_all(ControlOp::DirtyLog, {{"reset", true}}, kStepTimeout))
            if (!a.reply)
                return Error{"node " + std::to_string(a.node) + ": " + a.reply.error().message};
    dirty_base_ = r->manifest_sha256();
    return {};
}

Result<std::vector<uint64_t>> Machine::dirty_pages_everywhere() {
    std::vector<uint64_t> all;
    for (uint32_t k = 0; k < topo_.num_nodes; ++k) {
        Json from = uint64_t(0);
        while (!from.is_null()) {
            auto r = snapshot_step_on(k, ControlOp::DirtyLog, {{"from", from}});
            if (!r)
                return Error{"the writes logged on node " + std::to_string(k) + ": " +
                             r.error().message};
            const Json& j = *r;
            if (!j.contains("gpas") || !j["gpas"].is_array() || !j.contains("next") ||
                (!j["next"].is_null() && !j["next"].is_number_unsigned()))
                return Error{"the writes logged on node " + std::to_string(k) +
                             ": a malformed answer"};
            for (const auto& g : j["gpas"]) {
                if (!g.is_number_unsigned() || !mem_->host_ptr(Gpa(g.get<uint64_t>()), kPage))
                    return Error{"the writes logged on node " + std::to_string(k) +
                                 ": a page outside guest RAM"};
                all.push_back(g.get<uint64_t>());
            }
            from = j["next"];
        }
    }
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
}

Result<Json> Machine::dirty_chunk(uint64_t from) {
    if (!dirty_logging_)
        return Error{
            "no log of the guest's writes here (no snapshot was saved or restored since "
            "this node started)"};
    KV_TRY(collect_dirty());
    constexpr size_t kMax = 4000;  // addresses a message (CBOR: up to 9 bytes each)
    Json gpas = Json::array();
    const auto& regions = mem_->regions();
    for (size_t i = 0; i < regions.size(); ++i) {
        const uint64_t base = regions[i].base.value, pages = regions[i].size / kPage;
        for (uint64_t pg = from > base ? (from - base) / kPage : 0; pg < pages; ++pg) {
            if (!(dirty_[i][pg / 64] >> (pg % 64) & 1)) continue;
            if (gpas.size() == kMax)
                return Json{{"gpas", std::move(gpas)}, {"next", base + pg * kPage}};
            gpas.push_back(base + pg * kPage);
        }
    }
    return Json{{"gpas", std::move(gpas)}, {"next", nullptr}};
}

Status Machine::clear_dirty_log() {
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
    for (uint32_t k = 0; k < m.nodes; ++k) {
        auto image = reader->read_part(memory_part(k));
        if (!image) return Error{"parent " + dir + ": " + image.error().message};
        if (auto st = apply_memory_image(*image, memory_part(k)); !st)
            return Error{"parent " + dir + ": " + st.error().message};
    }
    return {};
}

std::vector<std::pair<uint64_t, uint64_t>> Machine::home_ranges(uint32_t k) const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    if (!multi_) {
        for (const auto& r : mem_->regions()) out.emplace_back(r.base.value, r.base.value + r.size);
        return out;
    }
    const config::RamRange ram = cfg_.cluster.node_memory_range(k);
    for (const auto& r : ram_to_gpa(*mem_, ram.offset, ram.size))
        out.emplace_back(r.base, r.base + r.size);
    return out;
}

Result<uint64_t> Machine::apply_memory_image(std::span<const uint8_t> image,
                                             const std::string& part) {
    if (!multi_) {
        auto info = snapshot::decode_memory_image(image, part, ram_target());
        if (!info) return info.error();
        return info->pages;
    }
    // The decoder checks the whole image before it copies anything, into buffers here (a
    // deque: the buffers it was handed stay where they are); then each page goes to its
    // home node, which writes it (a page written from here would move to this node).
    std::deque<std::pair<uint64_t, std::vector<uint8_t>>> runs;
    auto info = snapshot::decode_memory_image(
        image, part, [&](uint64_t gpa, uint64_t bytes) -> Result<uint8_t*> {
            if (!mem_->host_ptr(Gpa(gpa), bytes)) return Error{"not guest RAM"};
            runs.emplace_back(gpa, std::vector<uint8_t>(bytes));
            return runs.back().second.data();
        });
    if (!info) return info.error();
    struct Home {
        uint64_t first, end;
        uint32_t node;
    };
    std::vector<Home> homes;
    for (uint32_t k = 0; k < topo_.num_nodes; ++k)
        for (auto [a, b] : home_ranges(k)) homes.push_back({a, b, k});
    struct Batch {
        Json gpas = Json::array();
        std::vector<uint8_t> data;
    };
    std::vector<Batch> batch(topo_.num_nodes);
    auto flush = [&](uint32_t k) -> Status {
        if (batch[k].gpas.empty()) return {};
        auto r = snapshot_step_on(
            k, ControlOp::RestoreMemory,
            {{"gpas", std::move(batch[k].gpas)}, {"data", Json::binary(std::move(batch[k].data))}});
        batch[k] = Batch{};
        if (!r) return Error{part + ": node " + std::to_string(k) + ": " + r.error().message};
        return {};
    };
    for (const auto& [gpa, bytes] : runs) {
        for (uint64_t off = 0; off < bytes.size(); off += kPage) {
            const uint64_t g = gpa + off;
            auto h = std::find_if(homes.begin(), homes.end(),
                                  [&](const Home& x) { return g >= x.first && g < x.end; });
            if (h == homes.end())
                return Error{part + ": a page at " + std::to_string(g) + " has no home"};
            if (h->node == self_) {  // this node's own: written here, no message
                KV_TRY(mem_->write(Gpa(g), std::span(bytes).subspan(off, kPage)));
                continue;
            }
            Batch& b = batch[h->node];
            b.gpas.push_back(g);
            b.data.insert(b.data.end(), bytes.begin() + long(off),
                          bytes.begin() + long(off + kPage));
            if (b.gpas.size() == kChunkPages) KV_TRY(flush(h->node));
        }
    }
    for (uint32_t k = 0; k < topo_.num_nodes; ++k) KV_TRY(flush(k));
    return info->pages;
}

Result<Json> Machine::snapshot_step_on(uint32_t k, ControlOp op, const Json& args) {
    if (k == self_) return serve_snapshot_step(op, args);
    return control_->ask(k, op, args, kStepTimeout);
}

bool Machine::zero_home_page(const uint8_t* p) const {
    // A page of this node's home that no node has ever had is zero: known without a read
    // (which would take a missing fault through the engine). Every other page is read in
    // place: one another node holds is fetched by the coherence engine as for any read
    // of guest memory.
    if (engine_) {
        auto pfn = engine_->pfn_of(reinterpret_cast<uint64_t>(p));
        if (pfn && engine_->never_granted(*pfn)) return true;
    }
    return std::all_of(p, p + kPage, [](uint8_t b) { return b == 0; });
}

Status Machine::read_home_pages(HomePages& out, std::atomic<uint64_t>& bytes) const {
    for (auto [first, end] : home_ranges(self_)) {
        const uint8_t* base = mem_->host_ptr(Gpa(first), end - first);
        if (!base) return Error{"guest memory at " + std::to_string(first) + " is not RAM"};
        for (uint64_t g = first; g < end; g += kPage) {
            const uint8_t* p = base + (g - first);
            if (zero_home_page(p)) continue;
            out.gpas.push_back(g);
            out.data.insert(out.data.end(), p, p + kPage);
            bytes += kPage;
        }
    }
    return {};
}

Status Machine::gather_home_pages(uint32_t k, HomePages& out, std::atomic<uint64_t>& bytes) {
    if (k == self_) return read_home_pages(out, bytes);
    Json from = uint64_t(0);
    while (!from.is_null()) {
        auto r = snapshot_step_on(k, ControlOp::SaveMemory, {{"from", from}});
        if (!r) return r.error();
        const Json& j = *r;
        if (!j.contains("gpas") || !j["gpas"].is_array() || !j.contains("data") ||
            !j["data"].is_binary() || !j.contains("next") ||
            (!j["next"].is_null() && !j["next"].is_number_unsigned()) ||
            j["data"].get_binary().size() != j["gpas"].size() * kPage)
            return Error{"a malformed answer"};
        for (const auto& g : j["gpas"]) {
            if (!g.is_number_unsigned() || !mem_->host_ptr(Gpa(g.get<uint64_t>()), kPage) ||
                (!out.gpas.empty() && g.get<uint64_t>() <= out.gpas.back()))
                return Error{"a page outside guest RAM or out of order in the answer"};
            out.gpas.push_back(g.get<uint64_t>());
        }
        const auto& b = j["data"].get_binary();
        out.data.insert(out.data.end(), b.begin(), b.end());
        bytes += b.size();
        from = j["next"];
    }
    return {};
}

Status Machine::gather_listed_pages(uint32_t k, const std::vector<uint64_t>& gpas, HomePages& out,
                                    std::atomic<uint64_t>& bytes) {
    for (size_t i = 0; i < gpas.size(); i += kChunkPages) {
        Json chunk = Json::array();
        for (size_t j = i; j < std::min(gpas.size(), i + kChunkPages); ++j)
            chunk.push_back(gpas[j]);
        auto r = snapshot_step_on(k, ControlOp::SaveMemory, {{"gpas", chunk}});
        if (!r) return r.error();
        if (!r->contains("data") || !(*r)["data"].is_binary() ||
            (*r)["data"].get_binary().size() != chunk.size() * kPage)
            return Error{"a malformed answer"};
        const auto& b = (*r)["data"].get_binary();
        out.data.insert(out.data.end(), b.begin(), b.end());
        out.gpas.insert(out.gpas.end(), gpas.begin() + long(i),
                        gpas.begin() + long(std::min(gpas.size(), i + kChunkPages)));
        bytes += b.size();
    }
    return {};
}

Result<Json> Machine::save_memory_chunk(uint64_t from) {
    // Bounded in bytes (one message) and in time (a long run of zero pages), so that the
    // I/O node's step never times out on a large range.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    Json gpas = Json::array();
    std::vector<uint8_t> data;
    for (auto [first, end] : home_ranges(self_)) {
        const uint8_t* base = mem_->host_ptr(Gpa(first), end - first);
        if (!base) return Error{"guest memory at " + std::to_string(first) + " is not RAM"};
        for (uint64_t g = std::max(first, from); g < end; g += kPage) {
            if (gpas.size() == kChunkPages || std::chrono::steady_clock::now() > deadline)
                return Json{{"gpas", std::move(gpas)},
                            {"data", Json::binary(std::move(data))},
                            {"next", g}};
            const uint8_t* p = base + (g - first);
            if (zero_home_page(p)) continue;
            gpas.push_back(g);
            data.insert(data.end(), p, p + kPage);
        }
    }
    return Json{
        {"gpas", std::move(gpas)}, {"data", Json::binary(std::move(data))}, {"next", nullptr}};
}

Result<Json> Machine::serve_snapshot_step(ControlOp op, const Json& args) {
    switch (op) {
        case ControlOp::SaveVcpu: {
            auto v = uint_arg(args, "vcpu", num_vcpus());
            if (!v) return v.error();
            const std::string who = "vCPU " + std::to_string(*v);
            if (!runs_here(uint32_t(*v)))
                return Error{who + " does not run on node " + std::to_string(self_)};
            auto st = vcpus_[*v]->save_state(msr_indices_);
            if (!st) return Error{who + ": " + st.error().message};
            return Json{{"state", Json::binary(st->encode())}};
        }
        case ControlOp::RestoreVcpu: {
            auto v = uint_arg(args, "vcpu", num_vcpus());
            if (!v) return v.error();
            const std::string who = "vCPU " + std::to_string(*v);
            auto it = args.find("state");
            if (it == args.end() || !it->is_binary()) return Error{"state must be a byte string"};
            auto state = CpuState::decode(it->get_binary());
            if (!state) return Error{who + "'s state: " + state.error().message};
            if (!runs_here(uint32_t(*v)))
                return Error{who + " does not run on node " + std::to_string(self_)};
            {
                // run() starts the vCPUs waiting for SIPI; the state goes in after that.
                std::unique_lock lk(started_mu_);
                if (!started_cv_.wait_for(lk, kStepTimeout, [&] { return vcpus_started_; }))
                    return Error{"node " + std::to_string(self_) + " did not start its vCPUs",
                                 ErrorCode::Timeout};
            }
            Vcpu& cpu = *vcpus_[*v];
            cpu.request_pause();  // until the I/O node's Resume
            if (!cpu.wait_paused(kStepTimeout))
                return Error{who + " did not pause", ErrorCode::Timeout};
            KV_TRY(cpu.restore_state(*state));
            return Json::object();
        }
        case ControlOp::SaveMemory: {
            if (auto g = args.find("gpas"); g != args.end()) {
                // The listed pages of this node's home range (an incremental save), as
                // they are, zero or not.
                if (!g->is_array() || g->size() > kChunkPages)
                    return Error{"save-memory: gpas must list at most " +
                                 std::to_string(kChunkPages) + " pages"};
                const auto ranges = home_ranges(self_);
                std::vector<uint8_t> data(g->size() * kPage);
                for (size_t i = 0; i < g->size(); ++i) {
                    auto gpa = home_page((*g)[i], ranges, self_, "save-memory");
                    if (!gpa) return gpa.error();
                    KV_TRY(mem_->read(Gpa(*gpa), std::span(data).subspan(i * kPage, kPage)));
                }
                return Json{
                    {"gpas", *g}, {"data", Json::binary(std::move(data))}, {"next", nullptr}};
            }
            auto from = uint_arg(args, "from", UINT64_MAX);
            if (!from) return from.error();
            if (*from % kPage) return Error{"from must be page-aligned"};
            return save_memory_chunk(*from);
        }
        case ControlOp::RestoreMemory: {
            auto g = args.find("gpas");
            auto d = args.find("data");
            if (g == args.end() || !g->is_array() || d == args.end() || !d->is_binary() ||
                d->get_binary().size() != g->size() * kPage)
                return Error{"restore-memory: gpas and data (one page each) are required"};
            const auto ranges = home_ranges(self_);
            const auto& data = d->get_binary();
            for (size_t i = 0; i < g->size(); ++i) {
                auto gpa = home_page((*g)[i], ranges, self_, "restore-memory");
                if (!gpa) return gpa.error();
                KV_TRY(mem_->write(Gpa(*gpa), std::span(data).subspan(i * kPage, kPage)));
            }
            return Json::object();
        }
        case ControlOp::SaveMemoryPart: {
            for (const char* key : {"dir", "token", "name"})
                if (!args.contains(key) || !args[key].is_string())
                    return Error{std::string("save-memory-part: ") + key + " must be a string"};
            const std::string dir = args["dir"].get<std::string>();
            const auto seen = read_text(dir + "/.node-token", 64);
            if (!seen || *seen != args["token"].get<std::string>())
                return Json{{"written", false},
                            {"why", dir + " is not the I/O node's directory here (another host)"}};
            HomePages pages;
            std::atomic<uint64_t> bytes{0};
            KV_TRY(read_home_pages(pages, bytes));
            snapshot::MemoryImageInfo info;
            const auto image =
                snapshot::encode_memory_image(page_runs(pages.gpas, pages.data), &info, false);
            auto part = snapshot::write_part(dir, args["name"].get<std::string>(), image);
            if (!part) return part.error();
            return Json{{"written", true},
                        {"bytes", part->bytes},
                        {"sha256", part->sha256},
                        {"pages", info.pages}};
        }
        case ControlOp::DirtyLog: {
            if (auto r = args.find("reset"); r != args.end() && r->is_boolean() && r->get<bool>()) {
                KV_TRY(clear_dirty_log());
                return Json::object();
            }
            auto from = uint_arg(args, "from", UINT64_MAX);
            if (!from) return from.error();
            return dirty_chunk(*from);
        }
        default:
            break;
    }
    return Error{"not a snapshot step"};
}

Status Machine::restore_snapshot(const std::string& dir) {
    auto fail = [&](const std::string& why) { return Error{"restore: " + dir + ": " + why}; };
    const auto t0 = std::chrono::steady_clock::now();
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
        bool known = part.name == kMachinePart;
        for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) known |= part.name == vcpu_part(v);
        for (uint32_t k = 0; k < m.nodes; ++k) known |= part.name == memory_part(k);
        if (!known) return fail("part " + part.name + ": not a part this build restores");
    }

    std::vector<CpuState> cpus;
    for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) {
        auto bytes = reader->read_part(vcpu_part(v));
        if (!bytes) return fail(bytes.error().message);
        auto s = CpuState::decode(*bytes);
        if (!s) return fail("part " + vcpu_part(v) + ": " + s.error().message);
        // The APIC IDs come from the nodes' layout (topology.h): a layout that numbers the
        // vCPUs otherwise is another machine to the guest.
        if (s->lapic.id != topo_.apic_ids[v])
            return fail("vCPU " + std::to_string(v) + " had APIC ID " +
                        std::to_string(s->lapic.id) + ", this layout of nodes gives it " +
                        std::to_string(topo_.apic_ids[v]) +
                        " (give each node a vCPU count that numbers them alike)");
        cpus.push_back(std::move(s).value());
    }

    std::vector<std::vector<uint8_t>> images;
    for (uint32_t k = 0; k < m.nodes; ++k) {
        auto image = reader->read_part(memory_part(k));
        if (!image) return fail(image.error().message);
        images.push_back(std::move(image).value());
    }
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
    const std::string clock = j.contains("clock") && j["clock"].is_string()
                                  ? j["clock"].get<std::string>()
                                  : std::string(kClockDevice);
    if (clock != kClockDevice && clock != kClockGuestTsc)
        return fail(mp + ": clock: \"" + clock + "\" is not a clock this build knows");
    if (clock == kClockGuestTsc && !multi_)
        return fail(
            "it was taken of a guest over [node.K] sections, whose timers count on the "
            "guest TSC: restore it with a cluster config (one node is fine)");
    if (clock == kClockDevice && multi_)
        return fail(
            "it was taken of a guest without [node.K] sections, whose timers count on "
            "another clock: restore it without them");
    if (multi_) {
        if (!j.contains("tsc_khz") || !j["tsc_khz"].is_number_unsigned() ||
            j["tsc_khz"].get<uint64_t>() == 0)
            return fail(mp + ": tsc_khz: missing or not a positive number");
        // The guest's timers go on at the rate they had (not one measured again).
        tsc_khz_ = j["tsc_khz"].get<uint64_t>();
        if (auto st = link_->announce_tsc_khz(tsc_khz_.load()); !st)
            return fail(st.error().message);
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

    // Every other node's vCPUs exist and take requests from here on.
    if (multi_)
        if (auto st =
                link_->wait_ready(std::chrono::steady_clock::now() + cfg_.cluster.connect_timeout);
            !st)
            return fail(st.error().message);

    // Guest RAM is all zero (build() writes no ACPI tables for a restore; whatever the
    // guest had there is in the images); then the chain's images, the oldest first. On one
    // node the memory is dropped once more all the same, in case anything touched it.
    if (!multi_)
        for (const auto& r : mem_->regions())
            if (::madvise(r.mapping.data(), r.size, MADV_DONTNEED) != 0)
                return Error::from_errno("restore: madvise(MADV_DONTNEED) on guest RAM");
    if (m.parent)
        if (auto st =
                restore_memory(parent_dir(reader->dir(), *m.parent), m.parent_manifest_sha256, 1);
            !st)
            return fail(st.error().message);
    uint64_t pages = 0;
    for (uint32_t k = 0; k < m.nodes; ++k) {
        auto n = apply_memory_image(images[k], memory_part(k));
        if (!n) return fail(n.error().message);
        pages += *n;
    }

    // Each vCPU where this layout places it: here, or sent to its node, which keeps it
    // paused until the guest starts (finish_restore).
    for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) {
        const std::string who = "vCPU " + std::to_string(v);
        if (runs_here(v)) {
            if (auto st = vcpus_[v]->restore_state(cpus[v]); !st)
                return fail(who + ": " + st.error().message);
            continue;
        }
        const uint32_t k = topo_.node_of[v];
        auto r =
            control_->ask(k, ControlOp::RestoreVcpu,
                          {{"vcpu", v}, {"state", Json::binary(cpus[v].encode())}}, kStepTimeout);
        if (!r) return fail(who + " (on node " + std::to_string(k) + "): " + r.error().message);
    }
    restored_ = clocks;
    // Later snapshots may be incremental from this one (KVM's dirty log on every node).
    if (auto st = reset_dirty(dir); !st) {
        dirty_base_.reset();
        KV_WARN(
            "restore: %s: the guest's writes cannot be logged (%s): no snapshot can be "
            "incremental from it",
            dir.c_str(), st.error().message.c_str());
    }
    // scripts/bench/snapshot reads this line.
    KV_INFO("restored %s: %u vCPU(s), %" PRIu64 " pages of RAM in %" PRIu64 " ns", dir.c_str(),
            topo_.num_vcpus(), pages, elapsed_ns(t0));
    return {};
}

Status Machine::finish_restore() {
    if (!restored_) return {};
    // The guest TSC and the devices' clock go on from where they stood at the save, at the
    // same moment, just before the vCPUs start.
    if (multi_) {
        // Every node's guest TSC is the host TSC plus tsc_offset_ minus tsc_shift_ (node
        // 0's host TSC on every node): one shift, the same on every node, takes it to the
        // saved value (modulo 2^64). The other nodes take it in their Resume (run()).
        const uint64_t shift =
            __builtin_ia32_rdtsc() + *tsc_offset_ - tsc_shift_.load() - restored_->guest_tsc;
        for (auto& v : vcpus_) {
            auto off = v->fd().get_tsc_offset();
            Status st = off ? v->fd().set_tsc_offset(*off - shift) : Status(off.error());
            if (!st)
                return Error{"restore: vCPU " + std::to_string(v->index()) +
                             ": its TSC cannot continue from the snapshot: " + st.error().message};
        }
        tsc_shift_.fetch_add(shift);
        restored_->tsc_shift = shift;
    } else {
        const uint64_t offset = restored_->guest_tsc - __builtin_ia32_rdtsc();
        for (auto& v : vcpus_)
            if (auto st = v->fd().set_tsc_offset(offset); !st)
                return Error{"restore: vCPU " + std::to_string(v->index()) +
                             ": its TSC cannot continue from the snapshot: " + st.error().message};
    }
    device_clock_->restart_at(restored_->device_ns);
    return {};
}

}  // namespace kv
