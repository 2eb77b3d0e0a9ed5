// Fixed-layout payload records of the interconnect's own message types (the handshake's
// Hello, and Shutdown, which every kind of node sends); each layer keeps its own records
// next to it (vmm/node/link_messages.h). Like the header, each record is little-endian and its
// in-memory layout is its wire layout; the static_asserts pin size and offsets so that a change
// here is a deliberate protocol change (bump kMsgVersion). Reserved fields are sent as zero and
// ignored on receipt, so they can gain a meaning without a version bump.
//
// The transport checks only that a payload has the size the receiving layer's rule
// (MessageHandler::messages()) requires; the
// meaning of the fields (a known delivery mode, an I/O size of 1/2/4/8, ...) is checked by
// the layer that consumes the record.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "interconnect/message.h"

namespace kv {

constexpr size_t kPagePayload = 4096;   // Grant/FetchReply carry one guest page (or nothing)
constexpr size_t kDigestBytes = 32;     // cluster configuration digest (e.g. SHA-256)
constexpr size_t kAuthProofBytes = 32;  // placeholder for issue 4's cluster-key proof
constexpr size_t kNonceBytes = 16;

// Hello (connector -> acceptor) and HelloAck (acceptor -> connector). See handshake.h.
struct HelloPayload {
    uint32_t node_id = 0;  // the sender's node id
    uint16_t protocol_version = kMsgVersion;
    uint16_t status = 0;  // HelloAck only: HelloStatus; 0 in a Hello
    uint8_t config_digest[kDigestBytes] = {};
    uint8_t nonce[kNonceBytes] = {};           // reserved for the auth exchange (issue 4)
    uint8_t auth_proof[kAuthProofBytes] = {};  // zero until a cluster key exists
};
static_assert(sizeof(HelloPayload) == 88);
static_assert(offsetof(HelloPayload, protocol_version) == 4);
static_assert(offsetof(HelloPayload, status) == 6);
static_assert(offsetof(HelloPayload, config_digest) == 8);
static_assert(offsetof(HelloPayload, nonce) == 40);
static_assert(offsetof(HelloPayload, auth_proof) == 56);

// Shutdown: the guest stopped on the sending node (power-off, reset, fatal error).
constexpr size_t kShutdownReasonMax = 248;
struct ShutdownPayload {
    int32_t exit_code = 0;
    uint32_t reason_length = 0;  // bytes of `reason` in use; at most kShutdownReasonMax
    char reason[kShutdownReasonMax] = {};

    // Truncates `text` to fit.
    static ShutdownPayload make(int32_t code, std::string_view text) {
        ShutdownPayload p;
        p.exit_code = code;
        p.reason_length = static_cast<uint32_t>(std::min(text.size(), kShutdownReasonMax));
        std::memcpy(p.reason, text.data(), p.reason_length);
        return p;
    }
    // The reason text, or nullopt if reason_length is out of bounds.
    std::optional<std::string_view> reason_text() const {
        if (reason_length > kShutdownReasonMax) return std::nullopt;
        return std::string_view(reason, reason_length);
    }
};
static_assert(sizeof(ShutdownPayload) == 256);
static_assert(offsetof(ShutdownPayload, reason_length) == 4);
static_assert(offsetof(ShutdownPayload, reason) == 8);

// Views a record as the bytes to send.
template <class T>
std::span<const uint8_t> as_bytes_of(const T& record) {
    return {reinterpret_cast<const uint8_t*>(&record), sizeof(T)};  // standard layout, no padding
}

// Copies a received payload into a record; nullopt if the size differs (the codec has
// already refused such a message, so this only guards misuse).
template <class T>
std::optional<T> record_from(std::span<const uint8_t> payload) {
    if (payload.size() != sizeof(T)) return std::nullopt;
    T out;
    std::memcpy(&out, payload.data(), sizeof(T));  // the payload may be unaligned
    return out;
}

}  // namespace kv
