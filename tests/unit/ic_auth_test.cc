// Cluster-key authentication of the handshake (interconnect/auth.h): the hook on its own
// (accept, wrong key, replay, digest, staleness, tampered fields) and with two TcpTransports
// over 127.0.0.1; and the SHA-256/HMAC primitives against published test vectors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "interconnect/auth.h"
#include "interconnect/handshake.h"
#include "interconnect/tcp_socket.h"
#include "interconnect/tcp_transport.h"
#include "tests/unit/test_support.h"

namespace kv {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

std::vector<uint8_t> key_a() {
    return bytes("0123456789abcdef0123456789abcdef");
}
std::vector<uint8_t> key_b() {
    return bytes("0123456789abcdef0123456789abcdeX");
}

ConfigDigest digest(uint8_t fill) {
    ConfigDigest d;
    d.fill(fill);
    return d;
}

HelloPayload blank(NodeId self) {
    HelloPayload p;
    p.node_id = self;
    return p;
}

// One handshake between connector 1 and acceptor 0 through their hooks; returns both
// verification results.
struct Exchange {
    Status acceptor_check;   // node 0 on node 1's Hello
    Status connector_check;  // node 1 on node 0's HelloAck
};
Exchange exchange(ClusterKeyAuth& connector, ClusterKeyAuth& acceptor) {
    HelloPayload hello = blank(1);
    connector.fill_proof(hello, 0);
    Exchange e;
    e.acceptor_check = acceptor.verify_proof(hello);
    HelloPayload ack = blank(0);
    acceptor.fill_proof(ack, 1);
    e.connector_check = connector.verify_proof(ack);
    return e;
}

TEST(IcAuth, Sha256AndHmacMatchPublishedVectors) {
    auto abc = sha256(bytes("abc"));
    ASSERT_TRUE(abc.ok());
    EXPECT_EQ(to_hex(*abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // RFC 4231, test case 2.
    auto mac = hmac_sha256(bytes("Jefe"), bytes("what do ya want for nothing?"));
    ASSERT_TRUE(mac.ok());
    EXPECT_EQ(to_hex(*mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(IcAuth, Sha256IncrementalEqualsOneShotAndFile) {
    std::string text(300000, 'x');
    for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i * 31);
    auto h = Sha256::create();
    ASSERT_TRUE(h.ok());
    h->update(std::string_view(text).substr(0, 1000));
    h->update(std::string_view(text).substr(1000));
    auto inc = h->finish();
    auto one = sha256(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    ASSERT_TRUE(inc.ok() && one.ok());
    EXPECT_EQ(*inc, *one);

    char path[] = "/tmp/kv-auth-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    auto file = sha256_file(path, "kernel");
    ::unlink(path);
    ASSERT_TRUE(file.ok());
    EXPECT_EQ(*file, *one);
    auto missing = sha256_file("/nonexistent/k", "kernel");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().message, "kernel: /nonexistent/k: No such file or directory");
}

TEST(IcAuth, MatchingKeysAccept) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    Exchange e = exchange(n1, n0);
    EXPECT_TRUE(e.acceptor_check.ok()) << e.acceptor_check.error().message;
    EXPECT_TRUE(e.connector_check.ok()) << e.connector_check.error().message;
}

TEST(IcAuth, DifferentKeysRefuseOnBothSides) {
    ClusterKeyAuth n1(1, key_b(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    Status st = n0.verify_proof(hello);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message,
              "node 1: proof does not match (it lacks this cluster's key, or was made for "
              "another handshake)");
    // The acceptor's answer does not satisfy the keyless connector either.
    HelloPayload ack = blank(0);
    n0.fill_proof(ack, 1);
    EXPECT_FALSE(n1.verify_proof(ack).ok());
}

TEST(IcAuth, AllZeroProofRefused) {
    // What a transport without a hook sends.
    ClusterKeyAuth n0(0, key_a(), digest(7));
    EXPECT_FALSE(n0.verify_proof(blank(1)).ok());
}

TEST(IcAuth, DigestMismatchRefuses) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(8));
    Exchange e = exchange(n1, n0);
    EXPECT_FALSE(e.acceptor_check.ok());
    EXPECT_FALSE(e.connector_check.ok());
}

TEST(IcAuth, ReplayedHelloRefused) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    ASSERT_TRUE(n0.verify_proof(hello).ok());
    Status again = n0.verify_proof(hello);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().message, "node 1: replayed Hello (nonce seen before)");
}

TEST(IcAuth, ReplayedProofWithADifferentNonceRefused) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    // An eavesdropper keeps the proof but presents a nonce of its own choosing.
    HelloPayload forged = hello;
    forged.nonce[15] ^= 1;
    EXPECT_FALSE(n0.verify_proof(forged).ok());
    forged = hello;
    forged.nonce[0] ^= 1;  // the time stamp
    EXPECT_FALSE(n0.verify_proof(forged).ok());
    EXPECT_TRUE(n0.verify_proof(hello).ok());

