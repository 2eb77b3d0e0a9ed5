// kv-dsm-kvm-node: one node of a multi-node freestanding test guest (docs/testing-dsm-kvm.md).
//
//   kv-dsm-kvm-node --node K --peers H0:P0,H1:P1,... [--listen-fd FD] [--per-node V]
//                   [--iters N] [--rounds R] [--pingpong-rounds R] [--vmm-rounds R]
//                   [--timeout S] [--kvm PATH]
//   kv-dsm-kvm-node --launch N [--per-node V] [...]   start N nodes on 127.0.0.1, check them
//   kv-dsm-kvm-node --launch N --netns NS0,... --hosts A0,... [...]
//                                                     node K in network namespace NSK
//                                                     (a file such as /run/netns/x),
//                                                     listening on address AK
//   kv-dsm-kvm-node --probe [--kvm PATH]              can this KVM run the guest?
//
// A node opens its own KVM VM over 16 MiB of guest RAM kept coherent with the other nodes
// by a CoherenceEngine over the TCP transport (node K homes the K-th slice), creates every
// vCPU of the guest (nodes x per-node) and runs only its own: vCPU i runs on node
// i / per-node. Node 0 writes the guest image, the parameter block, the boot GDT and page
// tables (through the engine, like any VMM access), then sends a start message (Ping,
// request_id kTagStart) to every node; each node then enters its vCPUs directly at the
// guest's 64-bit multi-node entry (RDI = vCPU index). The guest runs the phases of
// protocol.h ("Multi-node runs") separated by barriers in guest RAM, and the VMMs check
// what only they can see: the counter read by node 0's VMM, the local state of the inval
// page on every node at the guest's two marks, the engine counters, and node 0's VMM
// reading what a vCPU of node 1 just wrote (the vCPU's port write travels to node 0 as a
// Ping with request_id kTagPublish).
//
// Exit status: 0 if every check passed; 1 with a one-line reason otherwise (2 for
// coherence or transport errors, 3 for a timeout). Every wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "guest-image/freestanding/protocol.h"
#include "interconnect/payloads.h"
#include "interconnect/transport_factory.h"
#include "memory/coherence_engine.h"
#include "tests/coherence/peer_list.h"
#include "vcpu/ipi_router.h"
#include "vcpu/kvm.h"
#include "vcpu/vcpu.h"
#include "vmm/boot/boot_cpu.h"
#include "vmm/devices/clock.h"

extern "C" const uint8_t kv_dsm_guest_image_begin[];
extern "C" const uint8_t kv_dsm_guest_image_end[];

namespace kv {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kMemorySize = 16ull << 20;
constexpr uint64_t kTssAddr = 0xFFFBD000;  // as tests/kvm/kvm_harness.cc
constexpr uint64_t kTagStart = 1;          // Ping request_id: node 0 loaded the guest
constexpr uint64_t kTagPublish = 2;        // Ping request_id: vmm phase, arg = round

std::string g_who = "kv-dsm-kvm-node";

[[noreturn]] void die(int code, const std::string& what) {
    std::fprintf(stdout, "%s: %s\n", g_who.c_str(), what.c_str());
    std::fflush(stdout);
    // vCPU threads may be blocked in faults that will never be served: leave at once.
    std::_Exit(code);
}

const char* phase_name(uint32_t p) {
    static const char* names[] = {"start", "counter", "mp", "pingpong", "inval", "vmm"};
    return p <= KVT_DSM_PHASES ? names[p] : "?";
}

std::string status_name(uint32_t s) {
    switch (s) {
        case KVT_EXIT_PASS:
            return "PASS";
        case KVT_EXIT_DSM_TIMEOUT:
            return "KVT_EXIT_DSM_TIMEOUT (a wait in guest RAM ran past its bound)";
        case KVT_EXIT_DSM_MISMATCH:
            return "KVT_EXIT_DSM_MISMATCH (a check in the guest failed)";
        case KVT_EXIT_BAD_SCENARIO:
            return "KVT_EXIT_BAD_SCENARIO";
        default:
            if (s >= KVT_EXIT_EXCEPTION_BASE && s < KVT_EXIT_EXCEPTION_BASE + 32)
                return "guest exception " + std::to_string(s - KVT_EXIT_EXCEPTION_BASE);
            return "status " + std::to_string(s);
    }
}

struct Config {
    NodeId self = 0;
    uint32_t nodes = 0;
    uint32_t per_node = 1;
    uint32_t iters = 2000;
    uint32_t rounds = 10000;
    uint32_t pingpong_rounds = 2000;
    uint32_t vmm_rounds = 200;
    int timeout_s = 240;
    std::string kvm = "/dev/kvm";
    std::vector<PeerAddress> peers;
    int listen_fd = -1;
    std::vector<std::string> netns;  // launcher: node K's network namespace file
    std::vector<std::string> hosts;  // launcher: node K's address (default 127.0.0.1)
    uint32_t total() const { return nodes * per_node; }
};

// Page homes as HomeMap::even makes them: node K homes pages [P*K/N, P*(K+1)/N).
uint64_t slice_end(uint32_t home, uint32_t nodes) {
    return kMemorySize / kPageSize * (home + 1) / nodes * kPageSize;
}
uint64_t word_gpa(uint32_t home, uint32_t j, uint32_t nodes) {
    return slice_end(home, nodes) - (j + 1) * kPageSize;
}

// What the guest keeps in page `pfn` (the memory map of guest-image/freestanding/protocol.h),
// so that a report of the most faulted pages says which structure bounces.
std::string page_role(uint64_t pfn, uint32_t nodes) {
    const uint64_t gpa = pfn * kPageSize;
    for (uint32_t home = 0; home < nodes; ++home)
        for (uint32_t j = 0; j <= KVT_DSM_WORD_MP_ACK + KVT_DSM_MAX_VCPUS; ++j)
            if (gpa == word_gpa(home, j, nodes))
                return "shared word " + std::to_string(j) + " of node " + std::to_string(home);
    if (gpa >= 0x9000 && gpa < 0xF000) return "page table";
    if (gpa < 0x1000) return "boot GDT";
    if (gpa >= KVT_AP_STACK_TOP - KVT_DSM_MAX_VCPUS * KVT_AP_STACK_SIZE && gpa < KVT_AP_STACK_TOP)
        return "vCPU stack";
    if (gpa == KVT_DSM_PARAMS_GPA) return "params";
    if (gpa >= KVT_IMAGE_GPA && gpa < KVT_IMAGE_GPA + 0x100000) return "guest image";
    return "other";
}

class Node;

// The I/O handler of one vCPU: knows which vCPU it serves.
class VcpuIo : public IoHandler {
  public:
    VcpuIo(Node* n, uint32_t index) : node_(n), index_(index) {}
    bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) override;
    bool mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) override;

  private:
    Node* node_;
    uint32_t index_;
};

