#include "interconnect/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"

namespace kv {

struct Sha256::Ctx {
    EVP_MD_CTX* md = nullptr;
    bool failed = false;
    ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256(std::unique_ptr<Ctx> ctx) : ctx_(std::move(ctx)) {}
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

Result<Sha256> Sha256::create() {
    auto ctx = std::make_unique<Ctx>();
    ctx->md = EVP_MD_CTX_new();
    if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), nullptr) != 1)
        return Error{"sha256: OpenSSL could not set up a digest"};
    return Sha256(std::move(ctx));
}

void Sha256::update(std::span<const uint8_t> bytes) {
    if (!ctx_ || ctx_->failed || bytes.empty()) return;
    if (EVP_DigestUpdate(ctx_->md, bytes.data(), bytes.size()) != 1) ctx_->failed = true;
}

void Sha256::update(std::string_view text) {
    update(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Result<Sha256Digest> Sha256::finish() {
    if (!ctx_) return Error{"sha256: digest already finished"};
    Sha256Digest out{};
    unsigned len = 0;
    bool ok =
        !ctx_->failed && EVP_DigestFinal_ex(ctx_->md, out.data(), &len) == 1 && len == out.size();
    ctx_.reset();
    if (!ok) return Error{"sha256: OpenSSL failed"};
    return out;
}

Result<Sha256Digest> sha256(std::span<const uint8_t> bytes) {
    Result<Sha256> h = Sha256::create();
    if (!h.ok()) return h.error();
    h->update(bytes);
    return h->finish();
}

Result<Sha256Digest> sha256_file(const std::string& path, std::string_view what) {
    const std::string name = std::string(what) + ": " + path;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) return Error::from_errno(name);
    Result<Sha256> h = Sha256::create();
    if (!h.ok()) return h.error();
    std::vector<uint8_t> buf(1 << 20);
    while (true) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(name);
        if (n == 0) break;
        h->update(std::span(buf.data(), static_cast<size_t>(n)));
    }
    return h->finish();
}

Result<Sha256Digest> hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
    Sha256Digest out{};
    unsigned len = 0;
    static const uint8_t kEmpty = 0;
    if (!HMAC(EVP_sha256(), key.empty() ? &kEmpty : key.data(), static_cast<int>(key.size()),
              data.empty() ? &kEmpty : data.data(), data.size(), out.data(), &len) ||
        len != out.size()) {
        return Error{"hmac-sha256: OpenSSL failed"};
    }
    return out;
}

std::string to_hex(std::span<const uint8_t> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 2);
    for (uint8_t b : bytes) {
        s += kDigits[b >> 4];
        s += kDigits[b & 15];
    }
    return s;
}

