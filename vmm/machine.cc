#include "vmm/machine.h"

#include <fcntl.h>

#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "base/log.h"
#include "interconnect/auth.h"
#include "interconnect/router.h"
#include "interconnect/transport_factory.h"
#include "memory/coherence_engine.h"
#include "vcpu/tsc.h"
#include "vmm/boot/acpi.h"
#include "vmm/boot/linux_loader.h"
#include "vmm/cmdline.h"
#include "vmm/config/cluster.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/console.h"
#include "vmm/devices/hpet.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/ioapic.h"
#include "vmm/devices/pci_host.h"
#include "vmm/devices/pic_8259.h"
#include "vmm/devices/pit_8254.h"
#include "vmm/devices/port_window.h"
#include "vmm/devices/pvpanic.h"
#include "vmm/devices/rtc_cmos.h"
#include "vmm/devices/uart_8250.h"
#include "vmm/node/node_control.h"
#include "vmm/node/node_link.h"
#include "vmm/node/placement.h"

namespace kv {

namespace {
// Where KVM may put its real-mode TSS and identity page (Intel only; harmless elsewhere):
// just below the 4 GiB BIOS area, inside the 32-bit hole and away from our MMIO.
constexpr uint64_t kTssAddr = 0xFFFBD000;
// The shadow-MMU dummy slot (and its other place, 2 MiB above): 256 GiB, above any RAM or
// MMIO the guest has and below a 40-bit physical address width.
constexpr uint64_t kShadowDummyGpa = uint64_t{1} << 38;
constexpr uint8_t kSerialIrq = 4, kSciIrq = 9;  // the RTC raises no interrupt (IRQ 8 unused)

}  // namespace

Result<std::unique_ptr<Machine>> Machine::create(const config::VmConfig& cfg,
                                                 const std::optional<ConfigDigest>& digest) {
    std::unique_ptr<Machine> m(new Machine());
    KV_TRY(m->build(cfg, digest));
    return m;
}

Machine::~Machine() {
    shut_down();
    // Joins the control worker (which may have been pausing the vCPUs) before any member
    // it uses goes; after shut_down() a control command fails at once (it is closed).
    control_.reset();
}

void Machine::shut_down() {
    // vCPUs blocked in faults may never be woken now: nothing is held out any more.
    if (shadow_guard_) shadow_guard_->abandon();
    for (auto& v : vcpus_) v->request_stop();
    if (link_) link_->close();        // vCPUs waiting for forwarded I/O give up
    if (control_) control_->close();  // control requests in flight fail
    if (engine_) engine_->expect_peers_to_leave();
    if (transport_) transport_->shutdown();
    if (engine_) {
        // Closing the userfaultfd wakes vCPUs blocked on a page that will never come.
        engine_->stop();
        dsm_stats_ = engine_->stats();
        engine_.reset();
    }
    for (auto& v : vcpus_) v->join();
    if (pit_) pit_->stop();
    console_.reset();
}

Status Machine::connect_cluster(const std::optional<ConfigDigest>& given) {
    const config::Cluster& cl = cfg_.cluster;
    ConfigDigest digest{};
    if (given) {
        digest = *given;
    } else {
        auto d = config::config_digest(cfg_);
        if (!d) return d.error();
        digest = *d;
    }
    auth_ = std::make_unique<ClusterKeyAuth>(self_, cl.key, digest);
    NodeLink::Host host;
    // Every interrupt for a vCPU goes through the placement table: delivered here if the
    // vCPU runs here, held if it is arriving, sent on to its node otherwise.
    placement_ = std::make_unique<VcpuPlacement>(
        self_, topo_.node_of,
        [this](NodeId to, uint32_t vcpu, const InterruptMessage& m, uint64_t epoch) {
            link_->send_ipi(to, vcpu, m, epoch);
        });
    host.deliver_ipi = [this](uint32_t vcpu, const InterruptMessage& m, uint64_t epoch) {
        if (vcpu >= topo_.num_vcpus()) {
            request_stop(StopReason::Failed, "an interrupt for vCPU " + std::to_string(vcpu) +
                                                 ", which the guest does not have, reached node " +
                                                 std::to_string(self_));
            return;
        }
        placement_->deliver(vcpu, m, epoch);
    };
    host.apply_addressing = [this](uint32_t vcpu, const Lapic::Addressing& a) {
        router_->apply_remote_addressing(vcpu, a);
    };
    host.serve_io = [this](IoKind kind, uint64_t addr, std::span<uint8_t> data, bool write) {
        if (kind == IoKind::Pio)
            return write ? pio_bus_.write(uint16_t(addr), data)
                         : pio_bus_.read(uint16_t(addr), data);
        return write ? mmio_bus_.write(addr, data) : mmio_bus_.read(addr, data);
    };
    host.serve_eoi = [this](uint8_t vec) { ioapic_->eoi(vec); };
    host.stop = [this](StopReason r, std::string why) { request_stop(r, std::move(why)); };
    link_ = std::make_unique<NodeLink>(self_, topo_.num_nodes, std::move(host));
    if (io_node()) {
        // The guest TSC counts from node 0's start-up, on node 0's host TSC; set before
        // any node can ask for it.
        uint64_t base = __builtin_ia32_rdtsc();
        link_->set_tsc_base(base);
        tsc_offset_ = uint64_t(0) - base;
    }

    CoherenceEngine::Options eo;
    eo.self = self_;
    eo.num_nodes = topo_.num_nodes;
    eo.homes = cluster_homes(cl);
    eo.hold_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(cl.page_hold).count());
    eo.on_error = [this](const Error& e) {
        request_stop(StopReason::Failed, "guest memory: " + e.message);
    };
    // On where KVM runs on shadow paging (kvm-amd npt=0, kvm-intel ept=0);
    // KERRVISOR_SHADOW_GUARD=on|off overrides that (tests run the guard where it is not
    // needed). Off on a shadow-paging host, the node warns that it runs unprotected.
    bool shadow = host_uses_shadow_paging();
    if (const char* e = std::getenv("KERRVISOR_SHADOW_GUARD")) {
        const std::string v = e;
        if (v != "on" && v != "off")
            return Error{"KERRVISOR_SHADOW_GUARD wants on or off, got '" + v + "'"};
        shadow = v == "on";
    }
    if (!shadow && host_uses_shadow_paging())
        KV_WARN(
            "node %u: KVM runs on shadow paging and the shadow-MMU guard is off: a guest "
            "page table another node rewrites can leave stale translations here "
            "(docs/memory.md, \"Page tables under shadow paging\")",
            self_);
    if (shadow) {
        // The guest's page tables move between nodes behind KVM's back (shadow_mmu.h).
        KV_INFO(
            "node %u: shadow-MMU guard on: a page table leaves this node only with the "
            "vCPUs held out, and KVM's shadow pages are dropped",
            self_);
        shadow_guard_ = std::make_unique<ShadowMmuGuard>(
            [this] { return zap_shadow_mmu(); },
            [this](const Error& e) { request_stop(StopReason::Failed, e.message); });
        eo.shadow = shadow_guard_.get();
    }
    auto engine = CoherenceEngine::create(*mem_, std::move(eo));
    if (!engine) return Error{"guest memory: " + engine.error().message};
    engine_ = std::move(engine).value();
    control_ = std::make_unique<NodeControl>(
        self_, topo_.num_nodes,
        [this](ControlOp op, const control::Json& args) { return serve_control(op, args); },
        [this](NodeId peer, const Error& why) {
            emit_event("NODE_LOST", {{"node", peer}, {"reason", why.message}});
        });
    // Each layer registers its own message types and their length rules (router.h).
    dispatch_ = std::make_unique<MessageRouter>();
    KV_TRY(dispatch_->add(*link_, "node link"));
    KV_TRY(dispatch_->add(*engine_, "coherence"));
    KV_TRY(dispatch_->add(*control_, "cluster control"));

