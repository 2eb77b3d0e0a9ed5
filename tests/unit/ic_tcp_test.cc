// TcpTransport over 127.0.0.1: meshes of 2-4 nodes in one process, handshake refusals,
// the connect deadline, hostile peers, peer loss, and the round-trip helper.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "interconnect/codec.h"
#include "interconnect/handshake.h"
#include "interconnect/payloads.h"
#include "interconnect/ping_pong.h"
#include "interconnect/tcp_socket.h"
#include "interconnect/tcp_transport.h"
#include "interconnect/transport_factory.h"
#include "tests/unit/test_support.h"

namespace kv {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 10s;  // upper bound for any awaited event; never reached when passing

// Records everything a transport hands to its handler; tests wait on it with a deadline.
class Recorder : public MessageHandler {
  public:
    std::span<const MessageSpec> messages() const override { return testing::vmm_node_messages(); }
    struct Msg {
        NodeId from;
        MsgHeader h;
        std::vector<uint8_t> payload;
    };
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override {
        std::lock_guard l(mu_);
        if (closed_) late_calls_++;
        msgs_.push_back({from, h, {p.begin(), p.end()}});
        cv_.notify_all();
    }
    void on_peer_lost(NodeId peer, const Error& why) override {
        std::lock_guard l(mu_);
        if (closed_) late_calls_++;
        lost_[peer].push_back(why.message);
        cv_.notify_all();
    }
    bool wait_messages(size_t n) {
        std::unique_lock l(mu_);
        return cv_.wait_for(l, kWait, [&] { return msgs_.size() >= n; });
    }
    bool wait_lost(NodeId peer) {
        std::unique_lock l(mu_);
        return cv_.wait_for(l, kWait, [&] { return lost_.count(peer) > 0; });
    }
    std::vector<Msg> messages() {
        std::lock_guard l(mu_);
        return msgs_;
    }
    std::vector<std::string> lost(NodeId peer) {
        std::lock_guard l(mu_);
        return lost_[peer];
    }
    // After the transport's shutdown(): any later call is counted.
    void close() {
        std::lock_guard l(mu_);
        closed_ = true;
    }
    int late_calls() {
        std::lock_guard l(mu_);
        return late_calls_;
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Msg> msgs_;
    std::map<NodeId, std::vector<std::string>> lost_;
    bool closed_ = false;
    int late_calls_ = 0;
};

// N nodes on 127.0.0.1, each with a listening socket bound to port 0 beforehand, so the
// ports are known to all before any transport starts.
struct Cluster {
    std::vector<TransportOptions> opts;
    explicit Cluster(int n, std::chrono::milliseconds timeout = 10s) {
        std::vector<PeerAddress> nodes;
        std::vector<std::shared_ptr<const Fd>> listeners;
        for (int i = 0; i < n; ++i) {
            auto l = tcp_listen("127.0.0.1", 0);
            EXPECT_TRUE(l.ok());
            auto port = local_port(l->get());
            EXPECT_TRUE(port.ok());
            nodes.push_back({static_cast<NodeId>(i), "127.0.0.1", *port});
            listeners.push_back(std::make_shared<const Fd>(std::move(*l)));
        }
        for (int i = 0; i < n; ++i) {
            TransportOptions o;
            o.self = static_cast<NodeId>(i);
            o.nodes = nodes;
            o.config_digest.fill(0x5A);
            o.connect_timeout = timeout;
            o.listener = listeners[i];
            opts.push_back(o);
        }
    }
    // Starts the given nodes concurrently (each create() blocks until its mesh is up).
    std::vector<Result<std::unique_ptr<TcpTransport>>> start(std::vector<MessageHandler*> handlers,
                                                             std::vector<int> which = {}) {
        if (which.empty()) {
            for (size_t i = 0; i < opts.size(); ++i) which.push_back(static_cast<int>(i));
        }
        std::vector<Result<std::unique_ptr<TcpTransport>>> out;
        for (size_t k = 0; k < which.size(); ++k) out.emplace_back(Error{"not started"});
        std::vector<std::thread> threads;
        for (size_t k = 0; k < which.size(); ++k) {
            threads.emplace_back(
                [&, k] { out[k] = TcpTransport::create(opts[which[k]], handlers[k]); });
        }
        for (auto& t : threads) t.join();
        return out;
    }
};

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 131 + i * 7 + (i >> 8));
    return v;
}

