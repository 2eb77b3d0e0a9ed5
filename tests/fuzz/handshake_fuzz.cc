// libFuzzer target: fuzzed Hello records into the handshake verifier (check_hello(),
// interconnect/handshake.h, with the cluster-key auth of interconnect/auth.h) of node 1 of
// nodes 0..3, against a fixed cluster key and config digest, each answered with the
// HelloAck the TCP transport's acceptor builds (make_hello()), while node 1's own Hello to
// node 0 waits for its answer; then fuzzed HelloAck records as node 0's answer, and node
// 0's genuine answer. A crash, sanitizer report, hang or broken invariant (abort) fails
// the fuzz ctest (tests/fuzz/CMakeLists.txt).
//
// What must hold: every record is refused or accepted with a known status, never both
// ways; without the key nothing is accepted (a record the key did not sign is accepted
// only if its proof is the one the key gives); a Hello signed with the key (the fuzzer
// signs some, as a node holding the key would, over the fields auth.h lists) is accepted
// if and only if its version, digest, sender, time stamp and nonce are acceptable; and
// node 0's genuine HelloAck is accepted whatever came in on node 1's listener before it.
//
// Input layout: records of 1 + 88 bytes until the input ends (a short last one is padded
// with zeros):
//   u8 mode: bit 0, sign the record with the cluster key; bit 1, a HelloAck from node 0
//            (else a Hello to node 1's listener); bit 2, keep the fuzzed time stamp (else
//            nonce bytes 0..7 are set to node 1's clock plus a small skew from byte 8)
//   HelloPayload (interconnect/payloads.h, its wire form)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "interconnect/auth.h"
#include "interconnect/handshake.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr int64_t kNow = 1'700'000'000'000;  // ms: every node's wall clock
constexpr std::chrono::milliseconds kFreshness{300'000};
constexpr kv::NodeId kSelf = 1, kLastNode = 3;

std::vector<uint8_t> cluster_key() {
    std::vector<uint8_t> k(32);
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0xA0 + i);
    return k;
}

kv::ConfigDigest config_digest() {
    kv::ConfigDigest d{};
    for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(i * 7 + 1);
    return d;
}

