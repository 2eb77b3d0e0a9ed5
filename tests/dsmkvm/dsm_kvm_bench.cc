// kv-dsm-kvm-bench: the coherence benchmark with vCPUs as CPUs (docs/testing-dsm-kvm.md,
// "Benchmark"; the thread variant is tests/coherence/dsm_bench.cc, kv-dsm-bench).
//
// Five nodes in one process, each with its own guest RAM (16 MiB), CoherenceEngine and TCP
// transport on 127.0.0.1, as in kv-dsm-bench. Nodes 1 and 2 also have a KVM VM over their
// RAM with one vCPU of the freestanding test guest, entered at its benchmark loop
// (protocol.h, "vCPU benchmark"): the VMM hands it commands (read or write one word,
// ping-pong) and the guest times each access with rdtsc, converted with a calibration
// against the host clock. The pages under test are homed at node 0; nodes 0, 3 and 4
// take part through their VMMs' own accesses. Measured:
//   floors   rtt_4k: the transport's 4 KiB Ping/Pong round trip (node 1 -> node 0);
//            vcpu_local_resolve: a vCPU of a sixth VM, no engine, loads a word of a page
//            its VMM dropped (MADV_DONTNEED); a resolver thread reads the userfaultfd
//            event and resolves it with UFFDIO_COPY (no network);
//   vcpu_remote_read_fault: node 1's vCPU loads a word of a page node 0 (the home) has
//            just modified;
//   vcpu_upgrade_{1,3}_sharers: node 1's vCPU stores to a page it holds S (it loaded it)
//            while 1 or 3 other nodes hold it too;
//   vcpu_pingpong: the vCPUs of nodes 1 and 2 alternately increment one word.
// Each is printed as a ratio to (rtt_4k p50 + vcpu_local_resolve p50), then `RESULT
// vcpu_<name> <value>` lines. Also the cost of a timed load that does not fault.
//
//   kv-dsm-kvm-bench [--samples N] [--kvm PATH]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "guest-image/freestanding/protocol.h"
#include "interconnect/ping_pong.h"
#include "interconnect/transport_factory.h"
#include "memory/coherence_engine.h"
#include "memory/uffd.h"
#include "tests/coherence/dsm_bench_report.h"
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
constexpr uint32_t kNodes = 5;
constexpr uint64_t kMemorySize = 16ull << 20;
constexpr uint64_t kTssAddr = 0xFFFBD000;
// Pages under test: 2.5 MiB up, in node 0's home slice (the first fifth, 3.2 MiB), above
// the image; the local-resolve VM uses the same page numbers in its own RAM.
constexpr uint64_t kReadPage = 0x280;
constexpr uint64_t kUpgradePage = 0x290;  // + sharers
constexpr uint64_t kPingPongPage = 0x2A0;
constexpr uint64_t kQuietPage = 0x2B0;  // never dropped: a load that does not fault

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stdout, "kv-dsm-kvm-bench: %s\n", what.c_str());
    std::fflush(stdout);
    std::_Exit(2);
}

struct Answer {
    uint64_t cycles = 0, value = 0;
};

// One VM with one vCPU running the guest's benchmark loop; its VMM hands it commands.
class BenchVm : public IoHandler {
  public:
    BenchVm(std::string name, GuestMemory& mem) : name_(std::move(name)), mem_(mem) {}
    ~BenchVm() override {
        if (vcpu_) {
            vcpu_->request_stop();
            vcpu_->join();
        }
    }