struct VcpuRecord {
    std::optional<uint32_t> exit_status;
    uint32_t last_mark = 0;
    std::array<uint32_t, KVT_DSM_PHASES + 1> mismatches{};
};

struct PhaseRecord {
    uint64_t begin_ns = 0, end_ns = 0;
    DsmStats begin, end;
};

class Node : public MessageHandler {
  public:
    explicit Node(Config c) : cfg_(std::move(c)) {}

    int run_node();
    Result<std::string> probe();

    // vCPU thread side.
    bool pio(uint32_t vcpu, uint16_t port, std::span<uint8_t> data, bool is_write);
    [[noreturn]] void unexpected(uint32_t vcpu, const std::string& what) {
        fail(1, "vCPU " + std::to_string(vcpu) + ": unexpected " + what);
    }

    // Transport receive thread (messages the engine does not take).
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override;
    void on_peer_lost(NodeId, const Error&) override {}
    // Shutdown, and Ping as a tagged signal (start, publish); no payload of its own.
    std::span<const MessageSpec> messages() const override { return kSpecs; }
    static constexpr MessageSpec kSpecs[] = {
        {MsgType::Shutdown, {PayloadRule::Kind::Fixed, sizeof(ShutdownPayload)}},
        {MsgType::Ping, {PayloadRule::Kind::UpTo, kMaxPayload}}};

  private:
    Status build_machine(bool with_engine);
    Status load_guest(const void* params, size_t params_size, uint64_t params_gpa);
    Status enter(uint32_t vcpu, uint64_t rip, uint64_t rsp, uint64_t rdi);
    bool local(uint32_t vcpu) const { return vcpu / cfg_.per_node == cfg_.self; }
    void on_mark(uint32_t vcpu, uint32_t id);
    void check(bool ok, const std::string& what);
    [[noreturn]] void fail(int code, const std::string& why);
    void send_ping(NodeId to, uint64_t tag, uint64_t arg);
    void serve_publish(uint64_t r);
    void finish_handshake(bool ok);
    void print_phases();
    void print_hottest_pages();

    Config cfg_;
    std::optional<GuestMemory> mem_;
    std::unique_ptr<CoherenceEngine> engine_;
    std::unique_ptr<Transport> transport_;
    std::atomic<Transport*> live_{nullptr};
    std::optional<Kvm> kvm_;
    VmFd vm_;
    std::unique_ptr<IpiRouter> router_;
    std::vector<std::unique_ptr<VcpuIo>> ios_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;  // destroyed (joined) first

    std::mutex mu_;
    std::condition_variable cv_;
    bool started_ = false;
    int shutdowns_ = 0;
    std::deque<uint64_t> publishes_;
    std::optional<std::string> fatal_;
    std::vector<VcpuRecord> rec_;
    std::array<PhaseRecord, KVT_DSM_PHASES + 1> phases_{};
    std::optional<DsmStats> inval_before_, inval_after_;
    std::vector<std::string> failures_;
    std::string serial_;
    uint64_t vmm_checked_ = 0;
};

bool VcpuIo::pio(uint16_t port, std::span<uint8_t> data, bool is_write) {
    return node_->pio(index_, port, data, is_write);
}
bool VcpuIo::mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s of %zu bytes at MMIO %#llx", is_write ? "write" : "read",
                  data.size(), static_cast<unsigned long long>(addr));
    node_->unexpected(index_, buf);
}

void Node::fail(int code, const std::string& why) {
    // Stop the whole guest: tell every peer why (best effort), then leave.
    std::string msg = "node " + std::to_string(cfg_.self) + ": " + why;
    if (Transport* t = live_.load()) {
        MsgHeader h;
        h.type = static_cast<uint16_t>(MsgType::Shutdown);
        auto bye = ShutdownPayload::make(code, msg);
        auto bytes = std::span(reinterpret_cast<const uint8_t*>(&bye), sizeof bye);
        for (const auto& p : cfg_.peers)
            if (p.id != cfg_.self) (void)t->send(p.id, h, bytes);
    }
    die(code, msg);
}

void Node::check(bool ok, const std::string& what) {
    if (ok) return;
    std::lock_guard lk(mu_);
    std::printf("node %u: CHECK FAILED: %s\n", cfg_.self, what.c_str());
    failures_.push_back(what);
}