class IcTcpMesh : public ::testing::TestWithParam<int> {};

TEST_P(IcTcpMesh, EveryPairExchangesMessagesInOrderWithIntactPayloads) {
    const int n = GetParam();
    Cluster c(n);
    std::vector<Recorder> rec(n);
    std::vector<MessageHandler*> hs;
    for (auto& r : rec) hs.push_back(&r);
    auto ts = c.start(hs);
    for (auto& t : ts) ASSERT_TRUE(t.ok()) << t.error().message;

    constexpr int kPerPair = 50;
    // Every node sends to every other: alternately a page-carrying Grant and an empty ReadReq.
    for (int from = 0; from < n; ++from) {
        for (int to = 0; to < n; ++to) {
            if (from == to) continue;
            for (int i = 0; i < kPerPair; ++i) {
                MsgHeader h;
                h.type = static_cast<uint16_t>(i % 2 ? MsgType::ReadReq : MsgType::Grant);
                h.arg = static_cast<uint64_t>(i);
                h.request_id = static_cast<uint64_t>(from * 1000 + to);
                auto page = pattern(kPagePayload, from * 100 + to * 10 + i);
                Status st = ts[from].value()->send(static_cast<NodeId>(to), h,
                                                   i % 2 ? std::span<const uint8_t>() : page);
                ASSERT_TRUE(st.ok()) << st.error().message;
            }
        }
    }
    for (int to = 0; to < n; ++to) {
        ASSERT_TRUE(rec[to].wait_messages(static_cast<size_t>(kPerPair * (n - 1))));
        std::map<NodeId, int> next;
        for (const auto& m : rec[to].messages()) {
            const int i = next[m.from]++;
            EXPECT_EQ(m.h.src, m.from);
            EXPECT_EQ(m.h.arg, static_cast<uint64_t>(i)) << "order from node " << m.from;
            EXPECT_EQ(m.h.request_id, m.from * 1000u + to);
            if (i % 2) {
                EXPECT_EQ(m.h.type, static_cast<uint16_t>(MsgType::ReadReq));
                EXPECT_TRUE(m.payload.empty());
            } else {
                EXPECT_EQ(m.h.type, static_cast<uint16_t>(MsgType::Grant));
                EXPECT_EQ(m.payload, pattern(kPagePayload, m.from * 100 + to * 10 + i));
            }
        }
        for (int from = 0; from < n; ++from) {
            if (from != to) {
                EXPECT_EQ(next[static_cast<NodeId>(from)], kPerPair);
            }
        }
    }
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) EXPECT_TRUE(rec[i].lost(static_cast<NodeId>(j)).empty());
    }
}

INSTANTIATE_TEST_SUITE_P(Nodes, IcTcpMesh, ::testing::Values(2, 3, 4));

TEST(IcTcp, OrderPreservedPerSenderUnderConcurrentSenders) {
    Cluster c(2);
    Recorder r0, r1;
    auto ts = c.start({&r0, &r1});
    ASSERT_TRUE(ts[0].ok() && ts[1].ok());
    constexpr int kThreads = 4, kEach = 2000;
    // Node 1's threads all send to node 0 while node 0 sends to node 1: payload sizes vary
    // so writes are split by the kernel at varying points.
    std::vector<std::thread> senders;
    for (int t = 0; t < kThreads; ++t) {
        senders.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                MsgHeader h;
                h.type = static_cast<uint16_t>(MsgType::Ping);
                h.request_id = static_cast<uint64_t>(t);
                h.arg = static_cast<uint64_t>(i);
                auto p = pattern(static_cast<size_t>((i * 389) % 9000), t * 7919 + i);
                ASSERT_TRUE(ts[1].value()->send(0, h, p).ok());
            }
        });
    }
    senders.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
            MsgHeader h;
            h.type = static_cast<uint16_t>(MsgType::Pong);
            h.arg = static_cast<uint64_t>(i);
            ASSERT_TRUE(ts[0].value()->send(1, h, pattern(100, i)).ok());
        }
    });
    for (auto& s : senders) s.join();
    ASSERT_TRUE(r0.wait_messages(kThreads * kEach));
    ASSERT_TRUE(r1.wait_messages(kEach));
    std::vector<uint64_t> next(kThreads, 0);
    for (const auto& m : r0.messages()) {
        const auto t = m.h.request_id;
        ASSERT_LT(t, static_cast<uint64_t>(kThreads));
        ASSERT_EQ(m.h.arg, next[t]) << "thread " << t;
        const int i = static_cast<int>(next[t]++);
        EXPECT_EQ(m.payload, pattern(static_cast<size_t>((i * 389) % 9000),
                                     static_cast<uint32_t>(t) * 7919 + i));
    }
    int i = 0;
    for (const auto& m : r1.messages()) {
        EXPECT_EQ(m.h.arg, static_cast<uint64_t>(i));
        EXPECT_EQ(m.payload, pattern(100, i));
        ++i;
    }
}