    KV_INFO("node %u: connecting to %zu other node(s)", self_, cl.nodes.size() - 1);
    auto t = make_transport(cl.transport, config::transport_options(cfg_, digest, auth_.get()),
                            dispatch_.get());
    if (!t) return Error{"node " + std::to_string(self_) + ": " + t.error().message};
    transport_ = std::move(t).value();
    link_->attach(*transport_);
    KV_TRY(engine_->start(*transport_));
    router_->set_addressing_listener(
        [this](uint32_t vcpu, const Lapic::Addressing& a) { link_->announce_addressing(vcpu, a); });
    return {};
}

Status Machine::build(const config::VmConfig& cfg, const std::optional<ConfigDigest>& digest) {
    cfg_ = cfg;
    multi_ = cfg.cluster.enabled();
    self_ = multi_ ? cfg.cluster.self : 0;
    topo_ = multi_ ? GuestTopology::of(cfg.cluster) : GuestTopology::single(cfg.vcpus);
    if (topo_.num_vcpus() > 0 && topo_.max_apic_id() >= 0xFE)
        return Error{"vcpus: the nodes' vCPUs need APIC IDs up to " +
                     std::to_string(topo_.max_apic_id()) +
                     ", more than xAPIC allows (254 with the IOAPIC's)"};
    migratable_.resize(topo_.num_vcpus());
    for (uint32_t v = 0; v < topo_.num_vcpus(); ++v) migratable_[v] = cfg.may_migrate(v);
    // The user's input (memory, kernel, initrd) is checked before KVM is needed, so a
    // machine without a usable /dev/kvm still reports a bad kernel as such.
    auto mem = GuestMemory::create(cfg.memory);
    if (!mem) return Error{"memory: " + mem.error().message};
    mem_.emplace(std::move(mem).value());
    router_ = std::make_unique<IpiRouter>(topo_.apic_ids);
    if (io_node()) {
        ioapic_ = std::make_shared<Ioapic>(uint8_t(topo_.max_apic_id() + 1), *router_);
        pic_ = std::make_shared<Pic8259>([this](bool level) {
            // The PIC's INT pin is wired to the BSP's LINT0.
            if (!vcpus_.empty()) vcpus_[0]->set_extint(level);
        });
        KV_TRY(setup_devices(cfg));
    }
    // Guest memory is coherent from here on: the transport is up and node 0's writes
    // below fault through the coherence engine like any other access.
    if (multi_) KV_TRY(connect_cluster(digest));

    Result<Gpa> rsdp = Gpa(0);
    // A restore brings the guest's own tables back with the rest of its RAM.
    if (io_node() && cfg.restore.empty()) {
        boot::AcpiConfig acpi = multi_ ? cluster_acpi_config(*mem_, cfg.cluster, topo_)
                                       : boot::AcpiConfig::single_node(*mem_, cfg.vcpus);
        acpi.hpet = boot::AcpiHpet{Hpet::kBase, uint32_t(Hpet::capabilities())};
        rsdp = boot::write_acpi_tables(*mem_, acpi);
        if (!rsdp) return rsdp.error();
    }

    if (multi_) {
        const auto deadline = std::chrono::steady_clock::now() + cfg.cluster.connect_timeout;
        if (!io_node()) {
            auto sync = link_->sync_tsc(cfg.cluster.local, 32, deadline);
            if (!sync) return Error{"node " + std::to_string(self_) + ": " + sync.error().message};
            tsc_offset_ = sync->kvm_offset;
            KV_INFO("node %u: TSC %+lld ticks from node 0's (best round trip %llu ticks)", self_,
                    static_cast<long long>(sync->host_delta),
                    static_cast<unsigned long long>(sync->best_rtt));
        }
    }

    auto kvm = Kvm::open();
    if (kvm) {
        kvm_.emplace(std::move(kvm).value());
        KV_TRY(create_vm_and_vcpus());
    }
    if (!io_node()) {
        if (!kvm) return kvm.error();
        // This node's vCPUs exist and wait for INIT/SIPI from the BSP on node 0.
        return link_->send_ready();
    }

    // Without kvmclock the guest must be told its TSC frequency, or it calibrates against
    // timers whose reads are slow exits and may give up on the TSC (lab-notes.md).
    std::string cmdline = cfg.cmdline;
    const bool told = has_param(cmdline, "tsc_early_khz");
    if (!told || multi_) {
        Result<uint32_t> kvm_khz = Error{"no vCPU"};
        if (!vcpus_.empty()) kvm_khz = vcpus_[0]->fd().get_tsc_khz();
        uint64_t measured = measure_tsc_khz();
        uint64_t khz = choose_tsc_khz(kvm_khz ? *kvm_khz : 0, measured);
        if (kvm_khz && khz != *kvm_khz)
            KV_INFO("KVM reports a %u kHz TSC but it runs at %llu kHz: using the measurement",
                    *kvm_khz, static_cast<unsigned long long>(measured));
        // With time dilation the guest is told a TSC D times faster than it runs, so its
        // TSC-based time runs D times slower, like the PIT and the PM timer.
        if (khz && !told)
            cmdline =
                add_param(cmdline, "tsc_early_khz=" + std::to_string(khz * cfg.time_dilation));
        else if (!khz)
            KV_WARN("cannot tell the TSC frequency; the guest will calibrate it");
        if (multi_) {
            if (!khz)
                return Error{
                    "cannot tell the TSC frequency, which a guest over several nodes "
                    "needs (its PM timer runs on the TSC)"};
            tsc_khz_ = khz;
            KV_TRY(link_->announce_tsc_khz(khz));
        }
    }
    if (!cfg.restore.empty()) {
        if (!kvm) return kvm.error();
        return restore_snapshot(cfg.restore);
    }
    boot::LinuxBootConfig lb{cfg.kernel, cfg.initrd, cmdline, rsdp->value};
    auto info = boot::load_linux(*mem_, lb);
    if (!info) return info.error();
    if (!kvm) return kvm.error();

    kvm_regs regs{};
    kvm_sregs sregs{};
    KV_TRY(vcpus_[0]->fd().get_regs(regs));
    KV_TRY(vcpus_[0]->fd().get_sregs(sregs));
    info->cpu.apply(regs, sregs);
    KV_TRY(vcpus_[0]->set_boot_state(regs, sregs));
    // The BSP starts once every other node's vCPUs can take its INIT/SIPI.
    if (multi_)
        KV_TRY(link_->wait_ready(std::chrono::steady_clock::now() + cfg.cluster.connect_timeout));
    return {};
}

