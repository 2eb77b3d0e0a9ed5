// Machine: the pause path (stop/cont) on one node and across nodes, and what the control
// plane reads of each node (node_report).
#include <algorithm>
#include <cinttypes>

#include "memory/coherence_engine.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/machine.h"
#include "vmm/node/node_control.h"
#include "vmm/node/node_link.h"
#include "vmm/node/placement.h"

namespace kv {

using control::Json;

bool Machine::runs_here(uint32_t v) const {
    return !placement_ || placement_->here(v);
}

Status Machine::pause_local(std::chrono::milliseconds timeout) {
    // The vCPUs placed here; the copies of those placed elsewhere never run here.
    for (auto& v : vcpus_)
        if (runs_here(v->index())) v->request_pause();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (auto& v : vcpus_) {
        if (!runs_here(v->index())) continue;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (!v->wait_paused(std::max(left, std::chrono::milliseconds(0)))) {
            for (auto& w : vcpus_)
                if (runs_here(w->index())) w->resume();
            return Error{"vCPU " + std::to_string(v->index()) +
                             " did not reach an exit boundary within " +
                             std::to_string(timeout.count()) + " ms",
                         ErrorCode::Timeout};
        }
    }
    // Every local vCPU is out of the guest. The devices' reads of the guest TSC (PM timer,
    // HPET, multi-node) stand still from here; the TSC itself runs on in KVM until
    // resume_local() takes the paused cycles out of every vCPU's offset.
    if (tsc_offset_) {
        frozen_tsc_.store(__builtin_ia32_rdtsc() + *tsc_offset_ - tsc_shift_.load());
        tsc_frozen_.store(true);
    }
    return {};
}

Status Machine::resume_local(uint64_t cycles) {
    Status result;
    // Every copy's TSC offset moves, run here or not: a vCPU that arrives later must read
    // the same guest TSC as the others.
    for (auto& v : vcpus_) {
        auto off = v->fd().get_tsc_offset();
        Status st = off ? v->fd().set_tsc_offset(*off - cycles) : Status(off.error());
        if (!st && result)
            result = Error{"vCPU " + std::to_string(v->index()) + ": " + st.error().message};
    }
    tsc_shift_.fetch_add(cycles);
    tsc_frozen_.store(false);
    if (device_clock_) device_clock_->resume();
    // The vCPUs run again even if an offset could not be moved: a guest left paused for
    // good would be worse than a TSC that jumped (the error says which vCPU).
    for (auto& v : vcpus_)
        if (runs_here(v->index())) v->resume();
    return result;
}

Status Machine::pause(std::chrono::milliseconds timeout) {
    if (!io_node()) return Error{"pause: only the I/O node pauses the guest"};
    std::lock_guard g(pause_mu_);
    if (paused_at_tsc_) return {};
    if (auto st = pause_local(timeout); !st) return Error{"pause: " + st.error().message};
    if (control_) {
        // Every other node parks its vCPUs too. One that cannot (or does not answer) undoes
        // the pause everywhere: the guest runs on and the error names the node.
        std::string failed;
        for (auto& a : control_->ask_all(ControlOp::Pause, Json::object(), timeout))
            if (!a.reply) failed += (failed.empty() ? "" : "; ") + a.reply.error().message;
        if (!failed.empty()) {
            for (auto& a : control_->ask_all(ControlOp::Resume, {{"tsc_shift", 0}}, timeout))
                if (!a.reply)
                    KV_WARN("pause undone: node %u: %s", a.node, a.reply.error().message.c_str());
            (void)resume_local(0);
            return Error{"pause: " + failed};
        }
    }
    // Every vCPU of the guest is out of it: now the clocks. The cycles from here to
    // resume() come out of every node's guest TSC, so a vCPU that paused earlier than
    // another still sees its TSC go on from where the guest as a whole stopped.
    if (device_clock_) device_clock_->pause();
    paused_at_tsc_ = __builtin_ia32_rdtsc();
    if (tsc_offset_) frozen_tsc_.store(*paused_at_tsc_ + *tsc_offset_ - tsc_shift_.load());
    return {};
}

Status Machine::resume() {
    if (!io_node()) return Error{"resume: only the I/O node resumes the guest"};
    std::lock_guard g(pause_mu_);
    if (!paused_at_tsc_) return {};
    const uint64_t cycles = __builtin_ia32_rdtsc() - *paused_at_tsc_;
    paused_at_tsc_.reset();
    // The I/O node first: another node's vCPU may reach its devices (the HPET, which reads
    // the guest TSC) as soon as it runs.
    Status local = resume_local(cycles);
    std::string failed = local ? "" : local.error().message;
    if (control_)
        for (auto& a : control_->ask_all(ControlOp::Resume, {{"tsc_shift", cycles}},
                                         std::chrono::milliseconds(10'000)))
            if (!a.reply) failed += (failed.empty() ? "" : "; ") + a.reply.error().message;
    if (!failed.empty()) return Error{"resume: " + failed};
    return {};
}

bool Machine::paused() const {
    std::lock_guard g(pause_mu_);
    return paused_at_tsc_.has_value();
}

Result<Json> Machine::serve_control(ControlOp op, const Json& args) {
    switch (op) {
        case ControlOp::Pause:
            if (auto st = pause_local(std::chrono::milliseconds(10'000)); !st) return st.error();
            return Json::object();
        case ControlOp::Resume: {
            auto it = args.find("tsc_shift");
            if (it == args.end() || !it->is_number_unsigned())
                return Error{"resume: tsc_shift must be a non-negative integer"};
            if (auto st = resume_local(it->get<uint64_t>()); !st) return st.error();
            return Json::object();
        }
        case ControlOp::Query:
            return node_report();
        case ControlOp::MigrateOut:
        case ControlOp::MigrateIn:
        case ControlOp::Placement:
        case ControlOp::Run:
            return serve_migration_step(op, args);
        case ControlOp::SaveVcpu:
        case ControlOp::RestoreVcpu:
        case ControlOp::SaveMemory:
        case ControlOp::RestoreMemory:
        case ControlOp::DirtyLog:
        case ControlOp::SaveMemoryPart:
            return serve_snapshot_step(op, args);
    }
    return Error{"unknown control operation"};
}

std::vector<Machine::VcpuInfo> Machine::vcpu_info() const {
    std::vector<VcpuInfo> out;
    for (const auto& v : vcpus_) {
        if (!runs_here(v->index())) continue;  // its node reports it
        VcpuInfo i;
        i.index = v->index();
        i.node = self_;
        i.state = v->run_state();
        for (const auto& e : v->counters().exits) i.exits += e.load(std::memory_order_relaxed);
        i.halts = v->counters().halts.load(std::memory_order_relaxed);
        i.paused_ns = v->paused_ns();
        i.halted_ns = v->counters().halted_ns.load(std::memory_order_relaxed);
        if (const uint64_t t0 = v->started_ns()) {
            const uint64_t up = monotonic_ns() - t0;
            i.running_ns = up > i.halted_ns + i.paused_ns ? up - i.halted_ns - i.paused_ns : 0;
        }
        out.push_back(i);
    }
    return out;
}

namespace {

Json latency_json(const LatencyHistogram& h) {
    return {{"count", h.count()}, {"p50_ns", h.quantile_ns(0.5)}, {"p99_ns", h.quantile_ns(0.99)}};
}

}  // namespace

Json Machine::node_report() const {
    Json r;
    r["node"] = self_;
    if (multi_) {
        const auto& n = cfg_.cluster.nodes[self_];
        r["address"] = n.address + ":" + std::to_string(n.port);
    } else {
        r["address"] = "local";
    }
    const bool any_paused = std::any_of(vcpus_.begin(), vcpus_.end(), [this](const auto& v) {
        return runs_here(v->index()) && v->run_state() == VcpuRunState::Paused;
    });
    r["state"] = any_paused ? "paused" : "running";
    Json vcpus = Json::array();
    for (const auto& v : vcpu_info())
        vcpus.push_back({{"vcpu", v.index},
                         {"node", v.node},
                         {"state", to_string(v.state)},
                         {"exits", v.exits},
                         {"halts", v.halts},
                         {"running_ns", v.running_ns},
                         {"halted_ns", v.halted_ns},
                         {"paused_ns", v.paused_ns}});
    r["vcpus"] = std::move(vcpus);
    // The guest TSC's real rate (kHz), for reading guest TSC intervals (the migration
    // benchmark's stalls); 0 where this node does not know it.
    if (multi_) r["tsc_khz"] = io_node() ? tsc_khz_.load() : link_->tsc_khz();

    const config::RamRange ram =
        multi_ ? cfg_.cluster.node_memory_range(self_) : config::RamRange{0, cfg_.memory};
    Json mem{{"home_offset", ram.offset}, {"home_bytes", ram.size}};
    if (engine_) {
        const auto c = engine_->state_counts();
        mem["pages"] = {{"invalid", c.invalid}, {"shared", c.shared}, {"modified", c.modified}};
        const DsmStats d = engine_->stats();
        mem["faults"] = {{"read_missing", d.read_missing_faults},
                         {"write_missing", d.write_missing_faults},
                         {"write_protect", d.write_protect_faults}};
        mem["transfers"] = {{"pages_sent", d.pages_sent},
                            {"pages_received", d.pages_received},
                            {"invalidations_sent", d.invalidations_sent},
                            {"invalidations_received", d.invalidations_received},
                            {"held_messages", d.held_messages},
                            {"page_table_drops", d.page_table_drops}};
        mem["fault_latency"] = latency_json(d.fault_latency);
        Json hot = Json::array();
        for (const auto& p : engine_->hottest_pages(8))
            hot.push_back({{"gpa", p.pfn * 4096}, {"faults", p.faults}});
        mem["most_faulted"] = std::move(hot);
    }
    r["memory"] = std::move(mem);
    if (link_) {
        const auto& l = link_->counters();
        r["link"] = {
            {"ipis_sent", l.ipis_sent.load()},       {"ipis_received", l.ipis_received.load()},
            {"io_forwarded", l.io_forwarded.load()}, {"io_served", l.io_served.load()},
            {"io_wait_ns", l.io_wait_ns.load()},     {"eois_forwarded", l.eois_forwarded.load()}};
    }
    return r;
}

std::vector<Json> Machine::cluster_reports(std::chrono::milliseconds timeout) const {
    std::vector<Json> out{node_report()};
    if (!control_) return out;
    for (auto& a : control_->ask_all(ControlOp::Query, Json::object(), timeout)) {
        if (a.reply && a.reply->is_object()) {
            out.push_back(std::move(*a.reply));
            continue;
        }
        const auto& n = cfg_.cluster.nodes[a.node];
        const bool lost = !a.reply && a.reply.error().code == ErrorCode::PeerLost;
        out.push_back({{"node", a.node},
                       {"address", n.address + ":" + std::to_string(n.port)},
                       {"state", lost ? "lost" : "unreachable"},
                       {"error", a.reply ? "not an object" : a.reply.error().message}});
    }
    return out;
}

void Machine::set_event_sink(EventSink sink) {
    std::lock_guard g(event_mu_);
    event_sink_ = std::move(sink);
}

void Machine::emit_event(const std::string& name, const Json& data) {
    std::lock_guard g(event_mu_);
    if (event_sink_) event_sink_(name, data);
}

void Machine::press_power_button() {
    if (acpi_pm_) acpi_pm_->press_power_button();
}

}  // namespace kv