// Each node's handler answers a page with a page under the node's "engine" lock, which the
// node's own sending thread holds across every send (as the coherence engine holds its
// lock across the sends of a fault's actions), over socket buffers of a few KiB. Were
// sends blocking, each sender would wait for the other node to read, while that node's
// receive thread waits for its lock: a deadlock. With send queues both floods complete.
class Echoer : public Recorder {
  public:
    static constexpr uint64_t kReply = 1;
    std::mutex engine;
    TcpTransport* t = nullptr;
    NodeId peer = 0;
    std::atomic<int> originals{0}, replies{0}, send_errors{0};
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override {
        if (h.request_id == kReply) {
            EXPECT_EQ(std::vector<uint8_t>(p.begin(), p.end()),
                      pattern(kPagePayload, 1000 + h.arg));
            replies++;
        } else {
            EXPECT_EQ(h.arg, static_cast<uint64_t>(originals.load())) << "order from node " << from;
            std::lock_guard l(engine);
            MsgHeader r;
            r.type = static_cast<uint16_t>(MsgType::Grant);
            r.arg = h.arg;
            r.request_id = kReply;
            if (!t->send(peer, r, pattern(kPagePayload, 1000 + h.arg)).ok()) send_errors++;
            originals++;
        }
        Recorder::on_message(from, h, {});
    }
};

TEST(IcTcp, CrossingFloodsUnderTheSendersLocksOverSmallSocketBuffersComplete) {
    Cluster c(2);
    // 64 KiB (128 KiB as the kernel counts): 16 pages in flight each way. (With 16 KiB,
    // loopback's TCP stalled for seconds with data in the send buffer and none unread at
    // the peer, whatever the transport did.)
    for (auto& o : c.opts) o.socket_buffer = 65536;
    Echoer e0, e1;
    auto ts = c.start({&e0, &e1});
    ASSERT_TRUE(ts[0].ok() && ts[1].ok());
    Echoer* e[2] = {&e0, &e1};
    for (int k = 0; k < 2; ++k) {
        e[k]->t = ts[k].value().get();
        e[k]->peer = static_cast<NodeId>(1 - k);
    }
    constexpr int kPages = 2000;  // 8 MiB each way, and as much in replies
    std::atomic<size_t> most_queued{0};
    std::vector<std::thread> senders;
    for (int k = 0; k < 2; ++k) {
        senders.emplace_back([&, k] {
            for (int i = 0; i < kPages; ++i) {
                std::lock_guard l(e[k]->engine);
                MsgHeader h;
                h.type = static_cast<uint16_t>(MsgType::Grant);
                h.arg = static_cast<uint64_t>(i);
                ASSERT_TRUE(e[k]->t->send(e[k]->peer, h, pattern(kPagePayload, i)).ok());
                const size_t q = e[k]->t->queued(e[k]->peer);
                if (q > most_queued) most_queued = q;
            }
        });
    }
    // Bounded: were the nodes deadlocked, the threads could never be joined.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline &&
           !(e0.wait_messages(2 * kPages) && e1.wait_messages(2 * kPages))) {
    }
    if (!(e0.replies == kPages && e1.replies == kPages)) {
        const auto why = [](Echoer& e, NodeId peer) {
            auto l = e.lost(peer);
            return l.empty() ? std::string("connected") : l.front();
        };
        ADD_FAILURE() << "the floods did not complete within 60 s (deadlock?): node 0 got "
                      << e0.originals << " pages and " << e0.replies << " replies, node 1 "
                      << e1.originals << " and " << e1.replies << " of " << kPages << "; queued "
                      << e0.t->queued(1) << " and " << e1.t->queued(0) << " bytes; " << why(e0, 1)
                      << "; " << why(e1, 0);
        std::fflush(nullptr);
        std::_Exit(1);
    }
    for (auto& s : senders) s.join();
    EXPECT_EQ(e0.send_errors, 0);
    EXPECT_EQ(e1.send_errors, 0);
    // The socket buffers did fill: messages waited in a send queue.
    EXPECT_GT(most_queued.load(), 0u);
    EXPECT_TRUE(e0.lost(1).empty());
    EXPECT_TRUE(e1.lost(0).empty());
}

