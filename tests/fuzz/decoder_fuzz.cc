// libFuzzer target: arbitrary bytes into the header decoder and into the receive-path
// StreamParser (the same code the TCP transport runs). A crash, sanitizer report or broken
// invariant (abort) fails the fuzz ctest (tests/fuzz/CMakeLists.txt).
//
// Input layout: byte 0 picks the chunk sizes the stream is cut into (exercising the
// parser's partial-message and compaction paths); the rest is the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "interconnect/codec.h"
#include "interconnect/stream_parser.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

// A node's message rules, one of each kind (each layer declares its own in the VMM).
using Kind = kv::PayloadRule::Kind;
constexpr kv::MessageSpec kSpecs[] = {
    {kv::MsgType::Shutdown, {Kind::Fixed, 256}}, {kv::MsgType::Ping, {Kind::UpTo, kv::kMaxPayload}},
    {kv::MsgType::Ready, {Kind::Empty, 0}},      {kv::MsgType::Grant, {Kind::EmptyOrPage, 4096}},
    {kv::MsgType::IoReq, {Kind::Fixed, 24}},     {kv::MsgType::CtlReq, {Kind::UpTo, 1000}},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    // 1. The decoder on the first bytes, whatever their count.
    auto h = decode_header(std::span<const uint8_t>(data, size));
    if (h.ok()) {
        check(size >= kHeaderBytes);
        check(h->magic == kMsgMagic && h->length <= kMaxPayload);
        check(msg_type_name(static_cast<MsgType>(h->type)) != nullptr);
        (void)validate_payload(kSpecs, h->type, h->length);
    }
    if (size == 0) return 0;

    // 2. The stream parser, fed in chunks.
    StreamParser p(kSpecs);
    const size_t step = 1 + size_t{data[0] % 64u} * (data[0] & 0x80 ? 997 : 1);
    const uint8_t* in = data + 1;
    size_t left = size - 1;
    while (left > 0) {
        auto room = p.writable();
        check(!room.empty());
        size_t n = std::min({left, step, room.size()});
        std::memcpy(room.data(), in, n);
        p.commit(n);
        in += n;
        left -= n;
        while (true) {
            auto r = p.next();
            if (!r.ok()) return 0;  // a protocol error: the transport would drop the peer
            if (!*r) break;
            const Frame& f = **r;
            check(f.payload.size() == f.header.length);
            check(validate_payload(kSpecs, f.header.type, f.header.length).ok());
            // Touch every payload byte so ASan sees any out-of-bounds span.
            volatile uint8_t sink = 0;
            for (uint8_t b : f.payload) sink = sink ^ b;
            (void)sink;
        }
    }
    (void)p.check_eof();
    return 0;
}
