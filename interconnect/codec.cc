#include "interconnect/codec.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "interconnect/payloads.h"

namespace kv {
namespace {

using Kind = PayloadRule::Kind;

struct TypeInfo {
    MsgType type;
    const char* name;
    PayloadRule rule;
};

// The one table of message types and their payload length rules. Coherence requests and
// acknowledgements carry everything in the header (`arg` = page frame number); only the
// page-carrying replies have a payload, and it is a whole page or nothing.
constexpr TypeInfo kTypes[] = {
    {MsgType::Hello, "Hello", {Kind::Fixed, sizeof(HelloPayload)}},
    {MsgType::HelloAck, "HelloAck", {Kind::Fixed, sizeof(HelloPayload)}},
    {MsgType::Shutdown, "Shutdown", {Kind::Fixed, sizeof(ShutdownPayload)}},
    {MsgType::Ping, "Ping", {Kind::UpTo, kMaxPayload}},
    {MsgType::Pong, "Pong", {Kind::UpTo, kMaxPayload}},
    {MsgType::Ready, "Ready", {Kind::Empty, 0}},
    {MsgType::TscRate, "TscRate", {Kind::Empty, 0}},
    {MsgType::HpetCounter, "HpetCounter", {Kind::Fixed, 8}},
    {MsgType::ReadReq, "ReadReq", {Kind::Empty, 0}},
    {MsgType::WriteReq, "WriteReq", {Kind::Empty, 0}},
    {MsgType::Fetch, "Fetch", {Kind::Empty, 0}},
    {MsgType::FetchInv, "FetchInv", {Kind::Empty, 0}},
    {MsgType::Inv, "Inv", {Kind::Empty, 0}},
    {MsgType::InvAck, "InvAck", {Kind::Empty, 0}},
    {MsgType::FetchReply, "FetchReply", {Kind::EmptyOrPage, kPagePayload}},
    {MsgType::Grant, "Grant", {Kind::EmptyOrPage, kPagePayload}},
    {MsgType::GrantAck, "GrantAck", {Kind::Empty, 0}},
    {MsgType::Ipi, "Ipi", {Kind::Fixed, sizeof(IpiPayload)}},
    {MsgType::ApicIdUpdate, "ApicIdUpdate", {Kind::Fixed, sizeof(ApicIdUpdatePayload)}},
    {MsgType::IoReq, "IoReq", {Kind::Fixed, sizeof(IoPayload)}},
    {MsgType::IoReply, "IoReply", {Kind::Fixed, sizeof(IoPayload)}},
    {MsgType::CtlReq, "CtlReq", {Kind::UpTo, kMaxPayload}},
    {MsgType::CtlReply, "CtlReply", {Kind::UpTo, kMaxPayload}},
};

const TypeInfo* find_type(uint16_t type) {
    for (const TypeInfo& t : kTypes) {
        if (static_cast<uint16_t>(t.type) == type) return &t;
    }
    return nullptr;
}

std::string hex(uint64_t v, int width) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%0*" PRIx64, width, v);
    return buf;
}

}  // namespace

std::optional<PayloadRule> payload_rule(MsgType type) {
    const TypeInfo* t = find_type(static_cast<uint16_t>(type));
    if (!t) return std::nullopt;
    return t->rule;
}

const char* msg_type_name(MsgType type) {
    const TypeInfo* t = find_type(static_cast<uint16_t>(type));
    return t ? t->name : nullptr;
}

Status validate_payload(uint16_t type, uint32_t length) {
    const TypeInfo* t = find_type(type);
    if (!t) return Error{"message type " + hex(type, 4) + " unknown"};
    const auto bad = [&](const std::string& expected) {
        return Error{std::string(t->name) + " payload of " + std::to_string(length) +
                     " bytes (expected " + expected + ")"};
    };
    const uint32_t n = t->rule.size;
    switch (t->rule.kind) {
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
    const TypeInfo* t = find_type(h.type);
    if (!t) return Error{"message type " + hex(h.type, 4) + " unknown"};
    // The global cap before the type's rule: it names an absurd length as such.
    if (h.length > kMaxPayload) {
        return Error{std::string(t->name) + " payload of " + std::to_string(h.length) +
                     " bytes exceeds the maximum of " + std::to_string(kMaxPayload)};
    }
    KV_TRY(validate_payload(h.type, h.length));
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

Status prepare_outgoing(NodeId self, NodeId to, MsgHeader& h, size_t payload_size) {
    std::string where = "send to node " + std::to_string(to) + ": ";
    if (payload_size > kMaxPayload)
        return Error{where + "payload of " + std::to_string(payload_size) +
                     " bytes exceeds the maximum"};
    Status valid = validate_payload(h.type, static_cast<uint32_t>(payload_size));
    if (!valid.ok()) return Error{where + valid.error().message};
    if (h.type == static_cast<uint16_t>(MsgType::Hello) ||
        h.type == static_cast<uint16_t>(MsgType::HelloAck)) {
        // The peer drops a connection that sends these after the handshake.
        return Error{where + msg_type_name(static_cast<MsgType>(h.type)) +
                     " is reserved for the handshake"};
    }
    h.magic = kMsgMagic;
    h.version = kMsgVersion;
    h.length = static_cast<uint32_t>(payload_size);
    h.src = self;
    return {};
}

}  // namespace kv