Status Machine::zap_shadow_mmu() {
    // Moving a memory slot makes KVM drop every shadow page of the VM (x86:
    // kvm_arch_flush_shadow_memslot zaps the whole MMU); the dummy slot goes back and forth
    // between two addresses.
    shadow_dummy_high_ = !shadow_dummy_high_;
    return vm_.set_user_memory_region(shadow_dummy_slot_,
                                      kShadowDummyGpa + (shadow_dummy_high_ ? 0x200000 : 0), 4096,
                                      shadow_dummy_.data());
}

Status Machine::create_vm_and_vcpus() {
    // Every vCPU of the guest on every node: those placed elsewhere are copies that wait,
    // never started, for a migration to bring their vCPU here (docs/migration.md).
    const uint32_t n = topo_.num_vcpus();
    auto max = kvm_->check_extension(KVM_CAP_MAX_VCPUS);
    if (max && *max > 0 && n > uint32_t(*max))
        return Error{"vcpus: " + std::to_string(n) + " is more than this host's KVM allows (" +
                     std::to_string(*max) + ")"};
    auto vm = kvm_->create_vm();
    if (!vm) return vm.error();
    vm_ = std::move(vm).value();
    if (auto s = vm_.set_tss_addr(kTssAddr); !s)
        KV_DEBUG("KVM_SET_TSS_ADDR refused (%s): fine off Intel", s.error().message.c_str());
    for (const auto& r : mem_->regions())
        KV_TRY(vm_.set_user_memory_region(r.slot, r.base.value, r.size, r.mapping.data()));
    if (shadow_guard_) {
        // A page no guest address reaches (far above RAM and MMIO), in a slot of its own.
        auto m = Mapping::anonymous(4096, 0);
        if (!m) return Error{"the shadow-MMU dummy slot: " + m.error().message};
        shadow_dummy_ = std::move(m).value();
        for (const auto& r : mem_->regions())
            shadow_dummy_slot_ = std::max(shadow_dummy_slot_, r.slot + 1);
        KV_TRY(vm_.set_user_memory_region(shadow_dummy_slot_, kShadowDummyGpa, 4096,
                                          shadow_dummy_.data()));
    }

    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();
    if (auto list = kvm_->msr_index_list())
        msr_indices_ = std::move(list).value();
    else
        KV_WARN("KVM_GET_MSR_INDEX_LIST: %s (a vCPU's MSRs cannot migrate)",
                list.error().message.c_str());
    for (uint32_t i = 0; i < n; ++i) {
        VcpuEnv env;
        env.io = this;
        env.router = router_.get();
        env.fatal = [this](uint32_t, bool guest_fault, const std::string& why) {
            request_stop(guest_fault ? StopReason::Crashed : StopReason::Failed,
                         multi_ ? why + " (node " + std::to_string(self_) + ")" : why);
        };
        if (io_node()) {
            env.pic_acknowledge = [this] { return pic_->acknowledge(); };
            env.eoi_level = [this](uint8_t vec) { ioapic_->eoi(vec); };
        } else {
            env.eoi_level = [this](uint8_t vec) { link_->forward_eoi(vec); };
        }
        if (multi_)
            env.topology = VcpuEnv::Topology{topo_.apic_ids[i], topo_.max_cores, topo_.core_bits};
        env.shadow = shadow_guard_.get();
        auto v = Vcpu::create(vm_, i, topo_.num_vcpus(), *supported, std::move(env));
        if (!v) return Error{"vCPU " + std::to_string(i) + ": " + v.error().message};
        if (tsc_offset_) {
            // One guest TSC on every node: node 0's host TSC, counted from its start-up.
            if (auto st = (*v)->fd().set_tsc_offset(*tsc_offset_); !st)
                return Error{"vCPU " + std::to_string(i) + ": " + st.error().message};
        }
        if (placement_) {
            placement_->attach(i, v->get());
            router_->attach_local(i, placement_->router_target(i));
        } else {
            router_->attach_local(i, v->get());
        }
        vcpus_.push_back(std::move(v).value());
    }
    if (tsc_offset_ && !vcpus_.empty()) {
        std::vector<kvm_msr_entry> tsc{kvm_msr_entry{0x10, 0, 0}};  // IA32_TIME_STAMP_COUNTER
        if (vcpus_[0]->fd().get_msrs(tsc))
            KV_INFO("node %u: guest TSC %llu at host TSC %llu", self_,
                    static_cast<unsigned long long>(tsc[0].data),
                    static_cast<unsigned long long>(__builtin_ia32_rdtsc()));
    }
    return {};
}