void Node::send_ping(NodeId to, uint64_t tag, uint64_t arg) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Ping);
    h.request_id = tag;
    h.arg = arg;
    if (auto st = transport_->send(to, h, {}); !st)
        fail(2, "send to node " + std::to_string(to) + ": " + st.error().message);
}

void Node::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) {
    auto type = static_cast<MsgType>(h.type);
    if (type == MsgType::Shutdown) {
        ShutdownPayload bye;
        if (p.size() == sizeof bye) std::memcpy(&bye, p.data(), sizeof bye);
        if (bye.exit_code != 0)
            die(2, "node " + std::to_string(cfg_.self) + ": stopped by node " +
                       std::to_string(from) + ": " +
                       std::string(bye.reason,
                                   std::min<size_t>(bye.reason_length, sizeof bye.reason)));
        std::lock_guard lk(mu_);
        ++shutdowns_;
        cv_.notify_all();
        return;
    }
    if (type != MsgType::Ping) return;
    std::lock_guard lk(mu_);
    if (h.request_id == kTagStart && from == 0) {
        started_ = true;
    } else if (h.request_id == kTagPublish && cfg_.self == 0) {
        // Not here: this is the receive thread, which must never touch guest memory.
        publishes_.push_back(h.arg);
    }
    cv_.notify_all();
}

Status Node::build_machine(bool with_engine) {
    auto gm = GuestMemory::create(kMemorySize);
    if (!gm) return gm.error();
    mem_.emplace(std::move(gm).value());
    if (with_engine) {
        // The engine first: it registers the untouched RAM with userfaultfd.
        CoherenceEngine::Options eo;
        eo.self = cfg_.self;
        eo.num_nodes = cfg_.nodes;
        eo.next = this;
        eo.on_error = [this](const Error& e) { fail(2, "coherence: " + e.message); };
        auto eng = CoherenceEngine::create(*mem_, eo);
        if (!eng) return eng.error();
        engine_ = std::move(eng).value();
        TransportOptions topts;
        topts.self = cfg_.self;
        topts.nodes = cfg_.peers;
        if (cfg_.listen_fd >= 0) topts.listener = std::make_shared<const Fd>(cfg_.listen_fd);
        auto tr = make_transport("tcp", topts, engine_.get());
        if (!tr) return tr.error();
        transport_ = std::move(tr).value();
        live_ = transport_.get();
        KV_TRY(engine_->start(*transport_));
    }
    auto kvm = Kvm::open(cfg_.kvm.c_str());
    if (!kvm) return kvm.error();
    kvm_.emplace(std::move(kvm).value());
    auto vm = kvm_->create_vm();
    if (!vm) return vm.error();
    vm_ = std::move(vm).value();
    (void)vm_.set_tss_addr(kTssAddr);  // refused off Intel, where KVM does not need it
    for (const auto& r : mem_->regions())
        KV_TRY(vm_.set_user_memory_region(r.slot, r.base.value, r.size, r.mapping.data()));
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();

    const uint32_t n = cfg_.total();
    rec_.resize(n);
    router_ = std::make_unique<IpiRouter>(n);
    // vCPUs of other nodes are created but never entered; the guest sends no IPIs, so
    // the router's remote sink reports any as unexpected.
    router_->set_remote_sink([this](uint32_t v, const InterruptMessage&) {
        unexpected(v, "interrupt for a vCPU of another node");
    });
    for (uint32_t i = 0; i < n; ++i) {
        ios_.push_back(std::make_unique<VcpuIo>(this, i));
        VcpuEnv env;
        env.io = ios_.back().get();
        env.router = router_.get();
        env.fatal = [this](uint32_t vcpu, bool, const std::string& why) {
            std::lock_guard lk(mu_);
            if (!fatal_) fatal_ = "vCPU " + std::to_string(vcpu) + ": " + why;
            cv_.notify_all();
        };
        env.pic_acknowledge = [this, i]() -> uint8_t {
            unexpected(i, "PIC acknowledge with no PIC");
        };
        env.eoi_level = [this, i](uint8_t vec) {
            unexpected(i, "level-triggered EOI of vector " + std::to_string(vec));
        };
        auto v = Vcpu::create(vm_, i, n, *supported, std::move(env));
        if (!v) return Error{"vCPU " + std::to_string(i) + ": " + v.error().message};
        if (local(i)) router_->attach_local(i, v->get());
        vcpus_.push_back(std::move(v).value());
    }
    return {};
}

Status Node::load_guest(const void* params, size_t params_size, uint64_t params_gpa) {
    std::span<const uint8_t> image(kv_dsm_guest_image_begin,
                                   size_t(kv_dsm_guest_image_end - kv_dsm_guest_image_begin));
    if (image.empty()) return Error{"the embedded guest image is empty"};
    KV_TRY(mem_->write(Gpa(KVT_IMAGE_GPA), image));
    KV_TRY(
        mem_->write(Gpa(params_gpa), std::span(static_cast<const uint8_t*>(params), params_size)));
    KV_TRY(boot::write_boot_gdt(*mem_));
    return boot::write_identity_page_tables(*mem_);
}

Status Node::enter(uint32_t vcpu, uint64_t rip, uint64_t rsp, uint64_t rdi) {
    Vcpu& v = *vcpus_[vcpu];
    kvm_regs regs{};
    kvm_sregs sregs{};
    KV_TRY(v.fd().get_regs(regs));
    KV_TRY(v.fd().get_sregs(sregs));
    boot::BootCpuState{rip, 0, rsp}.apply(regs, sregs);
    regs.rdi = rdi;
    KV_TRY(v.set_boot_state(regs, sregs));
    v.start(true);
    return {};
}

