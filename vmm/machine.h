// One guest on this node: KVM VM, guest RAM, vCPUs, interrupt controllers and devices,
// assembled in one readable place (create()) and run until the guest stops (run()).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/mapping.h"
#include "base/result.h"
#include "interconnect/transport_options.h"
#include "memory/dsm_stats.h"
#include "memory/guest_memory.h"
#include "vcpu/ipi_router.h"
#include "vcpu/kvm.h"
#include "vcpu/vcpu.h"
#include "vmm/config/config.h"
#include "vmm/control/protocol.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/clock.h"
#include "vmm/devices/irq.h"
#include "vmm/node/topology.h"
#include "vmm/stop.h"

namespace kv {

class Ioapic;
class Pic8259;
class Pit8254;
class Uart8250;
class AcpiPm;
class Console;
class ConsoleMonitor;
class ConsoleOutput;
class NodeLink;
class NodeControl;
class MessageRouter;
class VcpuPlacement;
enum class ControlOp : uint64_t;
class CoherenceEngine;
class Transport;
class AuthHook;

class Machine : public IoHandler, public IrqChip {
  public:
    // Errors from bad input (kernel, initrd, memory, vcpus) start with the key at fault.
    // A multi-node guest (cfg.cluster.enabled()) runs node cfg.cluster.self: create()
    // connects to the other nodes (their TSCs aligned, node 0 loading the kernel) and
    // returns once the guest can start. `digest` is the cluster's config digest when the
    // caller has computed it already (--local); otherwise create() computes it.
    static Result<std::unique_ptr<Machine>> create(const config::VmConfig& cfg,
                                                   const std::optional<ConfigDigest>& digest = {});
    ~Machine() override;

    StopEvent run();
    void print_stats(FILE* out) const;
    // One line of counters (multi-node, --log-level info, every 10 s while running).
    void log_progress() const;