Status Machine::setup_devices(const config::VmConfig& cfg) {
    KV_TRY(mmio_bus_.insert(Ioapic::kBase, 0x1000, ioapic_, "ioapic"));
    KV_TRY(pio_bus_.insert(0x20, 2, pic_, "pic-master", 0x00));
    KV_TRY(pio_bus_.insert(0xA0, 2, pic_, "pic-slave", 0x80));
    KV_TRY(pio_bus_.insert(0x4D0, 2, pic_, "pic-elcr", 0x4B0));

    // With time dilation (cfg.time_dilation > 1) the timers the guest calibrates against
    // run slower than real time; the LAPIC timer needs nothing, since the guest measures
    // its rate against the TSC and the PM timer.
    const uint32_t dilation = cfg.time_dilation;
    // Dilated first, then pausable: the clock a snapshot saves and restores (restart_at) is
    // the one the devices read.
    device_clock_ = std::make_shared<PausableClock>(dilated(monotonic_ns, dilation));
    const MonotonicClock guest_clock = [c = device_clock_] { return c->now(); };
    // Over several nodes the PM timer is read on every node (read_pm_timer), so it runs on
    // what every node shares, the guest TSC, and counts from the guest TSC's zero.
    const MonotonicClock pm_clock =
        multi_ ? MonotonicClock([this] { return guest_tsc_ns(tsc_khz_.load()); }) : guest_clock;
    const std::optional<uint64_t> pm_origin = multi_ ? std::optional<uint64_t>(0) : std::nullopt;
    // The HPET too, so that its counter agrees with the TSC and the PM timer; every other
    // node serves counter reads itself (read_hpet_counter) from the state node 0 sends.
    Hpet::OnCounter on_hpet;
    if (multi_) on_hpet = [this](const Hpet::Counter& c) { link_->announce_hpet(c); };
    auto hpet = std::make_shared<Hpet>(pm_clock, on_hpet);
    KV_TRY(mmio_bus_.insert(Hpet::kBase, Hpet::kSize, hpet, "hpet"));
    pit_ = std::make_shared<Pit8254>(IrqLine(this, 0), guest_clock, dilation);
    KV_TRY(pio_bus_.insert(Pit8254::kBase, Pit8254::kSize, pit_, "pit"));
    KV_TRY(pio_bus_.insert(0x61, 1, std::make_shared<PortWindow>(pit_, Pit8254::kPort61Offset),
                           "port61"));

    auto rtc = std::make_shared<RtcCmos>();
    KV_TRY(pio_bus_.insert(RtcCmos::kBase, RtcCmos::kSize, rtc, "rtc"));
    auto reset = [this] { request_stop(StopReason::Reset, "guest reset"); };
    acpi_pm_ = std::make_shared<AcpiPm>(
        IrqLine(this, kSciIrq), [this] { request_stop(StopReason::PowerOff, "guest powered off"); },
        pm_clock, pm_origin);
    KV_TRY(pio_bus_.insert(AcpiPm::kBase, AcpiPm::kSize, acpi_pm_, "acpi-pm"));
    auto pci = std::make_shared<PciHost>(reset);
    KV_TRY(pio_bus_.insert(PciHost::kBase, PciHost::kSize, pci, "pci-host"));
    KV_TRY(pio_bus_.insert(PvPanic::kPort, 1, std::make_shared<PvPanic>([this](uint8_t ev) {
                               request_stop(StopReason::Crashed,
                                            (ev & PvPanic::kPanicked)
                                                ? "guest kernel panic (pvpanic)"
                                                : "guest crash dump loaded (pvpanic)");
                           }),
                           "pvpanic"));
    auto i8042 = std::make_shared<I8042>(reset);
    KV_TRY(pio_bus_.insert(0x60, 1, i8042, "i8042-data"));
    KV_TRY(pio_bus_.insert(0x64, 1, std::make_shared<PortWindow>(i8042, 4), "i8042-cmd"));

    Uart8250::Sink sink;
    switch (cfg.console.kind) {
        case config::ConsoleKind::Stdio:
            console_output_ = std::make_unique<ConsoleOutput>(Console::fd_sink(1));
            sink = console_output_->guest_sink();
            break;
        case config::ConsoleKind::File: {
            auto fd = Fd::check(
                ::open(cfg.console.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644),
                cfg.console.path.c_str());
            if (!fd) return Error{"console: " + fd.error().message};
            console_file_ = std::move(fd).value();
            sink = Console::fd_sink(console_file_.get());
            break;
        }
        case config::ConsoleKind::None:
            sink = [](std::span<const uint8_t>) {};
            break;
    }
    uart_ = std::make_shared<Uart8250>(IrqLine(this, kSerialIrq), std::move(sink));
    KV_TRY(pio_bus_.insert(Uart8250::kCom1Base, Uart8250::kSize, uart_, "com1"));
    devices_ = {{"ioapic", ioapic_}, {"pic", pic_},    {"hpet", hpet},
                {"pit", pit_},       {"rtc", rtc},     {"acpi-pm", acpi_pm_},
                {"pci-host", pci},   {"i8042", i8042}, {"com1", uart_}};
    return {};
}