bool Node::pio(uint32_t vcpu, uint16_t port, std::span<uint8_t> data, bool is_write) {
    uint32_t value = 0;
    std::memcpy(&value, data.data(), std::min<size_t>(data.size(), sizeof value));
    const bool w4 = is_write && data.size() == 4;
    if (port == KVT_PORT_SERIAL && is_write && data.size() == 1) {
        std::lock_guard lk(mu_);
        serial_.push_back(char(data[0]));
    } else if (port == KVT_PORT_EXIT && w4) {
        std::lock_guard lk(mu_);
        if (!rec_[vcpu].exit_status) rec_[vcpu].exit_status = value;
        cv_.notify_all();
    } else if (port == KVT_PORT_MARK && w4) {
        on_mark(vcpu, value);
    } else if (port == KVT_PORT_CLOCK && !is_write && data.size() == 4) {
        uint32_t us = uint32_t(monotonic_ns() / 1000);
        std::memcpy(data.data(), &us, sizeof us);
    } else if (port == KVT_PORT_YIELD && w4) {
        // A polite spin (see guest.c, dsm_wait_ge): backoff, not synchronisation.
        if (value < 256)
            sched_yield();
        else
            std::this_thread::sleep_for(std::chrono::microseconds(5));
    } else if (port == KVT_PORT_DSM_MISMATCHES && w4) {
        std::lock_guard lk(mu_);
        uint32_t phase = rec_[vcpu].last_mark & 0xFF;
        if (phase <= KVT_DSM_PHASES) rec_[vcpu].mismatches[phase] += value;
    } else if (port == KVT_PORT_DSM_PUBLISH && w4) {
        send_ping(0, kTagPublish, value);
    } else {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%s of %zu bytes at port %#x", is_write ? "write" : "read",
                      data.size(), port);
        unexpected(vcpu, buf);
    }
    return true;
}

void Node::on_mark(uint32_t vcpu, uint32_t id) {
    const uint64_t now = monotonic_ns();
    const bool first = vcpu % cfg_.per_node == 0;  // this node's first vCPU
    {
        std::lock_guard lk(mu_);
        if ((id & 0xF00) == 0x100 || (id & 0xF00) == 0x200) rec_[vcpu].last_mark = id;
    }
    const uint32_t phase = id & 0xFF;
    if (engine_ && first && phase <= KVT_DSM_PHASES) {
        if (id == KVT_DSM_MARK_BEGIN(phase)) {
            phases_[phase].begin_ns = now;
            phases_[phase].begin = engine_->stats();
        } else if (id == KVT_DSM_MARK_END(phase)) {
            phases_[phase].end_ns = now;
            phases_[phase].end = engine_->stats();
        }
    }
    if (!engine_) return;
    const uint32_t nodes = cfg_.nodes;
    if (id == KVT_DSM_MARK_END(KVT_DSM_PHASE_COUNTER) && cfg_.self == 0 && vcpu == 0) {
        // Node 0's VMM reads the counter through guest memory (this vCPU thread is VMM code
        // here; the read may fault and be served by the counter's home).
        uint64_t got = 0;
        check(mem_->read_obj(Gpa(word_gpa(nodes - 1, KVT_DSM_WORD_COUNTER, nodes)), got).ok(),
              "counter: VMM read failed");
        const uint64_t want = uint64_t(cfg_.iters) * cfg_.total();
        check(got == want,
              "counter: VMM read " + std::to_string(got) + ", expected " + std::to_string(want));
        std::printf("node 0: counter %llu (expected %llu) read by the VMM\n",
                    static_cast<unsigned long long>(got), static_cast<unsigned long long>(want));
    }
    const uint64_t pfn = word_gpa(nodes - 1, KVT_DSM_WORD_INVAL, nodes) / kPageSize;
    if (id == KVT_DSM_MARK_INVAL_READ) {
        LocalState s = engine_->local_state(pfn);
        check(s == LocalState::S, std::string("inval: after every vCPU read the page it is ") +
                                      to_string(s) + " here, expected S");
        std::lock_guard lk(mu_);
        if (!inval_before_) inval_before_ = engine_->stats();
    } else if (id == KVT_DSM_MARK_INVAL_WRITTEN) {
        LocalState s = engine_->local_state(pfn);
        LocalState want = cfg_.self == nodes - 1 ? LocalState::M : LocalState::I;
        check(s == want, std::string("inval: after the write the page is ") + to_string(s) +
                             " here, expected " + to_string(want));
        std::lock_guard lk(mu_);
        if (!inval_after_) inval_after_ = engine_->stats();
    }
}

void Node::serve_publish(uint64_t r) {
    const uint32_t nodes = cfg_.nodes;
    uint64_t got = 0;
    check(mem_->read_obj(Gpa(word_gpa(nodes - 1, KVT_DSM_WORD_VMM, nodes)), got).ok(),
          "vmm: VMM read failed");
    check(got == KVT_DSM_VMM_VALUE(r), "vmm: round " + std::to_string(r) + ": the VMM read " +
                                           std::to_string(got) + ", expected " +
                                           std::to_string(KVT_DSM_VMM_VALUE(r)));
    // The acknowledgement, a VMM write to guest memory; one aligned store, so the guest,
    // which waits for ack >= r, never sees a torn value.
    auto* ack = reinterpret_cast<uint64_t*>(
        mem_->host_ptr(Gpa(word_gpa(0, KVT_DSM_WORD_VMM, nodes)), sizeof(uint64_t)));
    __atomic_store_n(ack, r, __ATOMIC_RELEASE);
    ++vmm_checked_;
}

