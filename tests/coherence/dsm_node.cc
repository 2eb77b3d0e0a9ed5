// kv-dsm-node: one node of a coherent-memory cluster with plain threads as CPUs.
//
//   kv-dsm-node --node K --peers H0:P0,H1:P1,... --scenario NAME [--threads T]
//               [--iters N] [--rounds R] [--misbehave]
//
// Joins the cluster over the TCP transport, maps a small guest RAM under a
// CoherenceEngine and runs a scenario on its CPU threads (every node runs the same one;
// roles follow node ids). Scenarios: counter, mp, pingpong, inval, vmm, all, spin (runs
// until killed: for fault tests). Exit status: 0 if every check passed; 1 on a failed
// check; 2 on a coherence or transport error (the message names the node at fault);
// 3 on a timeout. Every wait is bounded.
//
// Cluster barriers use guest memory itself (a counter homed at node 0). The end of the
// run is a message handshake instead, so that no node leaves while a peer may still need
// a page it holds: every node sends Shutdown to node 0 after the last barrier, node 0
// answers everyone when it has them all, then all exit.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "interconnect/payloads.h"
#include "interconnect/transport_factory.h"
#include "memory/coherence_engine.h"
#include "tests/coherence/peer_list.h"

namespace kv {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kRamPages = 256;  // 1 MiB of guest RAM
constexpr auto kWaitLimit = std::chrono::seconds(60);

[[noreturn]] void die(int code, const std::string& what) {
    std::fprintf(stderr, "kv-dsm-node: %s\n", what.c_str());
    std::fflush(stderr);
    // CPU threads may be blocked in faults that will never be served: leave at once.
    std::_Exit(code);
}

// The end-of-run handshake (see the file comment) and the error path.
class Control : public MessageHandler {
  public:
    static constexpr MessageSpec kSpecs[] = {
        {MsgType::Shutdown, {PayloadRule::Kind::Fixed, sizeof(ShutdownPayload)}}};
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override {
        if (static_cast<MsgType>(h.type) != MsgType::Shutdown) return;
        ShutdownPayload bye;
        if (p.size() == sizeof bye) std::memcpy(&bye, p.data(), sizeof bye);
        if (bye.exit_code != 0) {
            // A peer stopped the guest on an error: stop too, passing its reason on.
            die(2, "stopped by node " + std::to_string(from) + ": " +
                       std::string(bye.reason,
                                   std::min<size_t>(bye.reason_length, sizeof bye.reason)));
        }
        std::lock_guard lk(mu_);
        ++shutdowns_;
        last_from_ = from;
        cv_.notify_all();
    }
    void on_peer_lost(NodeId, const Error&) override {}
    std::span<const MessageSpec> messages() const override { return kSpecs; }
    bool wait(int n) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, std::chrono::seconds(30), [&] { return shutdowns_ >= n; });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    int shutdowns_ = 0;
    NodeId last_from_ = 0;
};

struct Node {
    NodeId self = 0;
    uint32_t nodes = 0;
    int threads = 2;
    uint64_t iters = 1000;
    uint64_t rounds = 10000;
    bool misbehave = false;
    std::unique_ptr<GuestMemory> mem;
    std::unique_ptr<CoherenceEngine> engine;
    std::unique_ptr<Transport> transport;
    std::atomic<Transport*> live{nullptr};  // `transport` once made, for the error path
    Control control;
    uint64_t barrier_gen = 0;
    int failures = 0;

    // Page of guest RAM homed at node `home` (the first page of its slice + off).
    uint64_t gpa(uint32_t home, uint64_t page_off, uint64_t byte_off = 0) const {
        return (kRamPages * home / nodes + page_off) * kPageSize + byte_off;
    }
    uint64_t* word(uint64_t g) {
        return reinterpret_cast<uint64_t*>(mem->host_ptr(Gpa(g), sizeof(uint64_t)));
    }
    void check(bool ok, const std::string& what) {
        if (ok) return;
        std::fprintf(stderr, "node %u: CHECK FAILED: %s\n", self, what.c_str());
        ++failures;
    }