Status Machine::read_guest_memory(uint64_t gpa, std::span<uint8_t> out) const {
    char range[64];
    std::snprintf(range, sizeof range, "0x%llx..0x%llx", static_cast<unsigned long long>(gpa),
                  static_cast<unsigned long long>(gpa + out.size() - 1));
    if (!mem_ || !mem_->host_ptr(Gpa(gpa), out.size()))
        return Error{std::string("guest memory ") + range + " is not guest RAM"};
    return mem_->read(Gpa(gpa), out);
}

uint64_t Machine::guest_tsc_ns(uint64_t khz) const {
    if (khz == 0 || !tsc_offset_) return 0;
    // While the guest is paused its TSC stands still for the devices too (pause_local).
    const uint64_t tsc = tsc_frozen_.load()
                             ? frozen_tsc_.load()
                             : __builtin_ia32_rdtsc() + *tsc_offset_ - tsc_shift_.load();
    const uint64_t dilation = std::max<uint64_t>(cfg_.time_dilation, 1);
    return uint64_t((unsigned __int128)tsc * 1'000'000u / khz / dilation);
}

bool Machine::read_pm_timer(uint16_t port, std::span<uint8_t> data) const {
    const uint64_t khz = link_->tsc_khz();
    constexpr uint64_t first = AcpiPm::kBase + AcpiPm::kPmTmrOffset;
    if (khz == 0 || port < first || port + data.size() > first + 4) return false;
    store_le(data, AcpiPm::timer_at(guest_tsc_ns(khz)) >> (8 * (port - first)));
    return true;
}

