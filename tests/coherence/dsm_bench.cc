// kv-dsm-bench: latency of the coherence protocol against its floors, in one process.
//
// Five nodes, each with its own guest RAM, CoherenceEngine and TCP transport on
// 127.0.0.1 (the same transport and engine code as kv-dsm-node; one process so that one
// thread can time an access on any node). Threads act as CPUs. Measured:
//   floors  rtt_4k: the transport's 4 KiB Ping/Pong round trip (node 1 -> node 0);
//           local_resolve: a thread faults on a missing page, a second thread reads the
//           event and resolves it with UFFDIO_COPY (no network);
//   remote_read_fault: node 1 reads a page its home (node 0) has just modified;
//   upgrade_{1,3}_sharers: node 1 writes a page it holds S while 1 or 3 other remote
//           nodes hold it too (all invalidated before the grant);
//   pingpong: nodes 1 and 2 alternately increment a word (page homed at node 0).
// Each result is printed as a ratio to (rtt_4k p50 + local_resolve p50), then
// `RESULT <name> <value>` lines.
//
//   kv-dsm-bench [--samples N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "interconnect/ping_pong.h"
#include "interconnect/transport_factory.h"
#include "memory/coherence_engine.h"
#include "tests/coherence/dsm_bench_report.h"
#include "tests/coherence/free_ports.h"

namespace kv {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kNodes = 5;
constexpr uint64_t kRamPages = 5 * 64;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "kv-dsm-bench: %s\n", what.c_str());
    std::_Exit(2);
}

double ns_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

struct BenchNode {
    std::unique_ptr<GuestMemory> mem;
    std::unique_ptr<CoherenceEngine> engine;
    std::unique_ptr<PingResponder> ping;
    std::unique_ptr<Transport> transport;

    volatile uint64_t* word(uint64_t pfn, uint64_t off = 0) {
        return reinterpret_cast<volatile uint64_t*>(
            mem->host_ptr(Gpa(pfn * kPageSize + off), sizeof(uint64_t)));
    }
};