    Status open(const std::string& kvm_path, uint32_t stack_index) {
        auto kvm = Kvm::open(kvm_path.c_str());
        if (!kvm) return kvm.error();
        kvm_.emplace(std::move(kvm).value());
        auto vm = kvm_->create_vm();
        if (!vm) return vm.error();
        vm_ = std::move(vm).value();
        (void)vm_.set_tss_addr(kTssAddr);  // refused off Intel, where KVM does not need it
        for (const auto& r : mem_.regions())
            KV_TRY(vm_.set_user_memory_region(r.slot, r.base.value, r.size, r.mapping.data()));
        auto supported = kvm_->supported_cpuid();
        if (!supported) return supported.error();
        router_ = std::make_unique<IpiRouter>(1);
        VcpuEnv env;
        env.io = this;
        env.router = router_.get();
        env.fatal = [this](uint32_t, bool, const std::string& why) {
            die(name_ + ": vCPU: " + why);
        };
        env.pic_acknowledge = [this]() -> uint8_t { die(name_ + ": PIC acknowledge"); };
        env.eoi_level = [this](uint8_t) { die(name_ + ": level-triggered EOI"); };
        auto v = Vcpu::create(vm_, 0, 1, *supported, std::move(env));
        if (!v) return v.error();
        vcpu_ = std::move(v).value();
        router_->attach_local(0, vcpu_.get());
        kvm_regs regs{};
        kvm_sregs sregs{};
        KV_TRY(vcpu_->fd().get_regs(regs));
        KV_TRY(vcpu_->fd().get_sregs(sregs));
        boot::BootCpuState{KVT_BENCH_ENTRY_GPA, 0, KVT_DSM_STACK_TOP(stack_index)}.apply(regs,
                                                                                         sregs);
        regs.rdi = stack_index;
        KV_TRY(vcpu_->set_boot_state(regs, sregs));
        vcpu_->start(true);
        return {};
    }

    // Hands the vCPU one command; answer() waits for its result.
    void post(std::initializer_list<uint32_t> words) {
        std::lock_guard lk(mu_);
        for (uint32_t w : words) cmd_.push_back(w);
        result_.clear();
        cv_.notify_all();
    }
    Answer answer() {
        std::unique_lock lk(mu_);
        if (!cv_.wait_for(lk, std::chrono::seconds(60), [&] { return result_.size() == 4; }))
            die(name_ + ": the vCPU did not answer in 60 s");
        return {uint64_t(result_[1]) << 32 | result_[0], uint64_t(result_[3]) << 32 | result_[2]};
    }
    Answer run(std::initializer_list<uint32_t> words) {
        post(words);
        return answer();
    }
    void finish() {
        post({KVT_BENCH_OP_EXIT});
        std::unique_lock lk(mu_);
        if (!cv_.wait_for(lk, std::chrono::seconds(10), [&] { return exit_.has_value(); }))
            die(name_ + ": the vCPU did not exit");
        if (*exit_ != KVT_EXIT_PASS)
            die(name_ + ": the guest ended with status " + std::to_string(*exit_));
    }

    bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) override {
        uint32_t value = 0;
        std::memcpy(&value, data.data(), std::min<size_t>(data.size(), sizeof value));
        const bool w4 = is_write && data.size() == 4, r4 = !is_write && data.size() == 4;
        auto give = [&](uint32_t v) { std::memcpy(data.data(), &v, sizeof v); };
        if ((port == KVT_PORT_BENCH_CMD || port == KVT_PORT_BENCH_ARG) && r4) {
            std::unique_lock lk(mu_);
            if (port == KVT_PORT_BENCH_ARG && cmd_.empty())
                die(name_ + ": the guest read a missing argument");
            if (!cv_.wait_for(lk, std::chrono::seconds(120), [&] { return !cmd_.empty(); }))
                die(name_ + ": no command for the vCPU in 120 s");
            give(cmd_.front());
            cmd_.pop_front();
        } else if (port == KVT_PORT_BENCH_RESULT && w4) {
            std::lock_guard lk(mu_);
            result_.push_back(value);
            cv_.notify_all();
        } else if (port == KVT_PORT_CLOCK && r4) {
            give(uint32_t(monotonic_ns() / 1000));
        } else if (port == KVT_PORT_YIELD && w4) {
            // A polite spin: backoff, not synchronisation (as kv-dsm-kvm-node).
            if (value < 256)
                sched_yield();
            else
                std::this_thread::sleep_for(std::chrono::microseconds(5));
        } else if (port == KVT_PORT_EXIT && w4) {
            std::lock_guard lk(mu_);
            exit_ = value;
            cv_.notify_all();
        } else if (port == KVT_PORT_SERIAL && is_write) {
        } else {
            die(name_ + ": unexpected port access " + std::to_string(port));
        }
        return true;
    }
    bool mmio(uint64_t addr, std::span<uint8_t>, bool) override {
        die(name_ + ": unexpected MMIO at " + std::to_string(addr));
    }

  private:
    std::string name_;
    GuestMemory& mem_;
    std::optional<Kvm> kvm_;
    VmFd vm_;
    std::unique_ptr<IpiRouter> router_;
    std::unique_ptr<Vcpu> vcpu_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<uint32_t> cmd_;
    std::vector<uint32_t> result_;
    std::optional<uint32_t> exit_;
};