namespace {

constexpr std::string_view kLabel = "kerrvisor-hello-v1";
constexpr uint8_t kRoleHello = 1;     // connector -> acceptor
constexpr uint8_t kRoleHelloAck = 2;  // acceptor -> connector

int64_t realtime_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::string peer_name(NodeId id) {
    return "node " + std::to_string(id);
}

// 1234 -> "1.2 s"
std::string seconds(int64_t ms) {
    const char* sign = ms < 0 ? "-" : "";
    if (ms < 0) ms = -ms;
    return sign + std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

}  // namespace

ClusterKeyAuth::ClusterKeyAuth(NodeId self, std::vector<uint8_t> key, const ConfigDigest& digest,
                               std::chrono::milliseconds freshness, WallClock clock)
    : self_(self),
      key_(std::move(key)),
      digest_(digest),
      freshness_(freshness),
      clock_(clock ? std::move(clock) : WallClock(realtime_ms)) {}

ClusterKeyAuth::~ClusterKeyAuth() {
    if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
}

Result<Sha256Digest> ClusterKeyAuth::proof(const ProofInput& in) const {
    std::vector<uint8_t> msg(kLabel.begin(), kLabel.end());
    msg.push_back(in.role);
    put_le<uint32_t>(msg, in.sender);
    put_le<uint32_t>(msg, in.receiver);
    msg.insert(msg.end(), in.connector_nonce.begin(), in.connector_nonce.end());
    msg.insert(msg.end(), in.acceptor_nonce.begin(), in.acceptor_nonce.end());
    msg.insert(msg.end(), digest_.begin(), digest_.end());
    put_le<uint16_t>(msg, in.version);
    put_le<uint16_t>(msg, in.status);
    return hmac_sha256(key_, msg);
}

bool ClusterKeyAuth::random_nonce(Nonce& out) {
    size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

void ClusterKeyAuth::fill_proof(HelloPayload& mine, NodeId peer) {
    std::lock_guard lock(mu_);
    Nonce own{};
    ProofInput in{};
    in.sender = self_;
    in.receiver = peer;
    in.version = mine.protocol_version;
    in.status = mine.status;
    // A refusal (non-zero status) is always a HelloAck, even to a Hello that claimed a lower
    // id: signing it as a Hello would replace the nonce of our own Hello to that node, and
    // its genuine HelloAck would then be refused.
    if (self_ > peer && mine.status == 0) {
        // Connector: time stamp, then 8 random bytes.
        in.role = kRoleHello;
        const uint64_t now = static_cast<uint64_t>(clock_());
        for (size_t i = 0; i < 8; ++i) own[i] = static_cast<uint8_t>(now >> (8 * i));
        Nonce rnd{};
        if (!random_nonce(rnd)) {
            KV_ERROR("interconnect: auth: getrandom failed: %s", std::strerror(errno));
            broken_ = true;
        }
        std::memcpy(own.data() + 8, rnd.data(), 8);
        in.connector_nonce = own;
        sent_[peer] = own;
    } else {
        // Acceptor: covers the connector's accepted nonce (zeros if its Hello was refused).
        in.role = kRoleHelloAck;
        if (!random_nonce(own)) {
            KV_ERROR("interconnect: auth: getrandom failed: %s", std::strerror(errno));
            broken_ = true;
        }
        auto it = received_.find(peer);
        if (it != received_.end()) in.connector_nonce = it->second;
        in.acceptor_nonce = own;
    }
    std::memcpy(mine.nonce, own.data(), own.size());
    Result<Sha256Digest> p = proof(in);
    if (!p.ok() || broken_) {
        if (!p.ok()) KV_ERROR("interconnect: auth: %s", p.error().message.c_str());
        broken_ = true;
        std::memset(mine.auth_proof, 0, sizeof mine.auth_proof);
        return;
    }
    std::memcpy(mine.auth_proof, p->data(), p->size());
}

Status ClusterKeyAuth::verify_proof(const HelloPayload& theirs) {
    std::lock_guard lock(mu_);
    const NodeId peer = theirs.node_id;
    const std::string who = peer_name(peer);
    if (broken_) return Error{who + ": cannot check its proof (this node's own auth failed)"};
    if (peer == self_) return Error{who + ": claims this node's own id"};

    ProofInput in{};
    in.sender = peer;
    in.receiver = self_;
    in.version = theirs.protocol_version;
    in.status = theirs.status;
    Nonce nonce;
    std::memcpy(nonce.data(), theirs.nonce, nonce.size());
    const bool hello = peer > self_;
    if (hello) {
        in.role = kRoleHello;
        in.connector_nonce = nonce;
    } else {
        in.role = kRoleHelloAck;
        auto it = sent_.find(peer);
        if (it == sent_.end()) return Error{who + ": a HelloAck without our Hello"};
        in.connector_nonce = it->second;
        in.acceptor_nonce = nonce;
    }
    Result<Sha256Digest> want = proof(in);
    if (!want.ok()) return Error{who + ": " + want.error().message};
    if (CRYPTO_memcmp(want->data(), theirs.auth_proof, want->size()) != 0) {
        return Error{who +
                     ": proof does not match (it lacks this cluster's key, or was made for "
                     "another handshake)"};
    }
    if (hello) {
        // The proof is genuine; refuse it if stale or seen before (a replay).
        int64_t stamp = 0;
        for (size_t i = 0; i < 8; ++i) stamp |= int64_t{nonce[i]} << (8 * i);
        // How far apart the clocks are, without overflow: the stamp may be any 64-bit value.
        const int64_t now = clock_();
        const uint64_t apart =
            stamp > now ? uint64_t(stamp) - uint64_t(now) : uint64_t(now) - uint64_t(stamp);
        if (apart > uint64_t(freshness_.count())) {
            const auto shown = int64_t(std::min<uint64_t>(apart, INT64_MAX));
            return Error{who + ": Hello stamped " + seconds(stamp > now ? -shown : shown) +
                         " from this host's clock (at most " + seconds(freshness_.count()) +
                         " allowed): a replay, or the hosts' clocks differ"};
        }
        if (!seen_.insert(nonce).second) return Error{who + ": replayed Hello (nonce seen before)"};
        received_[peer] = nonce;
    } else {
        sent_.erase(peer);  // one HelloAck per Hello
    }
    return {};
}

}  // namespace kv