TEST(IcTcp, HandshakeRefusedOnDigestMismatch) {
    // Node 0 keeps waiting for a node 1 with the right config until its deadline, then
    // names the peer it did not reach and the Hello it refused.
    Cluster c(2);
    c.opts[1].config_digest.fill(0x77);
    c.opts[0].connect_timeout = 1s;
    Recorder r0, r1;
    auto ts = c.start({&r0, &r1});
    ASSERT_FALSE(ts[0].ok());
    ASSERT_FALSE(ts[1].ok());
    EXPECT_NE(ts[0].error().message.find("peers not reached within 1000 ms: node 1 (127.0.0.1:"),
              std::string::npos)
        << ts[0].error().message;
    EXPECT_NE(ts[0].error().message.find("refused node 1"), std::string::npos)
        << ts[0].error().message;
    EXPECT_NE(ts[0].error().message.find("config digest mismatch"), std::string::npos);
    EXPECT_NE(ts[1].error().message.find("node 0 (127.0.0.1:"), std::string::npos)
        << ts[1].error().message;
    EXPECT_NE(ts[1].error().message.find("refused the handshake: config digest mismatch"),
              std::string::npos);
}

TEST(IcTcp, HandshakeRefusesUnexpectedNodeId) {
    // Node 1 believes it is node 5, which node 0 does not know.
    Cluster c(2);
    c.opts[1].self = 5;
    c.opts[1].nodes[1].id = 5;
    c.opts[1].connect_timeout = 2s;
    c.opts[0].connect_timeout = 2s;
    Recorder r0, r1;
    auto ts = c.start({&r0, &r1});
    ASSERT_FALSE(ts[0].ok());
    ASSERT_FALSE(ts[1].ok());
    EXPECT_NE(ts[0].error().message.find("refused node 5"), std::string::npos)
        << ts[0].error().message;
    EXPECT_NE(ts[0].error().message.find("unexpected node id"), std::string::npos);
    EXPECT_NE(ts[1].error().message.find("unexpected node id"), std::string::npos)
        << ts[1].error().message;
}

TEST(IcTcp, ConnectDeadlineNamesTheUnreachedPeer) {
    // Node 0's port is bound but not listening: connecting is refused until the deadline.
    auto blocker = Fd::check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
    ASSERT_TRUE(blocker.ok());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(blocker->get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    auto port = local_port(blocker->get());
    ASSERT_TRUE(port.ok());

    Cluster c(2, 300ms);
    c.opts[1].nodes[0].port = *port;
    Recorder r1;
    const auto start = Clock::now();
    auto t = TcpTransport::create(c.opts[1], &r1);
    ASSERT_FALSE(t.ok());
    EXPECT_GE(Clock::now() - start, 300ms);
    EXPECT_EQ(t.error().message, "node 1: peers not reached within 300 ms: node 0 (127.0.0.1:" +
                                     std::to_string(*port) + ")");
}

TEST(IcTcp, ConnectDeadlineNamesPeersThatNeverDialled) {
    Cluster c(3, 300ms);
    Recorder r0;
    auto t = TcpTransport::create(c.opts[0], &r0);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.error().message.find("peers not reached within 300 ms: node 1 (127.0.0.1:"),
              std::string::npos)
        << t.error().message;
    EXPECT_NE(t.error().message.find(", node 2 (127.0.0.1:"), std::string::npos);
}