void Node::finish_handshake(bool ok) {
    // Every local vCPU has passed the guest's last barrier. Stopping the engine ends its
    // fault thread; its receive side keeps serving peers until every node is done.
    engine_->stop();
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Shutdown);
    auto bye = ShutdownPayload::make(ok ? 0 : 1, "done");
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(&bye), sizeof bye);
    auto wait = [&](int n) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, std::chrono::seconds(30), [&] { return shutdowns_ >= n; });
    };
    if (cfg_.self != 0) {
        if (auto st = transport_->send(0, h, bytes); !st) die(2, "send Shutdown to node 0");
        if (!wait(1)) die(3, "node " + std::to_string(cfg_.self) + ": no Shutdown from node 0");
    } else {
        if (!wait(int(cfg_.nodes) - 1)) die(3, "node 0: timeout waiting for the nodes' Shutdowns");
        for (uint32_t k = 1; k < cfg_.nodes; ++k) (void)transport_->send(k, h, bytes);
    }
}

// The pages with the most faults on this node, with what the guest keeps there: a page
// that bounces between nodes (a shared word by design; a page table would be the lab's
// nested-paging artefact, docs/testing-dsm-kvm.md) shows at the top.
void Node::print_hottest_pages() {
    std::string line;
    for (const auto& p : engine_->hottest_pages(6)) {
        char b[96];
        std::snprintf(b, sizeof b, "%s %#llx (%s) %u", line.empty() ? "" : ",",
                      static_cast<unsigned long long>(p.pfn), page_role(p.pfn, cfg_.nodes).c_str(),
                      p.faults);
        line += b;
    }
    std::printf("node %u: most faulted pages:%s\n", cfg_.self, line.c_str());
}

void Node::print_phases() {
    for (uint32_t p = 1; p <= KVT_DSM_PHASES; ++p) {
        const PhaseRecord& r = phases_[p];
        const DsmStats &a = r.begin, &b = r.end;
        std::printf(
            "node %u: phase %-8s %.3f s, faults %llu (read %llu, write %llu, wp %llu), pages "
            "in %llu out %llu, inv sent %llu received %llu\n",
            cfg_.self, phase_name(p), double(r.end_ns - r.begin_ns) / 1e9,
            static_cast<unsigned long long>(b.read_missing_faults + b.write_missing_faults +
                                            b.write_protect_faults - a.read_missing_faults -
                                            a.write_missing_faults - a.write_protect_faults),
            static_cast<unsigned long long>(b.read_missing_faults - a.read_missing_faults),
            static_cast<unsigned long long>(b.write_missing_faults - a.write_missing_faults),
            static_cast<unsigned long long>(b.write_protect_faults - a.write_protect_faults),
            static_cast<unsigned long long>(b.pages_received - a.pages_received),
            static_cast<unsigned long long>(b.pages_sent - a.pages_sent),
            static_cast<unsigned long long>(b.invalidations_sent - a.invalidations_sent),
            static_cast<unsigned long long>(b.invalidations_received - a.invalidations_received));
    }
}

