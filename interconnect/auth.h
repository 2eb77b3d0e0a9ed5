// Cluster-key authentication of the connection handshake (an AuthHook, transport_options.h),
// and the SHA-256 / HMAC-SHA256 primitives it and the config digest use (OpenSSL libcrypto).
//
// Every node holds the same secret cluster key (the config's [cluster] key-file). Each Hello
// and HelloAck carries a 16-byte nonce and a 32-byte proof:
//
//   proof = HMAC-SHA256(key, "kerrvisor-hello-v1" || role || sender id || receiver id
//                            || connector nonce || acceptor nonce || config digest
//                            || protocol version || status)
//
// (ids u32, version and status u16, little-endian; role 1 = Hello from the connector,
// 2 = HelloAck from the acceptor; the digest is the verifier's own, so a peer with another
// configuration fails too). The transport's handshake is two messages, the connector's
// Hello first, so:
//
//  - the connector's Hello cannot cover the acceptor's nonce (it has not seen it): its
//    acceptor nonce is all zeros, and its own nonce is an 8-byte wall-clock time in ms
//    followed by 8 random bytes. The acceptor refuses a Hello stamped more than `freshness`
//    away from its own clock and any connector nonce it has already accepted: a recorded
//    Hello can be replayed only to a freshly started acceptor within that window;
//  - the acceptor's HelloAck covers both nonces, so the connector knows the acceptor holds
//    the key now (no replay possible).
//
// A third message (the connector's proof over both nonces) would close the window; see
// docs/configuration.md, "Handshake authentication".
//
// The roles follow the transport's rule: the higher id connects. verify_proof() of a record
// from a higher id checks a Hello, from a lower id a HelloAck. fill_proof() and
// verify_proof() may be called concurrently (a node's acceptor and connector threads).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "interconnect/payloads.h"
#include "interconnect/transport_options.h"

namespace kv {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental SHA-256. Movable, not copyable.
class Sha256 {
  public:
    static Result<Sha256> create();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    ~Sha256();

    void update(std::span<const uint8_t> bytes);
    void update(std::string_view text);
    // The digest of everything given to update(); the object is spent afterwards.
    Result<Sha256Digest> finish();

  private:
    struct Ctx;
    explicit Sha256(std::unique_ptr<Ctx> ctx);
    std::unique_ptr<Ctx> ctx_;
};

Result<Sha256Digest> sha256(std::span<const uint8_t> bytes);
// "what: PATH: <strerror>" on a read error.
Result<Sha256Digest> sha256_file(const std::string& path, std::string_view what);
Result<Sha256Digest> hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
// Lower-case hex.
std::string to_hex(std::span<const uint8_t> bytes);

inline constexpr size_t kMinClusterKeyBytes = 16;
inline constexpr std::chrono::seconds kDefaultHelloFreshness{300};

class ClusterKeyAuth : public AuthHook {
  public:
    // Milliseconds since the Unix epoch (CLOCK_REALTIME); replaceable in tests.
    using WallClock = std::function<int64_t()>;

    // `key` must hold at least kMinClusterKeyBytes (the config checks it); `digest` is this
    // node's config digest.
    ClusterKeyAuth(NodeId self, std::vector<uint8_t> key, const ConfigDigest& digest,
                   std::chrono::milliseconds freshness = kDefaultHelloFreshness,
                   WallClock clock = {});
    ~ClusterKeyAuth() override;
    ClusterKeyAuth(const ClusterKeyAuth&) = delete;
    ClusterKeyAuth& operator=(const ClusterKeyAuth&) = delete;

    void fill_proof(HelloPayload& mine, NodeId peer) override;
    // Errors name the peer: "node 2: proof does not match (...)".
    Status verify_proof(const HelloPayload& theirs) override;

  private:
    using Nonce = std::array<uint8_t, kNonceBytes>;
    struct ProofInput {
        uint8_t role;
        NodeId sender, receiver;
        Nonce connector_nonce, acceptor_nonce;
        uint16_t version, status;
    };
    Result<Sha256Digest> proof(const ProofInput& in) const;
    bool random_nonce(Nonce& out);

    const NodeId self_;
    std::vector<uint8_t> key_;
    const ConfigDigest digest_;
    const std::chrono::milliseconds freshness_;
    WallClock clock_;

    std::mutex mu_;
    std::map<NodeId, Nonce> sent_;      // connector: the nonce of our Hello to each peer
    std::map<NodeId, Nonce> received_;  // acceptor: the accepted Hello nonce of each peer
    std::set<Nonce> seen_;              // acceptor: every connector nonce accepted
    bool broken_ = false;               // randomness or HMAC failed: refuse everything
};

}  // namespace kv