// A hand-made node speaking the wire protocol through a plain socket.
struct RawNode {
    Fd fd;
    static RawNode connect_as(NodeId self, const TransportOptions& opts, NodeId to) {
        RawNode r;
        for (const auto& a : opts.nodes) {
            if (a.id != to) continue;
            bool retry = false;
            auto c = tcp_connect(a.host, a.port, Clock::now() + kWait, -1, &retry);
            EXPECT_TRUE(c.ok());
            r.fd = std::move(*c);
        }
        TransportOptions mine = opts;
        mine.self = self;
        HelloPayload hello = make_hello(mine, to, HelloStatus::Ok);
        MsgHeader h;
        h.type = static_cast<uint16_t>(MsgType::Hello);
        h.length = sizeof hello;
        h.src = self;
        r.write(as_bytes_of(h));
        r.write(as_bytes_of(hello));
        uint8_t ack[kHeaderBytes + sizeof(HelloPayload)];
        EXPECT_TRUE(read_exact(r.fd.get(), ack, Clock::now() + kWait, -1).ok());
        auto hdr = decode_header(std::span<const uint8_t>(ack));
        EXPECT_TRUE(hdr.ok());
        EXPECT_EQ(hdr->type, static_cast<uint16_t>(MsgType::HelloAck));
        auto payload =
            record_from<HelloPayload>(std::span<const uint8_t>(ack).subspan(kHeaderBytes));
        EXPECT_EQ(payload->status, 0);
        return r;
    }
    void write(std::span<const uint8_t> b) {
        EXPECT_TRUE(write_all(fd.get(), b, Clock::now() + kWait, -1).ok());
    }
};

MsgHeader raw_header(MsgType type, uint32_t length, NodeId src) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(type);
    h.length = length;
    h.src = src;
    return h;
}

struct Garbage {
    const char* name;
    std::vector<uint8_t> bytes;
    bool close_after;
    const char* expect;  // in the on_peer_lost reason
};

std::vector<uint8_t> bytes_of(const MsgHeader& h) {
    auto s = as_bytes_of(h);
    return {s.begin(), s.end()};
}

std::vector<Garbage> garbage_cases() {
    std::vector<Garbage> g;
    auto bad_magic = raw_header(MsgType::ReadReq, 0, 2);
    bad_magic.magic = 0x12345678;
    g.push_back({"bad magic", bytes_of(bad_magic), false, "node 2: bad magic 0x12345678"});
    auto unknown = raw_header(MsgType::ReadReq, 0, 2);
    unknown.type = 0x9999;
    g.push_back({"unknown type", bytes_of(unknown), false, "node 2: message type 0x9999 unknown"});
    g.push_back({"oversized", bytes_of(raw_header(MsgType::Ping, 1u << 24, 2)), false,
                 "node 2: Ping payload of 16777216 bytes exceeds the maximum of 65536"});
    auto trunc = bytes_of(raw_header(MsgType::Grant, 4096, 2));
    trunc.resize(trunc.size() + 10, 0xEE);
    g.push_back(
        {"truncated then closed", trunc, true,
         "node 2: connection closed mid-message: truncated Grant payload (10 of 4096 bytes)"});
    auto half = bytes_of(raw_header(MsgType::ReadReq, 0, 2));
    half.resize(20);
    g.push_back({"truncated header then closed", half, true,
                 "node 2: connection closed mid-message: truncated header (20 of 32 bytes)"});
    g.push_back({"hello after handshake",
                 [] {
                     auto v = bytes_of(raw_header(MsgType::Hello, sizeof(HelloPayload), 2));
                     v.resize(v.size() + sizeof(HelloPayload), 0);
                     return v;
                 }(),
                 false, "node 2: out-of-protocol Hello after the handshake"});
    g.push_back({"spoofed src", bytes_of(raw_header(MsgType::ReadReq, 0, 1)), false,
                 "node 2: message claims to come from node 1"});
    return g;
}

