// Machine: moving a vCPU from one node to another while the guest runs
// (docs/migration.md). The I/O node coordinates, one migration at a time (under
// pause_mu_, like stop and cont); each step runs on its node, here or through the
// cluster control (NodeControl's worker thread, never the receive thread).
#include "base/log.h"
#include "vcpu/cpu_state.h"
#include "vmm/machine.h"
#include "vmm/node/node_control.h"
#include "vmm/node/placement.h"

namespace kv {

using control::Json;

namespace {

// How long one step may take on its node (the pause waits for an exit boundary).
constexpr std::chrono::milliseconds kStepTimeout{10'000};

std::string node_name(uint32_t k) {
    return "node " + std::to_string(k);
}

}  // namespace

bool Machine::vcpu_migratable(uint32_t v) const {
    std::lock_guard g(pause_mu_);
    return v < migratable_.size() && migratable_[v];
}

Status Machine::set_vcpu_migratable(uint32_t v, bool migratable) {
    if (v >= num_vcpus())
        return Error{"vcpu: the guest has vCPUs 0 to " + std::to_string(num_vcpus() - 1)};
    std::lock_guard g(pause_mu_);
    migratable_[v] = migratable;
    return {};
}

void Machine::run_here(uint32_t v) {
    vcpus_[v]->resume();
}

Result<std::vector<uint8_t>> Machine::migrate_out_local(uint32_t v, uint32_t to, uint64_t epoch,
                                                        bool run, std::chrono::milliseconds timeout,
                                                        uint64_t& pause_wait_ns,
                                                        uint64_t& save_ns) {
    const std::string who = "vCPU " + std::to_string(v);
    if (!runs_here(v))
        return Error{who + " does not run on " + node_name(self_), ErrorCode::Refused};
    Vcpu& cpu = *vcpus_[v];
    const uint64_t t0 = monotonic_ns();
    // Asked even when the guest is stopped: a vCPU just resumed may not have left its
    // pause point yet, and must not leave it now. `run`: the guest runs, so the vCPU runs
    // on here if the migration fails (else it stays paused, like the others).
    cpu.request_pause();
    if (!cpu.wait_paused(timeout)) {
        if (run) cpu.resume();
        return Error{who + " did not reach an exit boundary within " +
                         std::to_string(timeout.count()) + " ms",
                     ErrorCode::Timeout};
    }
    pause_wait_ns = monotonic_ns() - t0;
    auto undo = [&](Error e) -> Error {
        placement_->unhold(v);
        if (run) cpu.resume();
        return e;
    };
    if (cpu.run_state() == VcpuRunState::Finished)
        return undo(Error{who + " has stopped", ErrorCode::Refused});
    // From here its interrupts wait: none may reach its LAPIC after the state is taken.
    placement_->hold(v);
    // The PIC's INTR wire reaches vCPU 0 only on the I/O node (LINT0 as ExtINT): while the
    // guest uses it, vCPU 0 stays.
    if (v == 0 && io_node() && cpu.lapic().lint0_extint())
        return undo(Error{who + " takes the PIC's interrupts (LINT0 is ExtINT, or its LAPIC "
                                "is disabled), which reach it only on the I/O node",
                          ErrorCode::Refused});
    const uint64_t t_save = monotonic_ns();
    auto state = cpu.save_state(msr_indices_);
    if (!state) return undo(state.error());
    save_ns = monotonic_ns() - t_save;
    placement_->leave(v, to, epoch);
    // The copy stays paused here; it is not this node's vCPU any more.
    return state->encode();
}

Status Machine::migrate_in_local(uint32_t v, uint64_t epoch, const std::vector<uint8_t>* state,
                                 bool run) {
    Vcpu& cpu = *vcpus_[v];
    const bool parked = cpu.run_state() == VcpuRunState::Parked;
    if (state) {
        auto s = CpuState::decode(*state);
        if (!s) return Error{"vCPU " + std::to_string(v) + "'s state: " + s.error().message};
        // The copy is parked (never run here) or paused (it left this node before).
        KV_TRY(cpu.restore_state(*s));
    }
    placement_->arrive(v, epoch);
    if (parked) {
        // Its thread starts, and waits at its first exit boundary until it may run.
        cpu.request_pause();
        cpu.start_restored();
    }
    if (run) run_here(v);
    return {};
}

Result<Json> Machine::serve_migration_step(ControlOp op, const Json& args) {
    if (!placement_) return Error{"a guest on one node does not migrate vCPUs"};
    auto v = uint_arg(args, "vcpu", num_vcpus());
    if (!v) return v.error();
    const uint32_t vcpu = uint32_t(*v);
    switch (op) {
        case ControlOp::MigrateOut: {
            auto to = uint_arg(args, "to", num_nodes());
            auto epoch = uint_arg(args, "epoch", UINT64_MAX);
            if (!to) return to.error();
            if (!epoch) return epoch.error();
            auto run = args.find("run");
            if (run == args.end() || !run->is_boolean()) return Error{"run must be true or false"};
            uint64_t wait_ns = 0, save_ns = 0;
            auto st = migrate_out_local(vcpu, uint32_t(*to), *epoch, run->get<bool>(), kStepTimeout,
                                        wait_ns, save_ns);
            if (!st) return st.error();
            return Json{{"state", Json::binary(std::move(st).value())},
                        {"pause_wait_ns", wait_ns},
                        {"save_ns", save_ns}};
        }
        case ControlOp::MigrateIn: {
            auto epoch = uint_arg(args, "epoch", UINT64_MAX);
            if (!epoch) return epoch.error();
            auto run = args.find("run");
            if (run == args.end() || !run->is_boolean()) return Error{"run must be true or false"};
            const std::vector<uint8_t>* bytes = nullptr;
            if (auto it = args.find("state"); it != args.end()) {
                if (!it->is_binary()) return Error{"state must be a byte string"};
                bytes = &it->get_binary();
            }
            const uint64_t t0 = monotonic_ns();
            KV_TRY(migrate_in_local(vcpu, *epoch, bytes, run->get<bool>()));
            return Json{{"restore_ns", monotonic_ns() - t0}};
        }
        case ControlOp::Placement: {
            auto node = uint_arg(args, "node", num_nodes());
            auto epoch = uint_arg(args, "epoch", UINT64_MAX);
            if (!node) return node.error();
            if (!epoch) return epoch.error();
            const bool was_here = runs_here(vcpu);
            placement_->moved(vcpu, uint32_t(*node), *epoch);
            // A migration undone after this node had taken the vCPU (its answer came too
            // late): this copy must not run on beside the one taken back.
            if (was_here && !runs_here(vcpu)) vcpus_[vcpu]->request_pause();
            return Json::object();
        }
        case ControlOp::Run:
            if (!runs_here(vcpu))
                return Error{"vCPU " + std::to_string(vcpu) + " does not run on " +
                             node_name(self_)};
            run_here(vcpu);
            return Json::object();
        default:
            break;
    }
    return Error{"not a migration step"};
}

Result<Json> Machine::step_on(uint32_t k, ControlOp op, const Json& args,
                              std::chrono::milliseconds timeout) {
    if (k == self_) return serve_migration_step(op, args);
    return control_->ask(k, op, args, timeout);
}

Result<Machine::Migration> Machine::migrate_vcpu(uint32_t v, uint32_t to) {
    if (!io_node()) return Error{"migrate: only the I/O node moves vCPUs"};
    if (!placement_ || !control_)
        return Error{"migrate: the guest runs on one node; there is no other node to move to"};
    if (v >= num_vcpus())
        return Error{"vcpu: the guest has vCPUs 0 to " + std::to_string(num_vcpus() - 1)};
    if (to >= num_nodes())
        return Error{"node: the guest has nodes 0 to " + std::to_string(num_nodes() - 1)};
    std::lock_guard g(pause_mu_);
    if (!migratable_[v])
        return Error{"vCPU " + std::to_string(v) +
                         " may not migrate (its capability is off: [vcpu." + std::to_string(v) +
                         "] migrate = no, or set-vcpu-capability)",
                     ErrorCode::Refused};
    Migration r;
    r.vcpu = v;
    r.from = placement_->node_of(v);
    r.to = to;
    r.epoch = placement_->epoch_of(v);
    if (r.from == to) return r;
    if (control_->lost(to)) return Error{node_name(to) + " is lost", ErrorCode::PeerLost};
    const uint64_t epoch = r.epoch + 1;
    const bool run = !paused_at_tsc_;  // a stopped guest's vCPU arrives paused
    const uint64_t t0 = monotonic_ns();
    const Json ids{{"vcpu", v}, {"from", r.from}, {"to", to}};
    auto event = [&](const char* status, Json extra = Json::object()) {
        Json d = ids;
        d["status"] = status;
        for (auto& [k, x] : extra.items()) d[k] = x;
        emit_event("VCPU_MIGRATION", d);
    };
    event("started");

    // 1. Paused and saved where it runs; its interrupts go to `to` from then on.
    auto out = step_on(r.from, ControlOp::MigrateOut,
                       {{"vcpu", v}, {"to", to}, {"epoch", epoch}, {"run", run}}, kStepTimeout);
    if (!out || !out->contains("state") || !(*out)["state"].is_binary()) {
        Error e = out ? Error{"no state in the answer"} : out.error();
        event("failed", {{"error", e.message}});
        return Error{"migrate: " + node_name(r.from) + ": " + e.message, e.code};
    }
    const uint64_t wait_ns = out->value("pause_wait_ns", uint64_t(0));
    const uint64_t save_ns = out->value("save_ns", uint64_t(0));
    r.state_bytes = (*out)["state"].get_binary().size();
    // Every node must know where it is before it runs again: the I/O node here, the other
    // nodes (neither `from` nor `to`) in step 3.
    std::vector<NodeId> others;
    for (uint32_t k = 0; k < num_nodes(); ++k)
        if (k != r.from && k != to && k != self_) others.push_back(k);
    if (self_ != r.from && self_ != to) placement_->moved(v, to, epoch);
    const bool run_at_once = run && others.empty();

    // 2. Restored on the target's copy (and run there when no other node needs telling).
    auto in = step_on(to, ControlOp::MigrateIn,
                      {{"vcpu", v},
                       {"epoch", epoch},
                       {"state", std::move((*out)["state"])},
                       {"run", run_at_once}},
                      kStepTimeout);
    if (!in) {
        // It goes back where it was, as the next migration, so that the interrupts sent
        // meanwhile to `to` follow it back.
        const uint64_t back = epoch + 1;
        auto home = step_on(r.from, ControlOp::MigrateIn,
                            {{"vcpu", v}, {"epoch", back}, {"run", run}}, kStepTimeout);
        if (self_ != r.from) placement_->moved(v, r.from, back);
        std::vector<NodeId> tell;
        for (uint32_t k = 0; k < num_nodes(); ++k)
            if (k != r.from && k != self_) tell.push_back(k);
        for (auto& a :
             control_->ask_some(tell, ControlOp::Placement,
                                {{"vcpu", v}, {"node", r.from}, {"epoch", back}}, kStepTimeout))
            if (!a.reply)
                KV_WARN("migrate: undoing: node %u: %s", a.node, a.reply.error().message.c_str());
        std::string msg = "migrate: " + node_name(to) + ": " + in.error().message;
        if (!home)
            msg += "; and taking it back on " + node_name(r.from) + ": " + home.error().message;
        event("failed", {{"error", msg}});
        return Error{msg, in.error().code};
    }

    // 3. Every other node learns where it is.
    std::string late;
    for (auto& a : control_->ask_some(others, ControlOp::Placement,
                                      {{"vcpu", v}, {"node", to}, {"epoch", epoch}}, kStepTimeout))
        if (!a.reply) late += "; " + node_name(a.node) + ": " + a.reply.error().message;
    // 4. It runs. A node that did not learn sends its interrupts to `from`, which forwards
    // them: the vCPU runs all the same (the answer names that node).
    if (run && !run_at_once) {
        auto go = step_on(to, ControlOp::Run, {{"vcpu", v}}, kStepTimeout);
        if (!go) {
            event("failed", {{"error", go.error().message}});
            return Error{"migrate: " + node_name(to) + ": " + go.error().message, go.error().code};
        }
    }
    r.total_ns = monotonic_ns() - t0;
    r.pause_ns = r.total_ns > wait_ns ? r.total_ns - wait_ns : 0;
    r.save_ns = save_ns;
    r.restore_ns = in->value("restore_ns", uint64_t(0));
    r.epoch = epoch;
    r.moved = true;
    event("completed", {{"pause_ns", r.pause_ns}, {"total_ns", r.total_ns}});
    KV_DEBUG("vCPU %u: node %u -> %u in %llu us: save %llu us, restore %llu us", v, r.from, to,
             (unsigned long long)(r.pause_ns / 1000), (unsigned long long)(save_ns / 1000),
             (unsigned long long)(r.restore_ns / 1000));
    if (!late.empty())
        return Error{"migrate: vCPU " + std::to_string(v) + " runs on " + node_name(to) +
                     ", but not every node was told" + late};
    return r;
}

}  // namespace kv