bool Machine::read_hpet_counter(uint64_t addr, std::span<uint8_t> data) const {
    const uint64_t khz = link_->tsc_khz();
    constexpr uint64_t first = Hpet::kBase + Hpet::kCounterOffset;
    if (khz == 0 || addr < first || addr + data.size() > first + 8) return false;
    store_le(data, link_->hpet_counter().at(guest_tsc_ns(khz)) >> (8 * (addr - first)));
    return true;
}

bool Machine::pio(uint16_t port, std::span<uint8_t> data, bool is_write) {
    if (!io_node()) {
        if (!is_write && read_pm_timer(port, data)) return true;
        return link_->forward_io(IoKind::Pio, port, data, is_write);
    }
    if (is_write) return pio_bus_.write(port, data);
    return pio_bus_.read(port, data);
}

bool Machine::mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) {
    if (!io_node()) {
        if (!is_write && read_hpet_counter(addr, data)) return true;
        return link_->forward_io(IoKind::Mmio, addr, data, is_write);
    }
    if (is_write) return mmio_bus_.write(addr, data);
    return mmio_bus_.read(addr, data);
}

void Machine::set_irq(uint32_t irq, bool level) {
    if (irq < 16) pic_->set_irq(irq, level);
    ioapic_->set_pin(irq == 0 ? 2 : irq, level);
}