// Nodes 0 and 1 of `c` as transports, node 2 as a raw socket that shakes hands with both.
struct TwoAndARawPeer {
    Recorder r0, r1;
    std::vector<Result<std::unique_ptr<TcpTransport>>> ts;
    RawNode to0, to1;
    explicit TwoAndARawPeer(Cluster& c) {
        std::thread starter([&] { ts = c.start({&r0, &r1}, {0, 1}); });
        to0 = RawNode::connect_as(2, c.opts[0], 0);
        to1 = RawNode::connect_as(2, c.opts[0], 1);
        starter.join();
    }
    // Empty if both transports started, else why one did not.
    std::string failed() const {
        for (const auto& t : ts)
            if (!t.ok()) return t.error().message;
        return {};
    }
};

class IcTcpGarbage : public ::testing::TestWithParam<size_t> {};

TEST_P(IcTcpGarbage, PeerSendingGarbageIsDroppedAndOthersKeepWorking) {
    const Garbage g = garbage_cases()[GetParam()];
    SCOPED_TRACE(g.name);
    // Nodes 0 and 1 are transports; node 2 is a raw socket that shakes hands properly.
    Cluster c(3);
    TwoAndARawPeer m(c);
    ASSERT_EQ(m.failed(), "");
    auto& [r0, r1, ts, to0, to1] = m;

    // One good message first: it is delivered, then the garbage drops the connection.
    to0.write(bytes_of(raw_header(MsgType::InvAck, 0, 2)));
    to0.write(g.bytes);
    if (g.close_after) to0.fd.reset();
    ASSERT_TRUE(r0.wait_lost(2));
    EXPECT_EQ(r0.lost(2), std::vector<std::string>{g.expect});
    ASSERT_EQ(r0.messages().size(), 1u);
    EXPECT_EQ(r0.messages()[0].h.type, static_cast<uint16_t>(MsgType::InvAck));
    EXPECT_FALSE(ts[0].value()->send(2, raw_header(MsgType::Inv, 0, 0)).ok());

    // Node 0 still serves node 1, both ways, and node 1 still has node 2.
    ASSERT_TRUE(ts[0].value()->send(1, raw_header(MsgType::Inv, 0, 0)).ok());
    ASSERT_TRUE(ts[1].value()->send(0, raw_header(MsgType::InvAck, 0, 0)).ok());
    ASSERT_TRUE(r1.wait_messages(1));
    ASSERT_TRUE(r0.wait_messages(2));
    EXPECT_EQ(r0.messages()[1].from, 1u);
    EXPECT_TRUE(ts[1].value()->send(2, raw_header(MsgType::Inv, 0, 0)).ok());

    ts[0].value()->shutdown();
    ts[1].value()->shutdown();
    EXPECT_EQ(r0.lost(2).size(), 1u);  // exactly once, checked after no more calls can come
    EXPECT_TRUE(r0.lost(1).empty());
}

INSTANTIATE_TEST_SUITE_P(Kinds, IcTcpGarbage, ::testing::Range<size_t>(0, 7));

TEST(IcTcp, GarbageBeforeTheHandshakeIsDroppedAndTheMeshStillForms) {
    Cluster c(2);
    Recorder r0, r1;
    Result<std::unique_ptr<TcpTransport>> t0(Error{"not started"});
    std::thread s0([&] { t0 = TcpTransport::create(c.opts[0], &r0); });
    {
        bool retry = false;
        auto raw =
            tcp_connect("127.0.0.1", c.opts[0].nodes[0].port, Clock::now() + kWait, -1, &retry);
        ASSERT_TRUE(raw.ok());
        const char junk[] = "GET / HTTP/1.0\r\n\r\n.............";
        ASSERT_TRUE(write_all(raw->get(), {reinterpret_cast<const uint8_t*>(junk), sizeof junk},
                              Clock::now() + kWait, -1)
                        .ok());
        // Node 0 closes it: reading sees end of file (or a reset).
        uint8_t b;
        Status st = read_exact(raw->get(), {&b, 1}, Clock::now() + kWait, -1);
        ASSERT_FALSE(st.ok());
        EXPECT_NE(st.error().message, "timed out");
    }
    auto t1 = TcpTransport::create(c.opts[1], &r1);
    s0.join();
    ASSERT_TRUE(t0.ok()) << t0.error().message;
    ASSERT_TRUE(t1.ok()) << t1.error().message;
    ASSERT_TRUE((*t1)->send(0, raw_header(MsgType::ReadReq, 0, 0)).ok());
    ASSERT_TRUE(r0.wait_messages(1));
}