    // A HelloAck recorded from an earlier handshake does not answer a new Hello.
    HelloPayload old_ack = blank(0);
    n0.fill_proof(old_ack, 1);
    ASSERT_TRUE(n1.verify_proof(old_ack).ok());
    HelloPayload hello2 = blank(1);
    n1.fill_proof(hello2, 0);  // a new connector nonce
    EXPECT_FALSE(n1.verify_proof(old_ack).ok());
}

TEST(IcAuth, TamperedFieldsRefused) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    HelloPayload t = hello;
    t.status = 2;
    EXPECT_FALSE(n0.verify_proof(t).ok());
    t = hello;
    t.protocol_version = 9;
    EXPECT_FALSE(n0.verify_proof(t).ok());
    // A proof made for node 0 does not admit its sender under another id.
    ClusterKeyAuth n2(2, key_a(), digest(7));
    t = hello;
    t.node_id = 2;
    ClusterKeyAuth n0b(0, key_a(), digest(7));
    EXPECT_FALSE(n0b.verify_proof(t).ok());
    // ... nor to another acceptor.
    ClusterKeyAuth n3(3, key_a(), digest(7));
    HelloPayload to0 = blank(3);
    n3.fill_proof(to0, 0);
    EXPECT_FALSE(n2.verify_proof(to0).ok());
    EXPECT_TRUE(n0b.verify_proof(to0).ok());
}

