// kv-transport-rtt: the floor of scripts/bench/migrate: the TCP transport's round trip
// with a payload of a given size, between two nodes on 127.0.0.1 (Ping out, Pong of the
// same size back, PingResponder on both sides; interconnect/ping_pong.h).
//
//   kv-transport-rtt --bytes N [--samples M]
//
// Prints "rtt_bytes N", "rtt_p50_ns X" and "rtt_p99_ns Y", one a line.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include "interconnect/ping_pong.h"
#include "interconnect/transport_factory.h"
#include "tests/coherence/free_ports.h"

namespace kv {
namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "kv-transport-rtt: %s\n", what.c_str());
    std::exit(1);
}

int run(size_t bytes, int samples) {
    auto found = testing::free_ports(2);
    if (!found) die(found.error().message);
    const auto& ports = *found;
    TransportOptions base;
    for (uint32_t k = 0; k < 2; ++k) base.nodes.push_back({k, "127.0.0.1", ports[k]});
    PingResponder ping[2];
    std::future<Result<std::unique_ptr<Transport>>> fut[2];
    for (uint32_t k = 0; k < 2; ++k)
        fut[k] = std::async(std::launch::async, [&, k] {
            TransportOptions o = base;
            o.self = k;
            return make_transport("tcp", o, &ping[k]);
        });
    std::unique_ptr<Transport> t[2];
    for (uint32_t k = 0; k < 2; ++k) {
        auto r = fut[k].get();
        if (!r) die(r.error().message);
        t[k] = std::move(r).value();
    }
    std::vector<std::chrono::nanoseconds> raw;
    // A few rounds first, so that neither side's first-use costs count.
    if (auto w = measure_round_trip(*t[1], ping[1], 0, bytes, 20); !w) die(w.error().message);
    if (auto r = measure_round_trip(*t[1], ping[1], 0, bytes, samples, &raw); !r)
        die(r.error().message);
    std::sort(raw.begin(), raw.end());
    auto at = [&](double q) { return raw[std::min(raw.size() - 1, size_t(q * raw.size()))]; };
    std::printf("rtt_bytes %zu\nrtt_p50_ns %lld\nrtt_p99_ns %lld\n", bytes,
                static_cast<long long>(at(0.5).count()), static_cast<long long>(at(0.99).count()));
    for (auto& x : t) x->shutdown();
    return 0;
}

}  // namespace
}  // namespace kv

int main(int argc, char** argv) {
    size_t bytes = 4096;
    int samples = 1000;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--bytes" && i + 1 < argc) {
            bytes = std::strtoul(argv[++i], nullptr, 0);
        } else if (a == "--samples" && i + 1 < argc) {
            samples = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: kv-transport-rtt --bytes N [--samples M]\n");
            return 2;
        }
    }
    if (bytes == 0 || bytes > kv::kMaxPayload || samples < 1) {
        std::fprintf(stderr, "kv-transport-rtt: --bytes is 1 to %u, --samples at least 1\n",
                     kv::kMaxPayload);
        return 2;
    }
    return kv::run(bytes, samples);
}