// A peer that shook hands and then says nothing (a host powered off, a cable pulled: no
// FIN, no RST) is dropped after the heartbeat deadline, and named; a live but idle peer
// is kept, because heartbeats arrive from it.
TEST(IcTcp, ASilentPeerIsDroppedAtTheHeartbeatDeadlineAndAnIdleLiveOneIsKept) {
    Cluster c(3);
    for (auto& o : c.opts) o.heartbeat = 400ms;
    TwoAndARawPeer m(c);
    ASSERT_EQ(m.failed(), "");
    auto& [r0, r1, ts, to0, to1] = m;

    // Node 0 sends heartbeats on its idle connection to node 2.
    uint8_t hb[kHeaderBytes];
    ASSERT_TRUE(read_exact(to0.fd.get(), hb, Clock::now() + kWait, -1).ok());
    auto h = decode_header(std::span<const uint8_t>(hb));
    ASSERT_TRUE(h.ok()) << h.error().message;
    EXPECT_EQ(h->type, static_cast<uint16_t>(MsgType::Heartbeat));
    EXPECT_EQ(h->src, 0u);
    EXPECT_EQ(h->length, 0u);

    // Node 2 never answers: both drop it, naming the silence.
    ASSERT_TRUE(r0.wait_lost(2));
    ASSERT_TRUE(r1.wait_lost(2));
    ASSERT_EQ(r0.lost(2).size(), 1u);
    EXPECT_NE(r0.lost(2)[0].find("node 2: silent for "), std::string::npos) << r0.lost(2)[0];
    EXPECT_NE(r0.lost(2)[0].find(" ms (heartbeat 400 ms)"), std::string::npos) << r0.lost(2)[0];

    // Nodes 0 and 1 were as idle as node 2 for as long, and are still connected.
    EXPECT_TRUE(r0.lost(1).empty()) << r0.lost(1)[0];
    EXPECT_TRUE(r1.lost(0).empty()) << r1.lost(0)[0];
    ASSERT_TRUE(ts[0].value()->send(1, raw_header(MsgType::Inv, 0, 0)).ok());
    ASSERT_TRUE(r1.wait_messages(1));
    // Heartbeats are the transport's own: no handler saw one.
    for (const auto& m : r1.messages()) EXPECT_EQ(m.h.type, static_cast<uint16_t>(MsgType::Inv));
    EXPECT_TRUE(r0.messages().empty());
}

TEST(IcTcp, LivenessOptionsAreSetOnTheSocket) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(s.valid());
    ASSERT_TRUE(set_liveness(s.get(), 4000ms).ok());
    const auto get = [&](int level, int name) {
        int v = -1;
        socklen_t len = sizeof v;
        EXPECT_EQ(getsockopt(s.get(), level, name, &v, &len), 0);
        return v;
    };
    EXPECT_EQ(get(IPPROTO_TCP, TCP_USER_TIMEOUT), 4000);
    EXPECT_EQ(get(SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPIDLE), 1);
    EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPINTVL), 1);
    EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPCNT), 4);
}

TEST(IcTcp, PeerThatShutsDownIsReportedLostOnceAndSendsFail) {
    Cluster c(3);
    Recorder r0, r1, r2;
    auto ts = c.start({&r0, &r1, &r2});
    for (auto& t : ts) ASSERT_TRUE(t.ok());
    ts[2].value()->shutdown();
    r2.close();
    ASSERT_TRUE(r0.wait_lost(2));
    ASSERT_TRUE(r1.wait_lost(2));
    EXPECT_EQ(r0.lost(2), std::vector<std::string>{"node 2: connection closed by peer"});
    auto st = ts[0].value()->send(2, raw_header(MsgType::Inv, 0, 0));
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("connection lost (node 2: connection closed by peer)"),
              std::string::npos)
        << st.error().message;
    // The survivors still talk.
    ASSERT_TRUE(ts[0].value()->send(1, raw_header(MsgType::Inv, 0, 0)).ok());
    ASSERT_TRUE(r1.wait_messages(1));
    ts[0].value()->shutdown();
    ts[1].value()->shutdown();
    EXPECT_EQ(r0.lost(2).size(), 1u);
    EXPECT_EQ(r1.lost(2).size(), 1u);
    EXPECT_EQ(r2.late_calls(), 0);
}