void Machine::request_stop(StopReason reason, std::string detail) {
    {
        std::lock_guard lk(stop_mu_);
        if (stop_) return;  // the first reason wins
        stop_ = StopEvent{reason, detail};
        if (multi_) KV_INFO("node %u: the guest stops: %s", self_, detail.c_str());
    }
    // The other nodes stop too, for the same reason (nothing is sent if the stop came
    // from one of them). Told before run() returns: its shut_down() closes the
    // connections, and a node that sees the connection close first would report this
    // node lost instead of the guest's own stop.
    if (link_) link_->broadcast_stop(reason, detail);
    std::lock_guard lk(stop_mu_);
    stop_told_ = true;
    stop_cv_.notify_all();
}

StopEvent Machine::run() {
    if (uart_ && cfg_.console.kind == config::ConsoleKind::Stdio) {
        Console::Options co;
        co.monitor = monitor_;
        co.output = console_output_.get();
        auto c = Console::start(
            *uart_,
            [this] { request_stop(StopReason::UserQuit, "quit from the console (Ctrl-A x)"); }, co);
        if (!c) return StopEvent{StopReason::Failed, "console: " + c.error().message};
        console_ = std::move(c).value();
    }
    if (pit_) {
        if (auto s = pit_->start(); !s)
            return StopEvent{StopReason::Failed, "pit: " + s.error().message};
    }
    if (auto st = finish_restore(); !st) return StopEvent{StopReason::Failed, st.error().message};
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        if (!runs_here(uint32_t(i))) continue;
        if (restored_)
            vcpus_[i]->start_restored();
        else
            vcpus_[i]->start(i == 0);
    }
    {
        std::lock_guard g(started_mu_);
        vcpus_started_ = true;
    }
    started_cv_.notify_all();
    if (restored_ && control_) {
        // A restore over several nodes: the other nodes' vCPUs wait paused, restored
        // (RestoreVcpu); they take the same TSC shift as this node's and run.
        for (auto& a : control_->ask_all(ControlOp::Resume, {{"tsc_shift", restored_->tsc_shift}},
                                         std::chrono::milliseconds(10'000)))
            if (!a.reply)
                request_stop(StopReason::Failed, "restore: node " + std::to_string(a.node) +
                                                     " did not start: " + a.reply.error().message);
    }
    std::unique_lock lk(stop_mu_);
    if (multi_ && log_level() <= LogLevel::Info) {
        // Progress of a multi-node guest every 10 s (--log-level info): a node waiting on
        // another shows here first.
        while (!stop_cv_.wait_for(lk, std::chrono::seconds(10), [&] { return stop_told_; })) {
            lk.unlock();
            log_progress();
            lk.lock();
        }
    }
    stop_cv_.wait(lk, [&] { return stop_told_; });
    StopEvent ev = *stop_;
    lk.unlock();
    shut_down();
    return ev;
}

void Machine::log_progress() const {
    uint64_t exits = 0, halts = 0, injected = 0;
    for (const auto& v : vcpus_) {
        for (const auto& e : v->counters().exits) exits += e.load(std::memory_order_relaxed);
        halts += v->counters().halts.load(std::memory_order_relaxed);
        injected += v->counters().interrupts_injected.load(std::memory_order_relaxed);
    }
    DsmStats d = engine_ ? engine_->stats() : DsmStats{};
    const auto& l = link_->counters();
    KV_INFO("node %u: exits=%" PRIu64 " halts=%" PRIu64 " irqs=%" PRIu64 " | faults r=%" PRIu64
            " w=%" PRIu64 " wp=%" PRIu64 " pages in=%" PRIu64 " out=%" PRIu64 " | ipis out=%" PRIu64
            " in=%" PRIu64 " | io fwd=%" PRIu64 " served=%" PRIu64,
            self_, exits, halts, injected, d.read_missing_faults, d.write_missing_faults,
            d.write_protect_faults, d.pages_received, d.pages_sent, l.ipis_sent.load(),
            l.ipis_received.load(), l.io_forwarded.load(), l.io_served.load());
    if (engine_) {
        std::string hot;
        for (const auto& p : engine_->hottest_pages(4)) {
            char b[48];
            std::snprintf(b, sizeof b, " pfn 0x%" PRIx64 ":%u", p.pfn, p.faults);
            hot += b;
        }
        KV_INFO("node %u: fault latency p50 %" PRIu64 " us p90 %" PRIu64
                " us; most faulted pages:%s",
                self_, d.fault_latency.quantile_ns(0.5) / 1000,
                d.fault_latency.quantile_ns(0.9) / 1000, hot.c_str());
    }
}

void Machine::print_stats(FILE* out) const {
    if (multi_) std::fprintf(out, "--- node %u ---\n", self_);
    // The vCPUs that ran here (a copy that never did has nothing to say).
    for (const auto& v : vcpus_)
        if (v->started_ns() != 0) v->print_counters(out);
    router_->print_counters(out);
    if (ioapic_) std::fprintf(out, "ioapic: interrupts raised=%" PRIu64 "\n", ioapic_->raised());
    if (link_) link_->print_counters(out);
    if (dsm_stats_) dsm_stats_->print(out);
}

}  // namespace kv
