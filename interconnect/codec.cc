#include "interconnect/codec.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "interconnect/payloads.h"

namespace kv {
namespace {

using Kind = PayloadRule::Kind;

// The wire's numbering, for names in messages. Which types a node takes, and their payload
// length rules, each layer says itself (MessageHandler::messages()).
struct TypeName {
    MsgType type;
    const char* name;
};
constexpr TypeName kNames[] = {
    {MsgType::Hello, "Hello"},
    {MsgType::HelloAck, "HelloAck"},
    {MsgType::Shutdown, "Shutdown"},
    {MsgType::Ping, "Ping"},
    {MsgType::Pong, "Pong"},
    {MsgType::Ready, "Ready"},
    {MsgType::TscRate, "TscRate"},
    {MsgType::HpetCounter, "HpetCounter"},
    {MsgType::Heartbeat, "Heartbeat"},
    {MsgType::ReadReq, "ReadReq"},
    {MsgType::WriteReq, "WriteReq"},
    {MsgType::Fetch, "Fetch"},
    {MsgType::FetchInv, "FetchInv"},
    {MsgType::Inv, "Inv"},
    {MsgType::InvAck, "InvAck"},
    {MsgType::FetchReply, "FetchReply"},
    {MsgType::Grant, "Grant"},
    {MsgType::GrantAck, "GrantAck"},
    {MsgType::Ipi, "Ipi"},
    {MsgType::ApicIdUpdate, "ApicIdUpdate"},
    {MsgType::IoReq, "IoReq"},
    {MsgType::IoReply, "IoReply"},
    {MsgType::CtlReq, "CtlReq"},
    {MsgType::CtlReply, "CtlReply"},
};

constexpr MessageSpec kHandshake[] = {
    {MsgType::Hello, {Kind::Fixed, sizeof(HelloPayload)}},
    {MsgType::HelloAck, {Kind::Fixed, sizeof(HelloPayload)}},
};

std::string hex(uint64_t v, int width) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%0*" PRIx64, width, v);
    return buf;
}

}  // namespace

std::span<const MessageSpec> handshake_messages() {
    return kHandshake;
}

const char* msg_type_name(MsgType type) {
    for (const TypeName& t : kNames)
        if (t.type == type) return t.name;
    return nullptr;
}

const MessageSpec* find_spec(std::span<const MessageSpec> specs, uint16_t type) {
    for (const MessageSpec& s : specs)
        if (static_cast<uint16_t>(s.type) == type) return &s;
    return nullptr;
}

Status validate_payload(std::span<const MessageSpec> specs, uint16_t type, uint32_t length) {
    const char* name = msg_type_name(static_cast<MsgType>(type));
    if (!name) return Error{"message type " + hex(type, 4) + " unknown"};
    const MessageSpec* spec = find_spec(specs, type);
    if (!spec && (type == uint16_t(MsgType::Hello) || type == uint16_t(MsgType::HelloAck)))
        return Error{std::string("out-of-protocol ") + name + " after the handshake"};
    if (!spec)
        return Error{std::string(name) + " (" + hex(type, 4) +
                     ") is not a message this node takes"};
    const auto bad = [&](const std::string& expected) {
        return Error{std::string(name) + " payload of " + std::to_string(length) +
                     " bytes (expected " + expected + ")"};
    };
    const uint32_t n = spec->rule.size;
    switch (spec->rule.kind) {
        case Kind::Empty:
            if (length != 0) return bad("0");
            break;
        case Kind::EmptyOrPage:
            if (length != 0 && length != n) return bad("0 or " + std::to_string(n));
            break;
        case Kind::Fixed:
            if (length != n) return bad(std::to_string(n));
            break;
        case Kind::UpTo:
            if (length > n) return bad("at most " + std::to_string(n));
            break;
    }
    return {};
}

Result<MsgHeader> decode_header(std::span<const uint8_t, kHeaderBytes> bytes) {
    MsgHeader h;
    std::memcpy(&h, bytes.data(), sizeof h);  // wire layout == memory layout (message.h)
    if (h.magic != kMsgMagic) return Error{"bad magic " + hex(h.magic, 8)};
    if (h.version != kMsgVersion) {
        return Error{"protocol version " + std::to_string(h.version) + " unsupported (expected " +
                     std::to_string(kMsgVersion) + ")"};
    }
    const char* name = msg_type_name(static_cast<MsgType>(h.type));
    if (!name) return Error{"message type " + hex(h.type, 4) + " unknown"};
    // The global cap before the type's rule: it names an absurd length as such.
    if (h.length > kMaxPayload) {
        return Error{std::string(name) + " payload of " + std::to_string(h.length) +
                     " bytes exceeds the maximum of " + std::to_string(kMaxPayload)};
    }
    return h;
}

Result<MsgHeader> decode_header(std::span<const uint8_t, kHeaderBytes> bytes,
                                std::span<const MessageSpec> specs) {
    auto h = decode_header(bytes);
    if (!h) return h;
    KV_TRY(validate_payload(specs, h->type, h->length));
    return h;
}

Result<MsgHeader> decode_header(std::span<const uint8_t> bytes) {
    if (bytes.size() < kHeaderBytes) {
        return Error{"truncated header (" + std::to_string(bytes.size()) + " of " +
                     std::to_string(kHeaderBytes) + " bytes)"};
    }
    return decode_header(bytes.first<kHeaderBytes>());
}

void encode_header(const MsgHeader& h, std::span<uint8_t, kHeaderBytes> out) {
    std::memcpy(out.data(), &h, sizeof h);
}

Status prepare_outgoing(NodeId self, NodeId to, MsgHeader& h, size_t payload_size,
                        std::span<const MessageSpec> specs) {
    std::string where = "send to node " + std::to_string(to) + ": ";
    if (payload_size > kMaxPayload)
        return Error{where + "payload of " + std::to_string(payload_size) +
                     " bytes exceeds the maximum"};
    if (h.type == static_cast<uint16_t>(MsgType::Hello) ||
        h.type == static_cast<uint16_t>(MsgType::HelloAck)) {
        // The peer drops a connection that sends these after the handshake.
        return Error{where + msg_type_name(static_cast<MsgType>(h.type)) +
                     " is reserved for the handshake"};
    }
    Status valid = validate_payload(specs, h.type, static_cast<uint32_t>(payload_size));
    if (!valid.ok()) return Error{where + valid.error().message};
    h.magic = kMsgMagic;
    h.version = kMsgVersion;
    h.length = static_cast<uint32_t>(payload_size);
    h.src = self;
    return {};
}

}  // namespace kv