int Node::run_node() {
    g_who = "kv-dsm-kvm-node";
    const auto t0 = Clock::now();
    if (auto st = build_machine(true); !st) fail(2, "setting up: " + st.error().message);
    const uint32_t n = cfg_.total();
    if (cfg_.self == 0) {
        kvt_dsm_params params{};
        params.nodes = cfg_.nodes;
        params.per_node = cfg_.per_node;
        params.iters = cfg_.iters;
        params.rounds = cfg_.rounds;
        params.pingpong_rounds = cfg_.pingpong_rounds;
        params.vmm_rounds = cfg_.vmm_rounds;
        params.wait_us = uint32_t(cfg_.timeout_s) * 1000000u / 2;
        for (uint32_t k = 0; k < cfg_.nodes; ++k) params.slice_end[k] = slice_end(k, cfg_.nodes);
        if (auto st = load_guest(&params, sizeof params, KVT_DSM_PARAMS_GPA); !st)
            fail(2, "loading the guest: " + st.error().message);
        for (uint32_t k = 1; k < cfg_.nodes; ++k) send_ping(k, kTagStart, 0);
    } else {
        std::unique_lock lk(mu_);
        if (!cv_.wait_for(lk, std::chrono::seconds(cfg_.timeout_s), [&] { return started_; })) {
            lk.unlock();
            fail(3, "timeout waiting for node 0's start message");
        }
    }
    const double setup_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto t_run = Clock::now();
    for (uint32_t i = 0; i < n; ++i)
        if (local(i))
            if (auto st = enter(i, KVT_DSM_ENTRY_GPA, KVT_DSM_STACK_TOP(i), i); !st)
                fail(2, "entering vCPU " + std::to_string(i) + ": " + st.error().message);

    // Wait for every local vCPU's exit status; node 0 also serves the vmm phase.
    const auto deadline = Clock::now() + std::chrono::seconds(cfg_.timeout_s);
    std::unique_lock lk(mu_);
    for (;;) {
        if (fatal_) {
            std::string f = *fatal_;
            lk.unlock();
            fail(2, f);
        }
        while (!publishes_.empty()) {
            uint64_t r = publishes_.front();
            publishes_.pop_front();
            lk.unlock();  // guest memory access: may fault; never under mu_
            serve_publish(r);
            lk.lock();
        }
        bool all = true;
        for (uint32_t i = 0; i < n; ++i)
            if (local(i) && !rec_[i].exit_status) all = false;
        if (all) break;
        if (Clock::now() > deadline) {
            std::string still;
            for (uint32_t i = 0; i < n; ++i)
                if (local(i) && !rec_[i].exit_status)
                    still += " vCPU " + std::to_string(i) + " (last mark " +
                             std::to_string(rec_[i].last_mark) + ")";
            lk.unlock();
            // What the engine was doing: counters and the shared words' local states.
            engine_->stats().print(stdout);
            print_hottest_pages();
            for (uint32_t home = 0; home < cfg_.nodes; ++home)
                for (uint32_t j = 0; j <= KVT_DSM_WORD_MP_ACK + 1; ++j) {
                    uint64_t pfn = word_gpa(home, j, cfg_.nodes) / kPageSize;
                    std::printf("node %u: page %#llx (home %u, word %u): %s\n", cfg_.self,
                                static_cast<unsigned long long>(pfn), home, j,
                                to_string(engine_->local_state(pfn)));
                }
            fail(3, "timeout after " + std::to_string(cfg_.timeout_s) + " s:" + still);
        }
        cv_.wait_until(lk, deadline, [&] {
            if (fatal_ || !publishes_.empty()) return true;
            for (uint32_t i = 0; i < n; ++i)
                if (local(i) && !rec_[i].exit_status) return false;
            return true;
        });
    }
    lk.unlock();
    const double run_s = std::chrono::duration<double>(Clock::now() - t_run).count();
    for (auto& v : vcpus_) v->request_stop();
    for (auto& v : vcpus_) v->join();

    // The guest's verdicts, then the VMM-side checks that remain.
    for (uint32_t i = 0; i < n; ++i) {
        if (!local(i)) continue;
        const VcpuRecord& r = rec_[i];
        check(*r.exit_status == KVT_EXIT_PASS, "vCPU " + std::to_string(i) + " ended with " +
                                                   status_name(*r.exit_status) + " in phase " +
                                                   phase_name(r.last_mark & 0xFF));
        for (uint32_t p = 1; p <= KVT_DSM_PHASES; ++p)
            check(r.mismatches[p] == 0, "vCPU " + std::to_string(i) + ": " +
                                            std::to_string(r.mismatches[p]) +
                                            " failed checks in phase " + phase_name(p));
    }
    if (cfg_.self == 0)
        check(vmm_checked_ == cfg_.vmm_rounds, "vmm: node 0's VMM checked " +
                                                   std::to_string(vmm_checked_) + " of " +
                                                   std::to_string(cfg_.vmm_rounds) + " rounds");
    check(inval_before_ && inval_after_, "inval: the guest's marks did not arrive");
    if (inval_before_ && inval_after_) {
        const DsmStats &a = *inval_before_, &b = *inval_after_;
        if (cfg_.self == cfg_.nodes - 1) {
            check(b.invalidations_sent - a.invalidations_sent >= cfg_.nodes - 1,
                  "inval: the home sent " +
                      std::to_string(b.invalidations_sent - a.invalidations_sent) + " Invs for " +
                      std::to_string(cfg_.nodes - 1) + " sharers");
        } else {
            check(b.invalidations_received > a.invalidations_received,
                  "inval: no Inv received by this sharer");
            check(b.local_invalidations > a.local_invalidations,
                  "inval: no copy dropped on this sharer");
        }
        std::printf(
            "node %u: inval: Inv sent %llu received %llu, copies dropped %llu\n", cfg_.self,
            static_cast<unsigned long long>(b.invalidations_sent - a.invalidations_sent),
            static_cast<unsigned long long>(b.invalidations_received - a.invalidations_received),
            static_cast<unsigned long long>(b.local_invalidations - a.local_invalidations));
    }
    if (cfg_.self == 0)
        std::printf("node 0: vmm: the VMM read %llu values written by vCPU %u on node 1\n",
                    static_cast<unsigned long long>(vmm_checked_), cfg_.per_node);
    std::printf("node %u: setup %.3f s, guest run %.3f s\n", cfg_.self, setup_s, run_s);
    print_phases();
    print_hottest_pages();
    bool ok;
    {
        std::lock_guard g(mu_);
        ok = failures_.empty();
    }
    finish_handshake(ok);
    engine_->stats().print(stdout);
    transport_->shutdown();
    if (!ok) {
        std::lock_guard g(mu_);
        die(1, "node " + std::to_string(cfg_.self) + ": FAILED: " + failures_.front());
    }
    std::printf("node %u: PASSED\n", cfg_.self);
    std::fflush(stdout);
    return 0;
}

// One vCPU, no engine: the existing serial scenario at the image's BSP entry.
Result<std::string> Node::probe() {
    cfg_.nodes = 1;
    cfg_.per_node = 1;
    KV_TRY(build_machine(false));
    kvt_params params{};
    params.scenario = KVT_SCENARIO_SERIAL;
    KV_TRY(load_guest(&params, sizeof params, KVT_PARAMS_GPA));
    KV_TRY(enter(0, KVT_IMAGE_GPA, KVT_BSP_STACK_TOP, 0));
    std::unique_lock lk(mu_);
    bool ended =
        cv_.wait_for(lk, std::chrono::seconds(10), [&] { return fatal_ || rec_[0].exit_status; });
    std::string serial = serial_;
    std::optional<std::string> fatal = fatal_;
    std::optional<uint32_t> status = rec_[0].exit_status;
    lk.unlock();
    vcpus_[0]->request_stop();
    vcpus_[0]->join();
    if (fatal) return Error{*fatal};
    if (!ended || !status) return Error{"the probe guest did not finish in 10 s"};
    if (*status != KVT_EXIT_PASS || serial.find("EFER.LMA=1") == std::string::npos)
        return Error{"the probe guest ended with " + status_name(*status) + ", serial \"" + serial +
                     "\""};
    return cfg_.kvm + " runs a long-mode freestanding guest";
}