    // Polling backoff: on a 2-core machine that carries every node, a spinning CPU thread
    // would keep the fault and receive threads (which deliver the awaited page) off the cores.
    static void backoff(uint64_t spins) {
        if (spins > 64)
            std::this_thread::sleep_for(std::chrono::microseconds(5));
        else
            sched_yield();
    }
    // Spins until *p == want; dies after the limit.
    static void wait_eq(uint64_t* p, uint64_t want, const char* what) {
        auto deadline = Clock::now() + kWaitLimit;
        for (uint64_t i = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) != want; ++i) {
            backoff(i);
            if ((i & 1023) == 0 && Clock::now() > deadline)
                die(3, std::string("timeout waiting for ") + what);
        }
    }
    static uint64_t wait_ge(uint64_t* p, uint64_t want, const char* what) {
        auto deadline = Clock::now() + kWaitLimit;
        uint64_t v;
        for (uint64_t i = 0; (v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) < want; ++i) {
            backoff(i);
            if ((i & 1023) == 0 && Clock::now() > deadline)
                die(3, std::string("timeout waiting for ") + what);
        }
        return v;
    }

    // All nodes: a sense-free counting barrier on a word homed at node 0.
    void barrier() {
        ++barrier_gen;
        uint64_t* b = word(gpa(0, 0));
        __atomic_fetch_add(b, 1, __ATOMIC_SEQ_CST);
        wait_ge(b, barrier_gen * nodes, "barrier");
    }

    template <class F>
    void run_cpus(int n, F f) {
        std::vector<std::thread> cpus;
        for (int t = 0; t < n; ++t) cpus.emplace_back([&, t] { f(t); });
        for (auto& t : cpus) t.join();
    }

    // Every CPU of every node: `iters` lock xadd on one counter (homed at the last node).
    void counter() {
        uint64_t* c = word(gpa(nodes - 1, 1));
        barrier();
        auto t0 = Clock::now();
        run_cpus(threads, [&](int) {
            for (uint64_t i = 0; i < iters; ++i) __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
        });
        barrier();
        uint64_t want = iters * threads * nodes;
        uint64_t got = __atomic_load_n(c, __ATOMIC_SEQ_CST);
        check(got == want, "counter " + std::to_string(got) + " != " + std::to_string(want));
        std::printf("node %u: counter %llu (expected %llu) in %.3f s\n", self,
                    static_cast<unsigned long long>(got), static_cast<unsigned long long>(want),
                    std::chrono::duration<double>(Clock::now() - t0).count());
    }

    // Message passing: node 0 writes data (page homed at node 1) then flag (homed at 0);
    // every other node waits for the flag, checks the data, and acknowledges.
    void mp() {
        uint64_t* data = word(gpa(1 % nodes, 2));
        uint64_t* flag = word(gpa(0, 2));
        barrier();
        auto t0 = Clock::now();
        if (self == 0) {
            for (uint64_t r = 1; r <= rounds; ++r) {
                __atomic_store_n(data, r, __ATOMIC_RELAXED);
                __atomic_store_n(flag, r, __ATOMIC_RELEASE);
                for (uint32_t k = 1; k < nodes; ++k)
                    wait_ge(word(gpa(k, 3)), r, "mp acknowledgement");
            }
        } else {
            uint64_t* ack = word(gpa(self, 3));
            for (uint64_t r = 1; r <= rounds; ++r) {
                uint64_t f = wait_ge(flag, r, "mp flag");
                uint64_t d = __atomic_load_n(data, __ATOMIC_ACQUIRE);
                if (d < f) {
                    check(false,
                          "mp: saw flag " + std::to_string(f) + " but data " + std::to_string(d));
                    break;
                }
                __atomic_store_n(ack, r, __ATOMIC_RELEASE);
            }
        }
        barrier();
        std::printf("node %u: mp %llu rounds in %.3f s\n", self,
                    static_cast<unsigned long long>(rounds),
                    std::chrono::duration<double>(Clock::now() - t0).count());
    }

    // Nodes 0 and 1 take turns incrementing one page (homed at the last node).
    void pingpong() {
        uint64_t* v = word(gpa(nodes - 1, 4));
        barrier();
        auto t0 = Clock::now();
        if (self < 2) {
            for (uint64_t r = 0; r < rounds; ++r) {
                uint64_t mine = 2 * r + self;
                wait_eq(v, mine, "ping-pong turn");
                __atomic_store_n(v, mine + 1, __ATOMIC_RELEASE);
            }
        }
        barrier();
        uint64_t got = __atomic_load_n(v, __ATOMIC_ACQUIRE);
        check(got == 2 * rounds, "ping-pong value " + std::to_string(got));
        std::printf("node %u: ping-pong %llu rounds in %.3f s\n", self,
                    static_cast<unsigned long long>(rounds),
                    std::chrono::duration<double>(Clock::now() - t0).count());
    }

    // A page read by all, then written by the last node: invalidated everywhere else.
    void inval() {
        const uint64_t g = gpa(0, 5);
        const uint64_t pfn = g / kPageSize;
        uint64_t* x = word(g);
        DsmStats before = engine->stats();
        (void)__atomic_load_n(x, __ATOMIC_ACQUIRE);
        barrier();
        if (self == nodes - 1) __atomic_fetch_add(x, 1, __ATOMIC_SEQ_CST);
        barrier();
        DsmStats after = engine->stats();
        if (self != nodes - 1) {
            check(engine->local_state(pfn) == LocalState::I, "inval: copy not dropped");
            check(after.local_invalidations > before.local_invalidations,
                  "inval: no local invalidation counted");
            if (self != 0)
                check(after.invalidations_received > before.invalidations_received,
                      "inval: no Inv received");
        }
        if (self == 0 && nodes > 2)
            check(after.invalidations_sent - before.invalidations_sent >= nodes - 2,
                  "inval: home sent too few Invs");
        std::printf("node %u: inval ok, state %s\n", self, to_string(engine->local_state(pfn)));
    }

    // A CPU of node 1 writes; then the VMM's own thread (not a CPU) on node 0 reads the
    // value through GuestMemory.
    void vmm() {
        const uint64_t g = gpa(nodes - 1, 6, 64);
        barrier();
        const uint64_t v = 0xC0FFEE00 + barrier_gen;
        if (self == 1) run_cpus(1, [&](int) { __atomic_store_n(word(g), v, __ATOMIC_RELEASE); });
        barrier();
        if (self == 0) {
            uint64_t got = 0;
            std::thread vmm_thread([&] { check(mem->read_obj(Gpa(g), got).ok(), "vmm read"); });
            vmm_thread.join();
            check(got == v, "vmm read " + std::to_string(got));
            std::printf("node 0: vmm thread read %#llx\n", static_cast<unsigned long long>(got));
        }
        barrier();
    }

    void spin() {
        uint64_t* c = word(gpa(0, 7));
        barrier();
        std::printf("node %u: spinning\n", self);
        std::fflush(stdout);
        for (uint64_t i = 0;; ++i) {
            __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
            if (misbehave && self == nodes - 1 && i == 100) {
                // Out of protocol: a Grant nobody asked for, with a page of garbage. Said
                // before it is sent: node 0's answer to it may end this process before a
                // line printed after the send.
                std::printf("node %u: sending garbage to node 0\n", self);
                std::fflush(stdout);
                std::vector<uint8_t> junk(kPageSize, 0xA5);
                MsgHeader h;
                h.type = static_cast<uint16_t>(MsgType::Grant);
                h.arg = 1;
                (void)transport->send(0, h, junk);
            }
        }
    }

    void finish() {
        // This node has passed the last barrier. Stopping the engine ends the fault thread
        // but keeps serving peers on the receive thread, and makes a peer's departure from
        // now on a normal end rather than an error.
        engine->stop();
        MsgHeader h;
        h.type = static_cast<uint16_t>(MsgType::Shutdown);
        auto bye = ShutdownPayload::make(failures ? 1 : 0, "done");
        auto bytes = std::span(reinterpret_cast<const uint8_t*>(&bye), sizeof bye);
        if (self != 0) {
            if (!transport->send(0, h, bytes).ok()) die(2, "send Shutdown to node 0");
            if (!control.wait(1)) die(3, "timeout waiting for node 0's Shutdown");
        } else {
            if (!control.wait(static_cast<int>(nodes) - 1)) die(3, "timeout waiting for Shutdowns");
            for (uint32_t k = 1; k < nodes; ++k) (void)transport->send(k, h, bytes);
        }
        engine->stats().print(stdout);
        std::fflush(stdout);
        transport->shutdown();
    }
};