    // IoHandler (vCPU threads)
    bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) override;
    bool mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) override;
    // IrqChip: ISA IRQ numbers below 16 go to both the PIC and the IOAPIC (IRQ 0 on pin 2).
    void set_irq(uint32_t irq, bool level) override;

    // Any thread: the guest is over.
    void request_stop(StopReason reason, std::string detail);

    // The pause path of stop/cont (and later migration and snapshots): every vCPU of the
    // guest parked at an exit boundary (bounded by `timeout`), then the device clocks and
    // the guest TSC stopped; resume() starts them where they stood, so the guest's clocks
    // do not jump over the pause. Over several nodes, the I/O node's call pauses every
    // node (NodeControl: each parks its vCPUs and freezes its guest TSC) and resume()
    // takes the same number of cycles out of every node's guest TSC, so the nodes' TSCs
    // still agree (docs/control.md). Any thread but a vCPU's; one caller at a time (the
    // control thread); on the I/O node only.
    Status pause(std::chrono::milliseconds timeout);
    Status resume();
    bool paused() const;
    struct VcpuInfo {
        uint32_t index = 0, node = 0;
        VcpuRunState state = VcpuRunState::Parked;
        uint64_t exits = 0, halts = 0, paused_ns = 0;
        uint64_t halted_ns = 0;   // in HLT
        uint64_t running_ns = 0;  // since it started, neither halted nor paused
    };
    std::vector<VcpuInfo> vcpu_info() const;
    // This node's report for the control plane: address, state, vCPUs, memory range and
    // page states, coherence and link counters (docs/control.md, query-nodes).
    control::Json node_report() const;
    // Every node's report, this one's first; a node that did not answer has
    // {"node": K, "state": "lost" or "unreachable", "error": TEXT}.
    std::vector<control::Json> cluster_reports(std::chrono::milliseconds timeout) const;
    // Events the machine raises itself (NODE_LOST); any thread. Null: none.
    using EventSink = std::function<void(const std::string& name, const control::Json& data)>;
    void set_event_sink(EventSink sink);
    // The ACPI power button (system_powerdown): the guest decides what to do with it.
    void press_power_button();
    // Moves vCPU `vcpu` to node `node` (docs/migration.md): it is paused at an exit
    // boundary where it runs, its state (CpuState) restored into the target node's copy,
    // every node's placement updated, then it runs there (unless the guest is paused).
    // Errors: Generic (no such vCPU or node, or a single-node guest), Refused (the vCPU
    // may not migrate, or cannot now), Timeout / PeerLost (a node did not answer; the vCPU
    // then runs on where it was, if that node is still there). On the I/O node, from the
    // control thread.
    struct Migration {
        uint32_t vcpu = 0, from = 0, to = 0;
        uint64_t epoch = 0;     // the vCPU's migrations so far, this one included
        uint64_t pause_ns = 0;  // from its pause on `from` to its run on `to`, at most
        uint64_t total_ns = 0;  // the whole command
        uint64_t save_ns = 0, restore_ns = 0;  // of the state, on `from` and on `to`
        uint64_t state_bytes = 0;              // the encoded CpuState sent
        bool moved = false;                    // false: it was on `node` already
    };
    Result<Migration> migrate_vcpu(uint32_t vcpu, uint32_t node);
    // Kerrighed's CAN_MIGRATE: whether migrate_vcpu() may move `vcpu` ([vcpu.N] migrate).
    Status set_vcpu_migratable(uint32_t vcpu, bool migratable);
    bool vcpu_migratable(uint32_t vcpu) const;
    uint32_t num_vcpus() const { return topo_.num_vcpus(); }
    uint32_t num_nodes() const { return topo_.num_nodes; }
    // Guest physical memory for the control plane (memory-read): over several nodes a page
    // held elsewhere is fetched by the coherence engine, as for a vCPU. Errors name the
    // range when it is not guest RAM. Not from a thread that serves the interconnect.
    Status read_guest_memory(uint64_t gpa, std::span<uint8_t> out) const;
    // A snapshot of the whole guest into `dir` (docs/snapshots.md): the guest paused (if it
    // runs), every vCPU's state, every device's, the guest clocks and the non-zero pages of
    // guest RAM written atomically, then the guest runs on, or stays paused with `stop`
    // (only if the save worked: a failed one leaves the guest as it was).
    // Progress goes out as SNAPSHOT_PROGRESS events. On the I/O node, from the control
    // thread. Over several nodes the other nodes send their vCPUs' states and the non-zero
    // pages of their home ranges (one memory part per node).
    struct SnapshotSave {
        std::string dir;
        uint64_t bytes = 0;                  // every part, the manifest not counted
        uint64_t pages = 0, zero_pages = 0;  // of guest RAM: written, left out
        uint32_t node_parts = 0;  // memory parts other nodes wrote themselves (same file system)
        uint64_t pause_ns = 0, total_ns = 0;  // the guest stood still / the whole save
        bool paused = false;                  // the guest is left paused
    };
    // With `parent` (incremental): only the pages the guest wrote since `parent`, which
    // must be the last snapshot this machine saved or was restored from (KVM's dirty log
    // holds the writes since then, on every node).
    Result<SnapshotSave> save_snapshot(const std::string& dir, bool stop,
                                       const std::optional<std::string>& parent = {});
    // What Ctrl-A c on the console switches to (null: no monitor); set before run(), and
    // it must outlive the Machine's run().
    void set_monitor(ConsoleMonitor* monitor) { monitor_ = monitor; }

  private:
    Machine() = default;
    Status build(const config::VmConfig& cfg, const std::optional<ConfigDigest>& digest);
    Status connect_cluster(const std::optional<ConfigDigest>& digest);
    Status setup_devices(const config::VmConfig& cfg);
    Status create_vm_and_vcpus();
    bool io_node() const { return self_ == 0; }
    // Multi-node: guest time in ns from the guest TSC (this node's host TSC plus
    // tsc_offset_) at `khz`, the TSC's real rate, slowed by the time dilation. The ACPI PM
    // timer follows it on every node, so it agrees with the TSC, and across nodes.
    uint64_t guest_tsc_ns(uint64_t khz) const;
    // Other nodes: a read of the PM timer served here (false: forward it to node 0).
    bool read_pm_timer(uint16_t port, std::span<uint8_t> data) const;
    // Other nodes: a read of the HPET's main counter served here (false: forward it).
    bool read_hpet_counter(uint64_t addr, std::span<uint8_t> data) const;
    // This node's half of the pause path (every node, the I/O node's own included).
    Status pause_local(std::chrono::milliseconds timeout);
    // Takes `cycles` out of this node's guest TSC (every vCPU's KVM offset, and the TSC the
    // devices read), restarts the device clock and runs the vCPUs again.
    Status resume_local(uint64_t cycles);
    // A request of the I/O node's control plane (NodeControl's worker thread).
    Result<control::Json> serve_control(ControlOp op, const control::Json& args);
    // --restore: the snapshot's state into this machine instead of a boot (build()); the
    // clocks are set where they stood at the save by finish_restore() in run(), just
    // before the vCPUs start.
    Status restore_snapshot(const std::string& dir);
    Status write_snapshot(const std::string& dir, const std::optional<std::string>& parent,
                          SnapshotSave& out);
    // Guest RAM from snapshot `dir`'s memory part, its parents' first (depth: the chain so
    // far); `want_sha` is what the child says the manifest's SHA-256 is.
    Status restore_memory(const std::string& dir, const std::optional<std::string>& want_sha,
                          unsigned depth);
    // One memory part into guest RAM: copied in place on one node; over several nodes each
    // page is sent to its home node (by this layout) and written there.
    // Returns the pages it held.
    Result<uint64_t> apply_memory_image(std::span<const uint8_t> image, const std::string& part);
    // Snapshot steps on this node (ControlOp SaveVcpu .. RestoreMemory; NodeControl's
    // worker thread, or the I/O node's control thread for its own share).
    Result<control::Json> serve_snapshot_step(ControlOp op, const control::Json& args);
    // The non-zero pages of this node's home range from guest address `from` on, at most
    // one control message's worth: {"gpas", "data", "next"} (ControlOp::SaveMemory).
    Result<control::Json> save_memory_chunk(uint64_t from);
    // Every such chunk of node `k` (SaveMemory until "next" is null), in address order.
    struct HomePages {
        std::vector<uint64_t> gpas;
        std::vector<uint8_t> data;  // a page per address
    };
    // Page `p` (host address) of this node's home range holds zeros: never granted to any
    // node (no read), or read and found so.
    bool zero_home_page(const uint8_t* p) const;
    // This node's own, read here directly (no messages).
    Status read_home_pages(HomePages& out, std::atomic<uint64_t>& bytes) const;
    // Any thread; `bytes` counts what has come so far.
    Status gather_home_pages(uint32_t k, HomePages& out, std::atomic<uint64_t>& bytes);
    // A step on node `k`, here or over the cluster control (snapshots' timeout).
    Result<control::Json> snapshot_step_on(uint32_t k, ControlOp op, const control::Json& args);
    // Guest-physical ranges [first, second) of node `k`'s home slice of RAM (all of RAM on
    // a single-node guest).
    std::vector<std::pair<uint64_t, uint64_t>> home_ranges(uint32_t k) const;
    // KVM's dirty log over guest RAM, on from the first snapshot saved or restored:
    // dirty_ holds, per region, the pages written since the snapshot dirty_base_ (the
    // SHA-256 of its manifest) that KVM has handed over so far.
    std::function<Result<uint8_t*>(uint64_t, uint64_t)> ram_target();
    // config::guest_digest(cfg_) in hex, computed once (it hashes the kernel and initrd):
    // what a snapshot's manifest names and a restore checks, at every link of a chain.
    Result<std::string> guest_digest();
    std::optional<std::string> guest_digest_;
    Status collect_dirty();
    // After a snapshot `base_dir` was saved or restored: every node's log starts again
    // (clear_dirty_log here, ControlOp::DirtyLog {"reset": true} elsewhere).
    Status reset_dirty(const std::string& base_dir);
    Status clear_dirty_log();  // this node's: on if it was not, and empty
    // This node's logged pages from guest address `from` on, a message's worth:
    // {"gpas", "next"} (ControlOp::DirtyLog).
    Result<control::Json> dirty_chunk(uint64_t from);
    // Every node's logged pages, sorted, each once.
    Result<std::vector<uint64_t>> dirty_pages_everywhere();
    Status gather_listed_pages(uint32_t k, const std::vector<uint64_t>& gpas, HomePages& out,
                               std::atomic<uint64_t>& bytes);
    bool dirty_logging_ = false;
    std::vector<std::vector<uint64_t>> dirty_;
    std::optional<std::string> dirty_base_;
    Status finish_restore();
    struct RestoredClocks {
        uint64_t guest_tsc = 0;  // the guest TSC at the save
        uint64_t device_ns = 0;  // the devices' clock at the save
        uint64_t tsc_shift = 0;  // multi-node: what every other node takes out of its TSC
    };
    // Multi-node: run() has started this node's vCPUs (a RestoreVcpu step waits for it:
    // restoring a vCPU that start() would then reset is no restore).
    std::mutex started_mu_;
    std::condition_variable started_cv_;
    bool vcpus_started_ = false;  // under started_mu_
    std::optional<RestoredClocks> restored_;
    // The devices with guest-visible state, by the name their state has in a snapshot.
    std::vector<std::pair<std::string, std::shared_ptr<Device>>> devices_;
    // vCPU v runs on this node (always, on a single-node guest).
    bool runs_here(uint32_t v) const;
    // This node's steps of a migration (migrate_vcpu; docs/migration.md).
    Result<std::vector<uint8_t>> migrate_out_local(uint32_t v, uint32_t to, uint64_t epoch,
                                                   bool run, std::chrono::milliseconds timeout,
                                                   uint64_t& pause_wait_ns, uint64_t& save_ns);
    Status migrate_in_local(uint32_t v, uint64_t epoch, const std::vector<uint8_t>* state,
                            bool run);
    void run_here(uint32_t v);
    Result<control::Json> serve_migration_step(ControlOp op, const control::Json& args);
    // A step on node `k`: here, or asked over the cluster control.
    Result<control::Json> step_on(uint32_t k, ControlOp op, const control::Json& args,
                                  std::chrono::milliseconds timeout);
    void emit_event(const std::string& name, const control::Json& data);
    // Stops the vCPUs and tears the node's links down (run()'s end and the destructor).
    void shut_down();

    // The devices' time base (single node): stands still while the guest is paused.
    std::shared_ptr<PausableClock> device_clock_;
    mutable std::mutex pause_mu_;            // taken alone, by the control thread's calls:
                                             // pause, resume and migrations, one at a time
    std::optional<uint64_t> paused_at_tsc_;  // under pause_mu_: host TSC when paused
    // Multi-node: cycles taken out of the guest TSC by pauses so far (tsc_offset_ minus
    // this is the vCPUs' KVM offset), and the guest TSC the devices read while paused.
    std::atomic<uint64_t> tsc_shift_{0};
    std::atomic<bool> tsc_frozen_{false};
    std::atomic<uint64_t> frozen_tsc_{0};
    std::mutex event_mu_;
    EventSink event_sink_;  // under event_mu_

    config::VmConfig cfg_;
    uint32_t self_ = 0;   // this node (0 for a single-node guest)
    bool multi_ = false;  // a multi-node guest
    GuestTopology topo_;
    // Multi-node: where each vCPU runs and where its interrupts go (every node has a copy
    // of every vCPU in vcpus_, by index; only those placed here run).
    std::unique_ptr<VcpuPlacement> placement_;
    std::vector<uint32_t> msr_indices_;   // KVM_GET_MSR_INDEX_LIST, for the vCPU state
    std::vector<bool> migratable_;        // under pause_mu_: by vCPU
    std::optional<uint64_t> tsc_offset_;  // KVM TSC offset of this node's vCPUs
    std::atomic<uint64_t> tsc_khz_{0};    // node 0 of a multi-node guest: the TSC's real rate
    std::optional<Kvm> kvm_;
    VmFd vm_;
    // Shadow paging under a multi-node guest (memory/shadow_mmu.h): the guard, and the
    // one-page dummy memory slot whose moves make KVM drop every shadow page.
    std::unique_ptr<ShadowMmuGuard> shadow_guard_;
    Mapping shadow_dummy_;
    uint32_t shadow_dummy_slot_ = 0;
    bool shadow_dummy_high_ = false;
    Status zap_shadow_mmu();
    std::optional<GuestMemory> mem_;
    // Multi-node: the link to the other nodes, the coherence engine over mem_, the
    // transport that carries both (destroyed in shut_down(), in reverse order).
    std::unique_ptr<AuthHook> auth_;
    std::unique_ptr<NodeLink> link_;
    std::unique_ptr<CoherenceEngine> engine_;
    std::unique_ptr<NodeControl> control_;
    std::unique_ptr<MessageRouter> dispatch_;  // the transport's handler: routes by type
    std::unique_ptr<Transport> transport_;
    std::optional<DsmStats> dsm_stats_;  // the engine's counters, kept when it goes
    std::unique_ptr<IpiRouter> router_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    Bus pio_bus_, mmio_bus_;
    std::shared_ptr<Ioapic> ioapic_;
    std::shared_ptr<Pic8259> pic_;
    std::shared_ptr<Pit8254> pit_;
    std::unique_ptr<ConsoleOutput> console_output_;  // stdio console: held while in the monitor
    std::shared_ptr<Uart8250> uart_;
    std::shared_ptr<AcpiPm> acpi_pm_;
    std::unique_ptr<Console> console_;
    ConsoleMonitor* monitor_ = nullptr;
    Fd console_file_;

    std::mutex stop_mu_;
    std::condition_variable stop_cv_;
    std::optional<StopEvent> stop_;
    bool stop_told_ = false;  // stop_ is set and the other nodes were told (under stop_mu_)
};

}  // namespace kv
