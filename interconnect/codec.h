// Decoding and validation of the wire header (message.h) and of each type's payload length.
//
// Every header received from a peer passes decode_header() before anything else looks at
// it; a failure is a protocol error that drops the connection (docs/interconnect.md). The
// per-type length rules are one table (codec.cc), shared by the receive path, by send()
// (a node never sends what its peer would refuse) and by the fuzz target.
//
// Pure functions: no system calls, no allocation except for the Error text on failure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.h"
#include "interconnect/message.h"

namespace kv {

constexpr size_t kHeaderBytes = sizeof(MsgHeader);

// The payload length rule of one message type.
struct PayloadRule {
    enum class Kind : uint8_t {
        Empty,        // exactly 0 bytes
        EmptyOrPage,  // 0 or exactly kPagePayload bytes
        Fixed,        // exactly `size` bytes (a payloads.h record)
        UpTo,         // 0..size bytes
    };
    Kind kind = Kind::Empty;
    uint32_t size = 0;
};

// The rule for a known type; nullopt for an unknown one.
std::optional<PayloadRule> payload_rule(MsgType type);

// "Grant", "IoReq", ...; nullptr for an unknown type.
const char* msg_type_name(MsgType type);

// Checks `length` against the type's rule. Errors name the type and what was wrong:
// "message type 0x9999 unknown", "Grant payload of 12 bytes (expected 0 or 4096)".
Status validate_payload(uint16_t type, uint32_t length);

// Checks a message a transport is about to send to `to` (payload size and rule, no
// handshake types after the handshake) and stamps the header: magic, version, length,
// src = `self`. Errors start with "send to node N: ".
Status prepare_outgoing(NodeId self, NodeId to, MsgHeader& h, size_t payload_size);

// Parses and validates a header: magic, version, known type, payload length rule.
Result<MsgHeader> decode_header(std::span<const uint8_t, kHeaderBytes> bytes);
// Same, for a buffer of any size: fewer than 32 bytes is "truncated header (N of 32 bytes)".
Result<MsgHeader> decode_header(std::span<const uint8_t> bytes);

// Writes the header's wire form (which is its in-memory form, message.h).
void encode_header(const MsgHeader& h, std::span<uint8_t, kHeaderBytes> out);

}  // namespace kv
