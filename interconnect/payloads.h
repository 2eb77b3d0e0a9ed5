// Fixed-layout payload records of the message types that carry one (message.h lists the
// types). Like the header, each record is little-endian and its in-memory layout is its
// wire layout; the static_asserts pin size and offsets so that a change here is a
// deliberate protocol change (bump kMsgVersion). Reserved fields are sent as zero and
// ignored on receipt, so they can gain a meaning without a version bump.
//
// The codec (codec.h) checks only that a payload has the size its type requires; the
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

// Ipi: deliver an interrupt to a vCPU of the receiving node. Header `arg` is unused; the
// destination is in the record because the sender has already expanded shorthands and
// logical destinations (architecture.md, vCPUs and interrupts).
struct IpiPayload {
    uint32_t dest_vcpu = 0;
    uint8_t vector = 0;
    uint8_t delivery_mode =
        0;                // LAPIC ICR encoding: 0 fixed, 1 lowest, 2 SMI, 4 NMI, 5 INIT, 6 SIPI
    uint8_t level = 0;    // 1 assert, 0 de-assert
    uint8_t trigger = 0;  // 0 edge, 1 level
};
static_assert(sizeof(IpiPayload) == 8);
static_assert(offsetof(IpiPayload, vector) == 4);
static_assert(offsetof(IpiPayload, delivery_mode) == 5);
static_assert(offsetof(IpiPayload, level) == 6);
static_assert(offsetof(IpiPayload, trigger) == 7);

// ApicIdUpdate: a LAPIC's addressing state, announced to every node. `arg` is the vCPU id.
struct ApicIdUpdatePayload {
    uint32_t apic_id = 0;
    uint32_t ldr = 0;    // logical destination register
    uint32_t dfr = 0;    // destination format register
    uint32_t flags = 0;  // bit 0: the LAPIC is software-enabled (SVR bit 8)
};
static_assert(sizeof(ApicIdUpdatePayload) == 16);
static_assert(offsetof(ApicIdUpdatePayload, ldr) == 4);
static_assert(offsetof(ApicIdUpdatePayload, dfr) == 8);

// IoReq (vCPU node -> I/O node) and IoReply (back, same request_id, `data` filled for a
// read). One record type for both so a reply can echo the request.
// Eoi: a vCPU EOIed a level-triggered vector (`address` is the vector); the I/O node's
// IOAPIC re-evaluates its pins. Sent as an IoReq; it has no reply.
enum class IoKind : uint8_t { Pio = 0, Mmio = 1, Eoi = 2 };
struct IoPayload {
    uint8_t kind = 0;      // IoKind
    uint8_t is_write = 0;  // 1 write, 0 read
    uint8_t size = 0;      // access width in bytes: 1, 2, 4 or 8
    uint8_t reserved0 = 0;
    uint32_t reserved1 = 0;
    uint64_t address = 0;  // port number (PIO) or guest-physical address (MMIO)
    uint64_t data = 0;     // written value, or the value read (IoReply)
};
static_assert(sizeof(IoPayload) == 24);
static_assert(offsetof(IoPayload, size) == 2);
static_assert(offsetof(IoPayload, address) == 8);
static_assert(offsetof(IoPayload, data) == 16);

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