int run(int argc, char** argv) {
    Node n;
    std::string peers, scenario = "all";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die(1, "missing value for " + a);
            return argv[++i];
        };
        if (a == "--node")
            n.self = static_cast<NodeId>(std::stoul(val()));
        else if (a == "--peers")
            peers = val();
        else if (a == "--scenario")
            scenario = val();
        else if (a == "--threads")
            n.threads = std::stoi(val());
        else if (a == "--iters")
            n.iters = std::stoull(val());
        else if (a == "--rounds")
            n.rounds = std::stoull(val());
        else if (a == "--misbehave")
            n.misbehave = true;
        else
            die(1, "unknown option " + a);
    }
    TransportOptions topts;
    topts.self = n.self;
    auto parsed = test::parse_peers(peers);
    if (!parsed) die(1, parsed.error().message);
    topts.nodes = std::move(parsed).value();
    n.nodes = static_cast<uint32_t>(topts.nodes.size());
    if (n.nodes < 2 || n.self >= n.nodes) die(1, "--node must name one of >= 2 --peers");

    auto gm = GuestMemory::create(kRamPages * kPageSize);
    if (!gm) die(2, gm.error().message);
    n.mem = std::make_unique<GuestMemory>(std::move(gm).value());
    CoherenceEngine::Options eo;
    eo.self = n.self;
    eo.num_nodes = n.nodes;
    eo.next = &n.control;
    eo.on_error = [&n](const Error& e) {
        // Stop the whole guest: tell every peer why (best effort), then leave.
        std::string why = "node " + std::to_string(n.self) + " stops: " + e.message;
        if (Transport* t = n.live.load()) {
            MsgHeader h;
            h.type = static_cast<uint16_t>(MsgType::Shutdown);
            auto bye = ShutdownPayload::make(2, why);
            auto bytes = std::span(reinterpret_cast<const uint8_t*>(&bye), sizeof bye);
            for (uint32_t k = 0; k < n.nodes; ++k)
                if (k != n.self) (void)t->send(k, h, bytes);
        }
        die(2, why);
    };
    auto eng = CoherenceEngine::create(*n.mem, eo);
    if (!eng) die(2, eng.error().message);
    n.engine = std::move(eng).value();
    auto tr = make_transport("tcp", topts, n.engine.get());
    if (!tr) die(2, tr.error().message);
    n.transport = std::move(tr).value();
    n.live = n.transport.get();
    if (auto st = n.engine->start(*n.transport); !st) die(2, st.error().message);

    bool all = scenario == "all";
    bool known = false;
    if (all || scenario == "counter") known = true, n.counter();
    if (all || scenario == "mp") known = true, n.mp();
    if (all || scenario == "pingpong") known = true, n.pingpong();
    if (all || scenario == "inval") known = true, n.inval();
    if (all || scenario == "vmm") known = true, n.vmm();
    if (scenario == "spin") n.spin();
    if (!known) die(1, "unknown scenario " + scenario);
    n.barrier();
    n.finish();
    std::printf("node %u: %s\n", n.self, n.failures ? "FAILED" : "PASSED");
    return n.failures ? 1 : 0;
}

}  // namespace
}  // namespace kv

int main(int argc, char** argv) {
    return kv::run(argc, argv);
}
