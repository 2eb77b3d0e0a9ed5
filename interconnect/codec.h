// Decoding and validation of the wire header (message.h) and of each type's payload length.
//
// Every header received from a peer passes decode_header() (framing: magic, version, a type
// of the wire's numbering, the size cap) and then validate_payload() against the message
// types the receiving node takes, before anything else looks at it; a failure is a
// protocol error that drops the connection (docs/interconnect.md). Each layer declares the
// types it takes and their length rules itself (MessageHandler::messages(), next to its
// handler: the coherence engine, the node link, the cluster control); the router gathers
// them. send() checks the same rules (a node never sends what its peer would refuse).
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
        EmptyOrPage,  // 0 or exactly `size` bytes (a page)
        Fixed,        // exactly `size` bytes (a payloads.h record)
        UpTo,         // 0..size bytes
    };
    Kind kind = Kind::Empty;
    uint32_t size = 0;
};

// One message type a layer takes, with its payload length rule.
struct MessageSpec {
    MsgType type;
    PayloadRule rule;
};

// The handshake's own messages (Hello, HelloAck), which the transport checks itself.
std::span<const MessageSpec> handshake_messages();

// "Grant", "IoReq", ...: the wire's numbering (message.h); nullptr for a number it lacks.
const char* msg_type_name(MsgType type);

// The spec of `type` in `specs`, or nullptr.
const MessageSpec* find_spec(std::span<const MessageSpec> specs, uint16_t type);

// Checks `length` against the rule `specs` give the type. Errors name the type and what was
// wrong: "message type 0x9999 unknown", "Grant (0x0208) is not a message this node takes",
// "Grant payload of 12 bytes (expected 0 or 4096)".
Status validate_payload(std::span<const MessageSpec> specs, uint16_t type, uint32_t length);

// Checks a message a transport is about to send to `to` (payload size, the rule `specs`
// give it, no handshake types after the handshake) and stamps the header: magic, version,
// length, src = `self`. Errors start with "send to node N: ".
Status prepare_outgoing(NodeId self, NodeId to, MsgHeader& h, size_t payload_size,
                        std::span<const MessageSpec> specs);

// Parses and checks a header's framing: magic, version, a type of the wire's numbering,
// the payload size cap (kMaxPayload). The type's own length rule is validate_payload's.
Result<MsgHeader> decode_header(std::span<const uint8_t, kHeaderBytes> bytes);
// Same, then validate_payload(specs, ...).
Result<MsgHeader> decode_header(std::span<const uint8_t, kHeaderBytes> bytes,
                                std::span<const MessageSpec> specs);
// Same, for a buffer of any size: fewer than 32 bytes is "truncated header (N of 32 bytes)".
Result<MsgHeader> decode_header(std::span<const uint8_t> bytes);

// Writes the header's wire form (which is its in-memory form, message.h).
void encode_header(const MsgHeader& h, std::span<uint8_t, kHeaderBytes> out);

}  // namespace kv