TEST(IcTcp, NoHandlerCallAfterShutdownReturns) {
    Cluster c(2);
    Recorder r0, r1;
    auto ts = c.start({&r0, &r1});
    ASSERT_TRUE(ts[0].ok() && ts[1].ok());
    std::atomic<bool> stop{false};
    std::thread flood([&] {
        while (!stop) {
            if (!ts[1].value()->send(0, raw_header(MsgType::ReadReq, 0, 0)).ok()) break;
        }
    });
    ASSERT_TRUE(r0.wait_messages(100));
    ts[0].value()->shutdown();
    r0.close();
    stop = true;
    flood.join();
    ts[1].value()->shutdown();
    EXPECT_EQ(r0.late_calls(), 0);
}

TEST(IcTcp, SendRefusesWhatThePeerWouldRefuse) {
    Cluster c(2);
    Recorder r0, r1;
    auto ts = c.start({&r0, &r1});
    ASSERT_TRUE(ts[0].ok() && ts[1].ok());
    std::vector<uint8_t> twelve(12);
    auto st = ts[0].value()->send(1, raw_header(MsgType::Grant, 0, 0), twelve);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 1: Grant payload of 12 bytes (expected 0 or 4096)");
    st = ts[0].value()->send(7, raw_header(MsgType::Inv, 0, 0));
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 7: not a peer");
    st = ts[0].value()->send(1, raw_header(MsgType::HelloAck, 0, 0),
                             std::vector<uint8_t>(sizeof(HelloPayload)));
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "send to node 1: HelloAck is reserved for the handshake");
}

TEST(IcTcp, FactoryMakesTcpAndNamesUnknownTransports) {
    Cluster c(2);
    Recorder r0, r1;
    Result<std::unique_ptr<Transport>> t0(Error{""}), t1(Error{""});
    std::thread s([&] { t0 = make_transport("tcp", c.opts[0], &r0); });
    t1 = make_transport("tcp", c.opts[1], &r1);
    s.join();
    ASSERT_TRUE(t0.ok()) << t0.error().message;
    ASSERT_TRUE(t1.ok()) << t1.error().message;
    EXPECT_EQ((*t1)->self(), 1u);
    ASSERT_TRUE((*t1)->send(0, raw_header(MsgType::GrantAck, 0, 0)).ok());
    ASSERT_TRUE(r0.wait_messages(1));
    auto bad = make_transport("carrier-pigeon", c.opts[0], &r0);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().message, "unknown transport 'carrier-pigeon' (known: tcp)");
}

TEST(IcTcp, RoundTripHelperReturnsAPlausibleFigure) {
    Cluster c(2);
    PingResponder p0, p1;
    auto ts = c.start({&p0, &p1});
    ASSERT_TRUE(ts[0].ok() && ts[1].ok());
    std::vector<std::chrono::nanoseconds> samples;
    auto rtt = measure_round_trip(*ts[0].value(), p0, 1, 4096, 200, &samples);
    ASSERT_TRUE(rtt.ok()) << rtt.error().message;
    EXPECT_EQ(samples.size(), 200u);
    // Loopback TCP on any machine: more than a microsecond, far less than 100 ms.
    EXPECT_GT(*rtt, 1us);
    EXPECT_LT(*rtt, 100ms);
    // The other direction, with an empty payload.
    auto back = measure_round_trip(*ts[1].value(), p1, 0, 0, 50);
    ASSERT_TRUE(back.ok()) << back.error().message;
    std::printf("tcp loopback round trip: 4 KiB %lld ns, 0 B %lld ns\n",
                static_cast<long long>(rtt->count()), static_cast<long long>(back->count()));
}

}  // namespace
}  // namespace kv