template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
    for (size_t i = 0; i < sizeof v; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// The proof a node holding the key puts in `p` for `receiver` (interconnect/auth.h):
// role 1, a Hello (acceptor nonce zero); role 2, a HelloAck answering `connector_nonce`.
void sign(kv::HelloPayload& p, kv::NodeId receiver, uint8_t role, const uint8_t* connector_nonce) {
    constexpr std::string_view kLabel = "kerrvisor-hello-v1";
    std::vector<uint8_t> msg(kLabel.begin(), kLabel.end());
    msg.push_back(role);
    put_le<uint32_t>(msg, p.node_id);
    put_le<uint32_t>(msg, receiver);
    const uint8_t zero[kv::kNonceBytes] = {};
    const uint8_t* cn = role == 1 ? p.nonce : connector_nonce;
    const uint8_t* an = role == 1 ? zero : p.nonce;
    msg.insert(msg.end(), cn, cn + kv::kNonceBytes);
    msg.insert(msg.end(), an, an + kv::kNonceBytes);
    const kv::ConfigDigest d = config_digest();
    msg.insert(msg.end(), d.begin(), d.end());
    put_le<uint16_t>(msg, p.protocol_version);
    put_le<uint16_t>(msg, p.status);
    auto mac = kv::hmac_sha256(cluster_key(), msg);
    check(mac.ok());
    std::memcpy(p.auth_proof, mac->data(), mac->size());
}

bool known(kv::HelloStatus s) {
    return s >= kv::HelloStatus::Ok && s <= kv::HelloStatus::AuthFailed &&
           std::string_view(kv::hello_status_text(s)) != "unknown refusal";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    static const bool quiet = [] {
        set_log_level(LogLevel::Error);
        return true;
    }();
    (void)quiet;
    const auto clock = [] { return kNow; };
    const ConfigDigest digest = config_digest();
    ClusterKeyAuth auth1(kSelf, cluster_key(), digest, kFreshness, clock);
    ClusterKeyAuth auth0(0, cluster_key(), digest, kFreshness, clock);
    TransportOptions opts1, opts0, open;  // open: no cluster key
    opts1.self = kSelf;
    opts1.config_digest = digest;
    opts1.auth = &auth1;
    opts0.self = 0;
    opts0.config_digest = digest;
    opts0.auth = &auth0;
    open.self = kSelf;
    open.config_digest = digest;

    // Node 1 connects to node 0, which accepts and answers; the answer is held back.
    const HelloPayload hello = make_hello(opts1, 0, HelloStatus::Ok);
    std::string why;
    check(check_hello(opts0, hello, &why) == HelloStatus::Ok);
    const HelloPayload ack = make_hello(opts0, kSelf, HelloStatus::Ok);
    bool answered = false;  // a HelloAck from node 0 was accepted

    std::set<std::vector<uint8_t>> nonces;  // of the Hellos node 1 accepted
    std::set<NodeId> connected;
    for (size_t i = 0; i < size; i += 1 + sizeof(HelloPayload)) {
        const uint8_t mode = data[i];
        HelloPayload p;
        std::memset(&p, 0, sizeof p);
        std::memcpy(&p, data + i + 1, std::min(sizeof p, size - i - 1));
        const bool is_ack = mode & 2;
        if (!(mode & 4)) {
            const int64_t stamp = kNow + (int8_t(p.nonce[8]) * 10'000);
            for (size_t b = 0; b < 8; ++b)
                p.nonce[b] = static_cast<uint8_t>(uint64_t(stamp) >> (8 * b));
        }
        if (mode & 1) {
            if (is_ack) p.node_id = 0;
            sign(p, kSelf, is_ack ? 2 : 1, hello.nonce);
        }
        HelloPayload genuine = p;  // what the key would have signed
        if (is_ack)
            sign(genuine, kSelf, 2, hello.nonce);
        else
            sign(genuine, kSelf, 1, nullptr);
        const bool proof_ok = std::memcmp(genuine.auth_proof, p.auth_proof, kAuthProofBytes) == 0;
        const bool version_ok = p.protocol_version == kMsgVersion;
        const bool digest_ok = std::memcmp(p.config_digest, digest.data(), kDigestBytes) == 0;

        // Without a key only the version and the digest count.
        why.clear();
        const HelloStatus plain = check_hello(open, p, &why);
        check(known(plain));
        check((plain == HelloStatus::Ok) == (version_ok && digest_ok));

        why.clear();
        if (is_ack) {
            // Node 1's connector reads node 0's answer (tcp_transport.cc checks its node id
            // and status before the proof).
            if (p.node_id != 0 || p.status != 0 || answered) continue;
            const HelloStatus s = check_hello(opts1, p, &why);
            check(known(s));
            if (s == HelloStatus::Ok) {
                check(proof_ok && version_ok && digest_ok);
                answered = true;
            }
            continue;
        }
        // Node 1's acceptor, as tcp_transport.cc runs it.
        const HelloStatus s = check_hello(opts1, p, &why);
        check(known(s));
        check((s == HelloStatus::AuthFailed) == !why.empty());
        if (s == HelloStatus::Ok) check(proof_ok && version_ok && digest_ok && p.node_id != kSelf);
        if (proof_ok && version_ok && digest_ok && p.node_id > kSelf) {
            int64_t stamp = 0;
            std::memcpy(&stamp, p.nonce, 8);
            const __int128 skew = __int128{kNow} - stamp;
            const bool fresh = skew <= kFreshness.count() && -skew <= kFreshness.count();
            const bool seen = nonces.count({p.nonce, p.nonce + kNonceBytes}) > 0;
            check((s == HelloStatus::Ok) == (fresh && !seen));
        }
        HelloStatus answer = s;
        if (answer == HelloStatus::Ok && (p.node_id < kSelf || p.node_id > kLastNode))
            answer = HelloStatus::UnexpectedNode;
        if (answer == HelloStatus::Ok && connected.count(p.node_id))
            answer = HelloStatus::DuplicateNode;
        if (s == HelloStatus::Ok) nonces.insert({p.nonce, p.nonce + kNonceBytes});
        if (answer == HelloStatus::Ok) connected.insert(p.node_id);
        const HelloPayload reply = make_hello(opts1, p.node_id, answer);
        check(reply.node_id == kSelf && reply.status == static_cast<uint16_t>(answer));
    }
    // Node 0's genuine answer to node 1's Hello is accepted, whatever came in meanwhile.
    if (!answered) {
        why.clear();
        check(check_hello(opts1, ack, &why) == HelloStatus::Ok);
    }
    return 0;
}