TEST(IcAuth, StaleHelloRefused) {
    int64_t now = 1'700'000'000'000;
    ClusterKeyAuth n1(1, key_a(), digest(7), 300s, [&] { return now; });
    ClusterKeyAuth n0(0, key_a(), digest(7), 300s, [&] { return now + 301'000; });
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    Status st = n0.verify_proof(hello);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message,
              "node 1: Hello stamped 301.0 s from this host's clock (at most 300.0 s allowed): "
              "a replay, or the hosts' clocks differ");
    // Within the window (either direction) it passes.
    ClusterKeyAuth n0b(0, key_a(), digest(7), 300s, [&] { return now - 299'000; });
    EXPECT_TRUE(n0b.verify_proof(hello).ok());
}

TEST(IcAuth, HelloStampedAtTheEndsOfTimeRefused) {
    // A signed Hello may carry any 64-bit stamp (a node whose clock is broken): refused,
    // without overflow in the clocks' distance.
    int64_t now = 1'700'000'000'000;
    for (int64_t stamp : {INT64_MIN, INT64_MAX}) {
        ClusterKeyAuth n1(1, key_a(), digest(7), 300s, [&] { return stamp; });
        ClusterKeyAuth n0(0, key_a(), digest(7), 300s, [&] { return now; });
        HelloPayload hello = blank(1);
        n1.fill_proof(hello, 0);
        Status st = n0.verify_proof(hello);
        ASSERT_FALSE(st.ok());
        EXPECT_NE(st.error().message.find("node 1: Hello stamped "), std::string::npos);
    }
}

TEST(IcAuth, AckWithoutHelloRefused) {
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload ack = blank(0);
    n0.fill_proof(ack, 1);
    Status st = n1.verify_proof(ack);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "node 0: a HelloAck without our Hello");
}

TEST(IcAuth, RefusingAHelloThatClaimsALowerIdKeepsOurOwnHelloToThatNode) {
    // Node 1 has sent its Hello to node 0; before node 0's answer comes, a connection to
    // node 1's listener claims to be node 0 (anyone may send that, key or not). Node 1
    // refuses it with a signed HelloAck; node 0's genuine answer must still be accepted.
    ClusterKeyAuth n1(1, key_a(), digest(7)), n0(0, key_a(), digest(7));
    HelloPayload hello = blank(1);
    n1.fill_proof(hello, 0);
    ASSERT_TRUE(n0.verify_proof(hello).ok());
    HelloPayload ack = blank(0);
    n0.fill_proof(ack, 1);
    EXPECT_FALSE(n1.verify_proof(blank(0)).ok());  // the impostor's Hello
    HelloPayload refusal = blank(1);
    refusal.status = static_cast<uint16_t>(HelloStatus::AuthFailed);
    n1.fill_proof(refusal, 0);
    EXPECT_TRUE(n1.verify_proof(ack).ok());
}

TEST(IcAuth, OwnIdRefused) {
    ClusterKeyAuth n0(0, key_a(), digest(7));
    EXPECT_EQ(n0.verify_proof(blank(0)).error().message, "node 0: claims this node's own id");
}

// Redirects stderr (where kv::logf writes) into a file for the object's lifetime.
class StderrCapture {
  public:
    StderrCapture() {
        std::fflush(stderr);
        saved_ = ::dup(2);
        char path[] = "/tmp/kv-auth-log-XXXXXX";
        int fd = ::mkstemp(path);
        path_ = path;
        ::dup2(fd, 2);
        ::close(fd);
    }
    ~StderrCapture() {
        restore();
        ::unlink(path_.c_str());
    }
    std::string text() {
        restore();
        std::ifstream in(path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

  private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        saved_ = -1;
    }
    int saved_ = -1;
    std::string path_;
};

class NullHandler : public MessageHandler {
  public:
    std::span<const MessageSpec> messages() const override { return testing::vmm_node_messages(); }
    void on_message(NodeId, const MsgHeader&, std::span<const uint8_t>) override {}
    void on_peer_lost(NodeId, const Error&) override {}
};

struct TcpPair {
    std::vector<TransportOptions> opts;
    uint16_t port0 = 0;
    TcpPair() {
        std::vector<PeerAddress> nodes;
        std::vector<std::shared_ptr<const Fd>> listeners;
        for (NodeId i = 0; i < 2; ++i) {
            auto l = tcp_listen("127.0.0.1", 0);
            EXPECT_TRUE(l.ok());
            auto port = local_port(l->get());
            EXPECT_TRUE(port.ok());
            if (i == 0) port0 = *port;
            nodes.push_back({i, "127.0.0.1", *port});
            listeners.push_back(std::make_shared<const Fd>(std::move(*l)));
        }
        for (NodeId i = 0; i < 2; ++i) {
            TransportOptions o;
            o.self = i;
            o.nodes = nodes;
            o.config_digest = digest(0x5A);
            o.connect_timeout = 10s;
            o.listener = listeners[i];
            opts.push_back(o);
        }
    }
    std::vector<Result<std::unique_ptr<TcpTransport>>> start(AuthHook& a0, AuthHook& a1) {
        opts[0].auth = &a0;
        opts[1].auth = &a1;
        std::vector<Result<std::unique_ptr<TcpTransport>>> out;
        out.emplace_back(Error{"not started"});
        out.emplace_back(Error{"not started"});
        std::thread t0([&] { out[0] = TcpTransport::create(opts[0], &h0); });
        std::thread t1([&] { out[1] = TcpTransport::create(opts[1], &h1); });
        t0.join();
        t1.join();
        return out;
    }
    NullHandler h0, h1;
};

TEST(IcAuth, TcpTransportsWithTheSameKeyConnect) {
    TcpPair pair;
    ClusterKeyAuth a0(0, key_a(), digest(0x5A)), a1(1, key_a(), digest(0x5A));
    auto ts = pair.start(a0, a1);
    ASSERT_TRUE(ts[0].ok()) << ts[0].error().message;
    ASSERT_TRUE(ts[1].ok()) << ts[1].error().message;
    (*ts[0])->shutdown();
    (*ts[1])->shutdown();
}

TEST(IcAuth, TcpTransportWithAnotherKeyIsRefusedAndLogged) {
    TcpPair pair;
    ClusterKeyAuth a0(0, key_a(), digest(0x5A)), a1(1, key_b(), digest(0x5A));
    pair.opts[0].connect_timeout = 1s;  // node 0 waits this long for the real node 1
    StderrCapture log;
    auto ts = pair.start(a0, a1);
    std::string text = log.text();
    ASSERT_FALSE(ts[0].ok());
    ASSERT_FALSE(ts[1].ok());
    EXPECT_NE(ts[0].error().message.find("refused node 1"), std::string::npos)
        << ts[0].error().message;
    EXPECT_NE(ts[0].error().message.find("authentication failed: node 1: proof does not match"),
              std::string::npos)
        << ts[0].error().message;
    EXPECT_NE(ts[1].error().message.find("node 0 (127.0.0.1:" + std::to_string(pair.port0) +
                                         ") refused the handshake: authentication failed"),
              std::string::npos)
        << ts[1].error().message;
    // The acceptor logged the refusal naming the peer and its address.
    EXPECT_NE(text.find("error: interconnect: refusing node 1 (127.0.0.1:"), std::string::npos)
        << text;
    EXPECT_NE(text.find("authentication failed: node 1: proof does not match"), std::string::npos)
        << text;
}

TEST(IcAuth, AnImpostorsHelloIsRefusedAndTheRealPeerStillConnects) {
    // A node 1 with another key reaches node 0 first: node 0 refuses it, logs it, and
    // goes on waiting; the real node 1 then connects and both start.
    TcpPair pair;
    ClusterKeyAuth a0(0, key_a(), digest(0x5A)), a1(1, key_a(), digest(0x5A));
    ClusterKeyAuth impostor_auth(1, key_b(), digest(0x5A));
    pair.opts[0].auth = &a0;
    StderrCapture log;
    Result<std::unique_ptr<TcpTransport>> t0 = Error{"not started"};
    std::thread acceptor([&] { t0 = TcpTransport::create(pair.opts[0], &pair.h0); });

    TransportOptions impostor = pair.opts[1];
    impostor.auth = &impostor_auth;
    impostor.listener = nullptr;  // node 1's own port stays the real node's
    auto refused = TcpTransport::create(impostor, &pair.h1);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find("refused the handshake: authentication failed"),
              std::string::npos)
        << refused.error().message;

    pair.opts[1].auth = &a1;
    auto t1 = TcpTransport::create(pair.opts[1], &pair.h1);
    acceptor.join();
    ASSERT_TRUE(t1.ok()) << t1.error().message;
    ASSERT_TRUE(t0.ok()) << t0.error().message;
    EXPECT_NE(log.text().find("error: interconnect: refusing node 1 (127.0.0.1:"),
              std::string::npos)
        << log.text();
    (*t0)->shutdown();
    (*t1)->shutdown();
}

}  // namespace
}  // namespace kv