Status load_guest(GuestMemory& mem) {
    std::span<const uint8_t> image(kv_dsm_guest_image_begin,
                                   size_t(kv_dsm_guest_image_end - kv_dsm_guest_image_begin));
    if (image.empty()) return Error{"the embedded guest image is empty"};
    KV_TRY(mem.write(Gpa(KVT_IMAGE_GPA), image));
    KV_TRY(boot::write_boot_gdt(mem));
    return boot::write_identity_page_tables(mem);
}

struct BenchNode {
    std::unique_ptr<GuestMemory> mem;
    std::unique_ptr<CoherenceEngine> engine;
    std::unique_ptr<PingResponder> ping;
    std::unique_ptr<Transport> transport;
    volatile uint64_t* word(uint64_t pfn) {
        return reinterpret_cast<volatile uint64_t*>(
            mem->host_ptr(Gpa(pfn * kPageSize), sizeof(uint64_t)));
    }
};

std::vector<BenchNode> make_cluster() {
    std::vector<BenchNode> nodes(kNodes);
    // The listeners first (port 0), so no port is chosen twice.
    std::vector<std::shared_ptr<const Fd>> listeners;
    TransportOptions base;
    for (uint32_t k = 0; k < kNodes; ++k) {
        Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (s.get() < 0 || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(s.get(), 16) != 0 ||
            ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
            die(std::string("listening socket: ") + std::strerror(errno));
        base.nodes.push_back({k, "127.0.0.1", ntohs(a.sin_port)});
        listeners.push_back(std::make_shared<const Fd>(std::move(s)));
    }
    for (uint32_t k = 0; k < kNodes; ++k) {
        auto gm = GuestMemory::create(kMemorySize);
        if (!gm) die(gm.error().message);
        nodes[k].mem = std::make_unique<GuestMemory>(std::move(gm).value());
        CoherenceEngine::Options o;
        o.self = k;
        o.num_nodes = kNodes;
        o.on_error = [k](const Error& e) { die("node " + std::to_string(k) + ": " + e.message); };
        auto e = CoherenceEngine::create(*nodes[k].mem, o);
        if (!e) die(e.error().message);
        nodes[k].engine = std::move(e).value();
        nodes[k].ping = std::make_unique<PingResponder>(nodes[k].engine.get());
    }
    // Every transport blocks until the mesh is complete: build them concurrently.
    std::vector<std::future<Result<std::unique_ptr<Transport>>>> fut;
    for (uint32_t k = 0; k < kNodes; ++k)
        fut.push_back(std::async(std::launch::async, [&, k] {
            TransportOptions o = base;
            o.self = k;
            o.listener = listeners[k];
            return make_transport("tcp", o, nodes[k].ping.get());
        }));
    for (uint32_t k = 0; k < kNodes; ++k) {
        auto t = fut[k].get();
        if (!t) die(t.error().message);
        nodes[k].transport = std::move(t).value();
        if (auto st = nodes[k].engine->start(*nodes[k].transport); !st) die(st.error().message);
    }
    return nodes;
}

// The local-resolve floor's VM: guest RAM with no engine; the pages under test are
// registered with a userfaultfd whose resolver copies a source page into each missing one.
class LocalResolver {
  public:
    explicit LocalResolver(GuestMemory& mem) : mem_(mem), src_(kPageSize / 8, 0) {}
    ~LocalResolver() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    Status start(uint64_t pfn, uint64_t pages) {
        auto u = Userfaultfd::open();
        if (!u) return u.error();
        uffd_.emplace(std::move(u).value());
        KV_TRY(uffd_->register_missing_wp(mem_.host_ptr(Gpa(pfn * kPageSize), pages * kPageSize),
                                          pages * kPageSize));
        thread_ = std::thread([this] { loop(); });
        return {};
    }
    void set_value(uint64_t v) { src_[0] = v; }  // the next resolve's word (one at a time)
    void drop(uint64_t pfn) {
        ::madvise(mem_.host_ptr(Gpa(pfn * kPageSize), kPageSize), kPageSize, MADV_DONTNEED);
    }

  private:
    void loop() {
        pollfd p{uffd_->fd(), POLLIN, 0};
        uffd_msg msg;
        while (!stop_) {
            if (::poll(&p, 1, 100) != 1) continue;
            auto n = uffd_->read_events(&msg, 1);
            if (!n || *n != 1 || msg.event != UFFD_EVENT_PAGEFAULT) continue;
            auto* page = reinterpret_cast<void*>(msg.arg.pagefault.address & ~(kPageSize - 1));
            (void)uffd_->copy(page, src_.data(), kPageSize, false);
        }
    }
    GuestMemory& mem_;
    std::optional<Userfaultfd> uffd_;
    std::vector<uint64_t> src_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

void run(int samples, const std::string& kvm_path) {
    auto nodes = make_cluster();
    std::printf(
        "kv-dsm-kvm-bench: %u nodes over TCP on 127.0.0.1, vCPUs of the freestanding "
        "guest on nodes 1 and 2 (%s), %d samples\n",
        kNodes, kvm_path.c_str(), samples);
    if (auto st = load_guest(*nodes[0].mem); !st) die("loading the guest: " + st.error().message);
    BenchVm v1("node 1", *nodes[1].mem), v2("node 2", *nodes[2].mem);
    if (auto st = v1.open(kvm_path, 1); !st) die("node 1's VM: " + st.error().message);
    if (auto st = v2.open(kvm_path, 2); !st) die("node 2's VM: " + st.error().message);

    // The local VM: its own RAM, no engine.
    auto lm = GuestMemory::create(kMemorySize);
    if (!lm) die(lm.error().message);
    if (auto st = load_guest(*lm); !st) die("loading the local guest: " + st.error().message);
    LocalResolver resolver(*lm);
    if (auto st = resolver.start(kReadPage, 1); !st) die("userfaultfd: " + st.error().message);
    BenchVm vl("local", *lm);
    if (auto st = vl.open(kvm_path, 3); !st) die("the local VM: " + st.error().message);

    // TSC calibration, per vCPU: cycles over 50 ms of the host clock.
    auto calibrate = [](BenchVm& v) {
        Answer a = v.run({KVT_BENCH_OP_CALIBRATE, 50000});
        return double(a.cycles) / (double(a.value) * 1000.0);  // cycles per ns
    };
    const double ghz1 = calibrate(v1), ghz2 = calibrate(v2), ghzl = calibrate(vl);
    auto ns1 = [&](uint64_t c) { return double(c) / ghz1; };

    // Floor 1: the transport's 4 KiB round trip.
    std::vector<std::chrono::nanoseconds> rtt_raw;
    auto rtt =
        measure_round_trip(*nodes[1].transport, *nodes[1].ping, 0, kPageSize, samples, &rtt_raw);
    if (!rtt) die(rtt.error().message);
    std::vector<double> rtt_ns;
    for (auto d : rtt_raw) rtt_ns.push_back(static_cast<double>(d.count()));
    auto rtt_p = pct(rtt_ns);

    // Floor 2: a vCPU's load from a dropped page, resolved locally with UFFDIO_COPY.
    std::vector<double> loc;
    for (int i = 0; i < samples; ++i) {
        resolver.drop(kReadPage);
        resolver.set_value(uint64_t(i) + 7);
        Answer a = vl.run({KVT_BENCH_OP_READ, uint32_t(kReadPage * kPageSize)});
        if (a.value != uint64_t(i) + 7) die("local resolve: the vCPU read a wrong value");
        loc.push_back(double(a.cycles) / ghzl);
    }
    auto loc_p = pct(loc);
    const double floor = rtt_p.p50 + loc_p.p50;

    // What timing costs: a load from a page the vCPU holds (no fault).
    std::vector<double> quiet;
    (void)v1.run({KVT_BENCH_OP_READ, uint32_t(kQuietPage * kPageSize)});
    for (int i = 0; i < samples; ++i)
        quiet.push_back(ns1(v1.run({KVT_BENCH_OP_READ, uint32_t(kQuietPage * kPageSize)}).cycles));
    auto quiet_p = pct(quiet);

    // Remote read fault: the home (node 0's VMM) writes, then node 1's vCPU loads (timed).
    std::vector<double> rr;
    for (int i = 0; i < samples; ++i) {
        *nodes[0].word(kReadPage) = uint64_t(i) + 1;  // M at the home: node 1's copy dropped
        Answer a = v1.run({KVT_BENCH_OP_READ, uint32_t(kReadPage * kPageSize)});
        if (a.value != uint64_t(i) + 1) die("remote read returned a stale value");
        rr.push_back(ns1(a.cycles));
    }
    auto rr_p = pct(rr);

    // Write upgrade by node 1's vCPU while k other nodes hold the page.
    auto upgrade = [&](uint32_t k) {
        const uint64_t pg = kUpgradePage + k;
        std::vector<double> v;
        for (int i = 0; i < samples; ++i) {
            *nodes[0].word(pg) = uint64_t(i);  // everyone else invalidated
            if (v1.run({KVT_BENCH_OP_READ, uint32_t(pg * kPageSize)}).value != uint64_t(i))
                die("upgrade: stale read");
            for (uint32_t n = 2; n <= 1 + k; ++n) (void)*nodes[n].word(pg);  // S copies
            v.push_back(ns1(
                v1.run({KVT_BENCH_OP_WRITE, uint32_t(pg * kPageSize), uint32_t(i + 1)}).cycles));
            if (uint64_t got = *nodes[0].word(pg); got != uint64_t(i) + 1)
                die("upgrade, " + std::to_string(k) + " sharers, sample " + std::to_string(i) +
                    ": the home read " + std::to_string(got) + ", the vCPU wrote " +
                    std::to_string(i + 1) + "; node 1 holds it " +
                    to_string(nodes[1].engine->local_state(pg)));
        }
        return pct(v);
    };
    auto up1 = upgrade(1), up3 = upgrade(3);

    // Ping-pong between the vCPUs of nodes 1 and 2 on a page homed at node 0.
    const uint32_t rounds = uint32_t(samples);
    const auto t0 = Clock::now();
    v1.post({KVT_BENCH_OP_PINGPONG, uint32_t(kPingPongPage * kPageSize), 0, rounds});
    v2.post({KVT_BENCH_OP_PINGPONG, uint32_t(kPingPongPage * kPageSize), 1, rounds});
    Answer a1 = v1.answer(), a2 = v2.answer();
    const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (a1.value || a2.value) die("ping-pong: a wait ran past its bound");
    if (*nodes[0].word(kPingPongPage) != 2ull * rounds) die("ping-pong: wrong final value");
    const double pp_s = std::max(ns1(a1.cycles), double(a2.cycles) / ghz2) / 1e9;
    const double rounds_per_s = rounds / pp_s;
    const double round_ns = pp_s * 1e9 / rounds;

    v1.finish();
    v2.finish();
    vl.finish();

    auto us = [](double ns) { return ns / 1000.0; };
    std::printf("TSC as the guests count it: %.3f / %.3f / %.3f GHz (nodes 1, 2, local VM)\n", ghz1,
                ghz2, ghzl);
    std::printf(
        "floor: rtt_4k p50 %.1f us p99 %.1f us; vCPU local resolve p50 %.1f us p99 %.1f us; "
        "sum %.1f us\n",
        us(rtt_p.p50), us(rtt_p.p99), us(loc_p.p50), us(loc_p.p99), us(floor));
    std::printf("vCPU timed load without a fault: p50 %.3f us p99 %.3f us\n", us(quiet_p.p50),
                us(quiet_p.p99));
    char wall[32];
    std::snprintf(wall, sizeof wall, "; %.2f s wall", wall_s);
    print_dsm_bench_report({rtt_p, loc_p, rr_p, up1, up3, rounds_per_s, round_ns}, "vCPU ", "vcpu_",
                           wall,
                           {nodes[0].engine.get(), nodes[1].engine.get(), nodes[2].engine.get()});
    for (auto& n : nodes) n.engine->stop();
    for (auto& n : nodes) n.transport->shutdown();
}

}  // namespace
}  // namespace kv

int main(int argc, char** argv) {
    int samples = 2000;
    std::string kvm = "/dev/kvm";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--samples") == 0)
            samples = std::atoi(argv[i + 1]);
        else if (std::strcmp(argv[i], "--kvm") == 0)
            kvm = argv[i + 1];
        else
            kv::die(std::string("unknown option ") + argv[i]);
    }
    if (samples < 10) kv::die("--samples must be at least 10");
    kv::run(samples, kvm);
    return 0;
}