// ---- Launcher: N node processes on 127.0.0.1 ----

struct Child {
    pid_t pid = -1;
    int pidfd = -1;
    int out = -1;
    std::string text;
    int status = -1;
    bool exited = false;
};

int launch(int argc, char** argv, uint32_t nodes, const Config& cfg) {
    g_who = "kv-dsm-kvm-node --launch";
    const auto t0 = Clock::now();
    // With --netns, node k's listening socket is made in namespace k (a socket belongs to
    // the namespace of the thread that creates it) and node k's process joins it before
    // exec, so its connections leave from there too.
    const bool in_netns = !cfg.netns.empty();
    if (in_netns && cfg.netns.size() != nodes)
        die(1, "--netns names " + std::to_string(cfg.netns.size()) + " namespaces for " +
                   std::to_string(nodes) + " nodes");
    if (!cfg.hosts.empty() && cfg.hosts.size() != nodes)
        die(1, "--hosts names " + std::to_string(cfg.hosts.size()) + " addresses for " +
                   std::to_string(nodes) + " nodes");
    int home_ns = -1;
    std::vector<int> ns_fds;
    if (in_netns) {
        home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (home_ns < 0) die(2, std::string("/proc/self/ns/net: ") + std::strerror(errno));
        for (const auto& path : cfg.netns) {
            int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) die(2, "network namespace " + path + ": " + std::strerror(errno));
            ns_fds.push_back(fd);
        }
    }
    std::vector<int> listeners;
    std::string peers;
    for (uint32_t k = 0; k < nodes; ++k) {
        const std::string host = cfg.hosts.empty() ? "127.0.0.1" : cfg.hosts[k];
        if (in_netns && setns(ns_fds[k], CLONE_NEWNET) != 0)
            die(2, "setns " + cfg.netns[k] + ": " + std::strerror(errno));
        int s = socket(AF_INET, SOCK_STREAM, 0);  // inherited by node k (no CLOEXEC)
        sockaddr_in a{};
        a.sin_family = AF_INET;
        if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1)
            die(1, "--hosts: bad IPv4 address '" + host + "'");
        socklen_t len = sizeof a;
        if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            listen(s, 16) != 0 || getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            die(2, "listening socket on " + host + ": " + std::strerror(errno));
        if (in_netns && setns(home_ns, CLONE_NEWNET) != 0)
            die(2, std::string("setns back: ") + std::strerror(errno));
        listeners.push_back(s);
        peers += (k ? "," : "") + host + ":" + std::to_string(ntohs(a.sin_port));
    }
    // The node's own options: everything but --launch N, --netns and --hosts.
    std::vector<std::string> common;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--launch" || a == "--netns" || a == "--hosts") {
            ++i;
            continue;
        }
        common.push_back(a);
    }
    std::vector<Child> kids(nodes);
    for (uint32_t k = 0; k < nodes; ++k) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) die(2, "pipe");
        std::vector<std::string> args = {"/proc/self/exe",
                                         "--node",
                                         std::to_string(k),
                                         "--peers",
                                         peers,
                                         "--listen-fd",
                                         std::to_string(listeners[k])};
        args.insert(args.end(), common.begin(), common.end());
        pid_t pid = fork();
        if (pid < 0) die(2, "fork");
        if (pid == 0) {
            dup2(p[1], 1);
            dup2(p[1], 2);
            if (in_netns && setns(ns_fds[k], CLONE_NEWNET) != 0) {
                dprintf(2, "kv-dsm-kvm-node: node %u: setns %s: %s\n", k, cfg.netns[k].c_str(),
                        std::strerror(errno));
                _exit(126);
            }
            for (uint32_t j = 0; j < nodes; ++j)
                if (j != k) close(listeners[j]);
            std::vector<char*> av;
            for (auto& s : args) av.push_back(s.data());
            av.push_back(nullptr);
            execv(av[0], av.data());
            _exit(127);
        }
        close(p[1]);
        kids[k].pid = pid;
        kids[k].out = p[0];
        kids[k].pidfd = int(syscall(SYS_pidfd_open, pid, 0));
        if (kids[k].pidfd < 0) die(2, std::string("pidfd_open: ") + std::strerror(errno));
    }
    for (int s : listeners) close(s);
    for (int fd : ns_fds) close(fd);
    if (home_ns >= 0) close(home_ns);

    // Collect output and exits, bounded: the nodes bound themselves; this is the backstop.
    const auto deadline = Clock::now() + std::chrono::seconds(cfg.timeout_s + 30);
    bool timed_out = false;
    for (;;) {
        std::vector<pollfd> fds;
        std::vector<std::pair<uint32_t, bool>> who;  // node, is-pidfd
        for (uint32_t k = 0; k < nodes; ++k) {
            if (kids[k].out >= 0)
                fds.push_back({kids[k].out, POLLIN, 0}), who.push_back({k, false});
            if (!kids[k].exited)
                fds.push_back({kids[k].pidfd, POLLIN, 0}), who.push_back({k, true});
        }
        if (fds.empty()) break;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            for (auto& c : kids)
                if (!c.exited) kill(c.pid, SIGKILL);
            for (auto& c : kids)
                if (!c.exited) waitpid(c.pid, &c.status, 0), c.exited = true;
            break;
        }
        if (poll(fds.data(), fds.size(), int(left.count())) < 0 && errno != EINTR) die(2, "poll");
        for (size_t i = 0; i < fds.size(); ++i) {
            if (!fds[i].revents) continue;
            Child& c = kids[who[i].first];
            if (who[i].second) {
                waitpid(c.pid, &c.status, 0);
                c.exited = true;
            } else {
                char buf[4096];
                ssize_t r = read(c.out, buf, sizeof buf);
                if (r > 0) {
                    c.text.append(buf, size_t(r));
                } else {
                    close(c.out);
                    c.out = -1;
                }
            }
        }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();

    // Every node's exit status and report.
    std::vector<std::string> problems;
    if (timed_out) problems.push_back("nodes still running after the launcher's deadline");
    for (uint32_t k = 0; k < nodes; ++k) {
        const Child& c = kids[k];
        std::printf("== node %u\n%s", k, c.text.c_str());
        if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
            problems.push_back("node " + std::to_string(k) + " exited with " +
                               (WIFEXITED(c.status)
                                    ? "status " + std::to_string(WEXITSTATUS(c.status))
                                    : "signal " + std::to_string(WTERMSIG(c.status))));
        if (c.text.find("node " + std::to_string(k) + ": PASSED\n") == std::string::npos)
            problems.push_back("node " + std::to_string(k) + " did not report PASSED");
    }
    const uint64_t want = uint64_t(cfg.iters) * nodes * cfg.per_node;
    if (kids[0].text.find("node 0: counter " + std::to_string(want) + " (expected") ==
        std::string::npos)
        problems.push_back("node 0 did not report the counter at " + std::to_string(want));
    if (kids[0].text.find("node 0: vmm: the VMM read " + std::to_string(cfg.vmm_rounds) + " ") ==
        std::string::npos)
        problems.push_back("node 0 did not report the vmm rounds");
    for (const auto& p : problems) std::printf("FAIL: %s\n", p.c_str());
    std::printf("%s: %u nodes x %u vCPUs%s, %.2f s\n", problems.empty() ? "PASS" : "FAIL", nodes,
                cfg.per_node, in_netns ? ", each node in its own network namespace" : "", secs);
    std::fflush(stdout);
    return problems.empty() ? 0 : 1;
}

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    for (;;) {
        size_t comma = s.find(',', pos);
        out.push_back(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (comma == std::string::npos) return out;
        pos = comma + 1;
    }
}