std::vector<BenchNode> make_cluster() {
    std::vector<BenchNode> nodes(kNodes);
    auto found = testing::free_ports(kNodes);
    if (!found) die(found.error().message);
    const auto& ports = *found;
    TransportOptions base;
    for (uint32_t k = 0; k < kNodes; ++k) base.nodes.push_back({k, "127.0.0.1", ports[k]});
    for (uint32_t k = 0; k < kNodes; ++k) {
        auto gm = GuestMemory::create(kRamPages * kPageSize);
        if (!gm) die(gm.error().message);
        nodes[k].mem = std::make_unique<GuestMemory>(std::move(gm).value());
        CoherenceEngine::Options o;
        o.self = k;
        o.num_nodes = kNodes;
        o.on_error = [](const Error& e) { die(e.message); };
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

// A thread faults on a missing page; a resolver thread reads the event and copies.
std::vector<double> local_resolve(int samples) {
    auto u = Userfaultfd::open();
    if (!u) die(u.error().message);
    auto m = Mapping::anonymous(kPageSize);
    if (!m) die(m.error().message);
    ::madvise(m->data(), kPageSize, MADV_NOHUGEPAGE);
    if (auto st = u->register_missing_wp(m->data(), kPageSize); !st) die(st.error().message);
    std::atomic<bool> stop{false};
    std::vector<uint8_t> src(kPageSize, 1);
    std::thread resolver([&] {
        pollfd p{u->fd(), POLLIN, 0};
        uffd_msg msg;
        while (!stop) {
            if (::poll(&p, 1, 100) != 1) continue;
            auto n = u->read_events(&msg, 1);
            if (n && *n == 1) (void)u->copy(m->data(), src.data(), kPageSize, false);
        }
    });
    std::vector<double> out;
    auto* w = reinterpret_cast<volatile uint64_t*>(m->data());
    for (int i = 0; i < samples; ++i) {
        ::madvise(m->data(), kPageSize, MADV_DONTNEED);
        auto t0 = Clock::now();
        (void)*w;
        out.push_back(ns_since(t0));
    }
    stop = true;
    resolver.join();
    return out;
}

void run(int samples) {
    auto nodes = make_cluster();
    std::printf("kv-dsm-bench: %u nodes over TCP on 127.0.0.1, %d samples\n", kNodes, samples);

    // Floor 1: the transport's 4 KiB round trip.
    std::vector<std::chrono::nanoseconds> rtt_raw;
    auto rtt =
        measure_round_trip(*nodes[1].transport, *nodes[1].ping, 0, kPageSize, samples, &rtt_raw);
    if (!rtt) die(rtt.error().message);
    std::vector<double> rtt_ns;
    for (auto d : rtt_raw) rtt_ns.push_back(static_cast<double>(d.count()));
    auto rtt_p = pct(rtt_ns);
    // Floor 2: a local userfaultfd resolve.
    auto loc_p = pct(local_resolve(samples));
    const double floor = rtt_p.p50 + loc_p.p50;

    // Remote read fault: the home (node 0) writes, then node 1 reads (timed).
    const uint64_t page = 10;  // homed at node 0
    std::vector<double> rr;
    for (int i = 0; i < samples; ++i) {
        *nodes[0].word(page) = i + 1;  // M at the home: node 1's copy is invalidated
        auto t0 = Clock::now();
        uint64_t v = *nodes[1].word(page);
        rr.push_back(ns_since(t0));
        if (v != static_cast<uint64_t>(i + 1)) die("remote read returned a stale value");
    }
    auto rr_p = pct(rr);

    // Write upgrade by node 1 while `k` other remote nodes hold the page.
    auto upgrade = [&](uint32_t k) {
        const uint64_t pg = 20 + k;  // homed at node 0
        std::vector<double> v;
        for (int i = 0; i < samples; ++i) {
            *nodes[0].word(pg) = i;  // everyone else invalidated
            for (uint32_t n = 1; n <= 1 + k; ++n) (void)*nodes[n].word(pg);  // S copies
            auto t0 = Clock::now();
            *nodes[1].word(pg) = i + 1;
            v.push_back(ns_since(t0));
        }
        return pct(v);
    };
    auto up1 = upgrade(1), up3 = upgrade(3);

    // Ping-pong between nodes 1 and 2 on a page homed at node 0.
    const uint64_t pp = 40;
    const uint64_t rounds = static_cast<uint64_t>(samples);
    auto player = [&](uint32_t n, uint64_t parity) {
        volatile uint64_t* w = nodes[n].word(pp);
        for (uint64_t r = 0; r < rounds; ++r) {
            const uint64_t mine = 2 * r + parity;
            auto deadline = Clock::now() + std::chrono::seconds(30);
            for (uint64_t spins = 0; __atomic_load_n(w, __ATOMIC_ACQUIRE) != mine; ++spins) {
                // Back off for real: on a 2-core machine a spinning CPU thread would keep the
                // fault and receive threads (which hand the turn over) off the cores.
                if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(5));
                if ((spins & 1023) == 0 && Clock::now() > deadline) die("ping-pong stalled");
            }
            __atomic_store_n(w, mine + 1, __ATOMIC_RELEASE);
        }
    };
    auto t0 = Clock::now();
    std::thread a(player, 1, 0), b(player, 2, 1);
    a.join();
    b.join();
    const double pp_s = ns_since(t0) / 1e9;
    const double rounds_per_s = static_cast<double>(rounds) / pp_s;
    const double round_ns = pp_s * 1e9 / static_cast<double>(rounds);

    auto us = [](double ns) { return ns / 1000.0; };
    std::printf(
        "floor: rtt_4k p50 %.1f us p99 %.1f us; local resolve p50 %.1f us p99 %.1f us; "
        "sum %.1f us\n",
        us(rtt_p.p50), us(rtt_p.p99), us(loc_p.p50), us(loc_p.p99), us(floor));
    print_dsm_bench_report({rtt_p, loc_p, rr_p, up1, up3, rounds_per_s, round_ns}, "", "", "",
                           {nodes[0].engine.get(), nodes[1].engine.get(), nodes[2].engine.get()});
    for (auto& n : nodes) n.engine->stop();
    for (auto& n : nodes) n.transport->shutdown();
}

}  // namespace
}  // namespace kv

int main(int argc, char** argv) {
    int samples = 2000;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--samples") == 0) samples = std::atoi(argv[++i]);
    kv::run(samples);
    return 0;
}