int main_impl(int argc, char** argv) {
    Config cfg;
    std::string peers;
    uint32_t launch_nodes = 0;
    bool probe = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die(1, "missing value for " + a);
            return argv[++i];
        };
        auto num = [&]() -> uint32_t {
            std::string v = val();
            char* end = nullptr;
            unsigned long x = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end) die(1, "bad number '" + v + "' for " + a);
            return uint32_t(x);
        };
        if (a == "--node")
            cfg.self = num();
        else if (a == "--peers")
            peers = val();
        else if (a == "--listen-fd")
            cfg.listen_fd = int(num());
        else if (a == "--per-node")
            cfg.per_node = num();
        else if (a == "--iters")
            cfg.iters = num();
        else if (a == "--rounds")
            cfg.rounds = num();
        else if (a == "--pingpong-rounds")
            cfg.pingpong_rounds = num();
        else if (a == "--vmm-rounds")
            cfg.vmm_rounds = num();
        else if (a == "--timeout")
            cfg.timeout_s = int(num());
        else if (a == "--kvm")
            cfg.kvm = val();
        else if (a == "--launch")
            launch_nodes = num();
        else if (a == "--netns")
            cfg.netns = split_commas(val());
        else if (a == "--hosts")
            cfg.hosts = split_commas(val());
        else if (a == "--probe")
            probe = true;
        else
            die(1, "unknown option " + a);
    }
    if (probe) {
        Node node(cfg);
        auto r = node.probe();
        std::printf("%s\n", r ? r->c_str() : r.error().message.c_str());
        return r ? 0 : 1;
    }
    if (cfg.per_node < 1) die(1, "--per-node must be at least 1");
    if (launch_nodes) {
        if (launch_nodes < 2 || launch_nodes > KVT_DSM_MAX_NODES ||
            launch_nodes * cfg.per_node > KVT_DSM_MAX_VCPUS)
            die(1, "--launch: 2.." + std::to_string(KVT_DSM_MAX_NODES) + " nodes, at most " +
                       std::to_string(KVT_DSM_MAX_VCPUS) + " vCPUs in all");
        cfg.nodes = launch_nodes;
        return launch(argc, argv, launch_nodes, cfg);
    }
    auto parsed = test::parse_peers(peers);
    if (!parsed) die(1, parsed.error().message);
    cfg.peers = std::move(parsed).value();
    cfg.nodes = uint32_t(cfg.peers.size());
    if (cfg.nodes < 2 || cfg.nodes > KVT_DSM_MAX_NODES || cfg.self >= cfg.nodes ||
        cfg.total() > KVT_DSM_MAX_VCPUS)
        die(1, "--node must name one of 2.." + std::to_string(KVT_DSM_MAX_NODES) +
                   " --peers, at most " + std::to_string(KVT_DSM_MAX_VCPUS) + " vCPUs in all");
    Node node(cfg);
    return node.run_node();
}

}  // namespace
}  // namespace kv

int main(int argc, char** argv) {
    return kv::main_impl(argc, argv);
}
