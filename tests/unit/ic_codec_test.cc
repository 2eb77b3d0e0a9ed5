// The wire codec (decode_header, validate_payload) and the receive-path StreamParser.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "interconnect/codec.h"
#include "interconnect/payloads.h"
#include "interconnect/stream_parser.h"
#include "tests/unit/test_support.h"
#include "vmm/node/link_messages.h"

namespace kv {
namespace {

// What a VMM node checks received headers against: every layer's rules, and the
// handshake's (which the TCP transport checks itself during the handshake).
std::span<const MessageSpec> all_specs() {
    static const std::vector<MessageSpec> v = [] {
        std::vector<MessageSpec> out;
        for (auto part : {handshake_messages(), testing::vmm_node_messages()})
            out.insert(out.end(), part.begin(), part.end());
        return out;
    }();
    return v;
}

std::vector<uint8_t> header_bytes(uint16_t type, uint32_t length) {
    MsgHeader h;
    h.type = type;
    h.length = length;
    h.src = 3;
    h.request_id = 77;
    h.arg = 0x1234;
    std::vector<uint8_t> out(kHeaderBytes);
    encode_header(h, std::span<uint8_t, kHeaderBytes>(out.data(), kHeaderBytes));
    return out;
}

std::vector<uint8_t> message(MsgType type, std::vector<uint8_t> payload, uint64_t arg = 0) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(type);
    h.length = static_cast<uint32_t>(payload.size());
    h.arg = arg;
    std::vector<uint8_t> out(kHeaderBytes + payload.size());
    std::memcpy(out.data(), &h, sizeof h);
    std::copy(payload.begin(), payload.end(), out.begin() + kHeaderBytes);
    return out;
}

std::string decode_error(const std::vector<uint8_t>& bytes) {
    auto r = decode_header(std::span<const uint8_t>(bytes));
    if (!r.ok()) return r.error().message;
    Status v = validate_payload(all_specs(), r->type, r->length);
    return v.ok() ? "accepted" : v.error().message;
}

struct Valid {
    MsgType type;
    std::vector<uint32_t> lengths;
};

const std::vector<Valid>& valid_table() {
    static const std::vector<Valid> t = {
        {MsgType::Hello, {sizeof(HelloPayload)}},
        {MsgType::HelloAck, {sizeof(HelloPayload)}},
        {MsgType::Shutdown, {sizeof(ShutdownPayload)}},
        {MsgType::Ping, {0, 1, 4096, kMaxPayload}},
        {MsgType::Pong, {0, 1, 4096, kMaxPayload}},
        {MsgType::Ready, {0}},
        {MsgType::TscRate, {0}},
        {MsgType::HpetCounter, {8}},
        {MsgType::ReadReq, {0}},
        {MsgType::WriteReq, {0}},
        {MsgType::Fetch, {0}},
        {MsgType::FetchInv, {0}},
        {MsgType::Inv, {0}},
        {MsgType::InvAck, {0}},
        {MsgType::FetchReply, {0, 4096}},
        {MsgType::Grant, {0, 4096}},
        {MsgType::GrantAck, {0}},
        {MsgType::Ipi, {sizeof(IpiPayload)}},
        {MsgType::ApicIdUpdate, {sizeof(ApicIdUpdatePayload)}},
        {MsgType::IoReq, {sizeof(IoPayload)}},
        {MsgType::IoReply, {sizeof(IoPayload)}},
        {MsgType::CtlReq, {0, 1, 4096, kMaxPayload}},
        {MsgType::CtlReply, {0, 1, 4096, kMaxPayload}},
    };
    return t;
}

TEST(IcCodec, AcceptsEveryValidTypeAndLength) {
    for (const Valid& v : valid_table()) {
        for (uint32_t len : v.lengths) {
            auto bytes = header_bytes(static_cast<uint16_t>(v.type), len);
            auto h = decode_header(std::span<const uint8_t, kHeaderBytes>(bytes.data(), 32),
                                   all_specs());
            ASSERT_TRUE(h.ok()) << msg_type_name(v.type) << " " << len << ": " << h.error().message;
            EXPECT_EQ(h->type, static_cast<uint16_t>(v.type));
            EXPECT_EQ(h->length, len);
            EXPECT_EQ(h->src, 3u);
            EXPECT_EQ(h->request_id, 77u);
            EXPECT_EQ(h->arg, 0x1234u);
        }
    }
}

TEST(IcCodec, RejectsWrongLengthForEachType) {
    // For every type, lengths next to each valid one (and 12) are refused, naming the type.
    for (const Valid& v : valid_table()) {
        std::vector<uint32_t> bad = {12};
        for (uint32_t len : v.lengths) {
            if (len > 0) bad.push_back(len - 1);
            bad.push_back(len + 1);
        }
        for (uint32_t len : bad) {
            if (std::find(v.lengths.begin(), v.lengths.end(), len) != v.lengths.end()) continue;
            const bool up_to = v.type == MsgType::Ping || v.type == MsgType::Pong ||
                               v.type == MsgType::CtlReq || v.type == MsgType::CtlReply;
            if (up_to && len <= kMaxPayload) continue;
            std::string err = decode_error(header_bytes(static_cast<uint16_t>(v.type), len));
            EXPECT_NE(err, "accepted") << msg_type_name(v.type) << " " << len;
            EXPECT_NE(err.find(msg_type_name(v.type)), std::string::npos) << err;
            EXPECT_NE(err.find(std::to_string(len) + " bytes"), std::string::npos) << err;
        }
    }
}

TEST(IcCodec, ErrorMessagesNameTheProblem) {
    EXPECT_EQ(decode_error(header_bytes(static_cast<uint16_t>(MsgType::Grant), 12)),
              "Grant payload of 12 bytes (expected 0 or 4096)");
    EXPECT_EQ(decode_error(header_bytes(0x9999, 0)), "message type 0x9999 unknown");
    EXPECT_EQ(decode_error(header_bytes(static_cast<uint16_t>(MsgType::Inv), 4096)),
              "Inv payload of 4096 bytes (expected 0)");
    EXPECT_EQ(decode_error(header_bytes(static_cast<uint16_t>(MsgType::IoReq), 8)),
              "IoReq payload of 8 bytes (expected 24)");
}

TEST(IcCodec, RejectsBadMagic) {
    auto bytes = header_bytes(static_cast<uint16_t>(MsgType::ReadReq), 0);
    bytes[0] ^= 0xFF;
    EXPECT_EQ(decode_error(bytes), "bad magic 0x4b5652b4");
}

TEST(IcCodec, RejectsOtherVersion) {
    auto bytes = header_bytes(static_cast<uint16_t>(MsgType::ReadReq), 0);
    bytes[4] = 2;
    EXPECT_EQ(decode_error(bytes), "protocol version 2 unsupported (expected 1)");
}

TEST(IcCodec, RejectsOversizedLength) {
    EXPECT_EQ(decode_error(header_bytes(static_cast<uint16_t>(MsgType::Ping), kMaxPayload + 1)),
              "Ping payload of 65537 bytes exceeds the maximum of 65536");
    EXPECT_EQ(decode_error(header_bytes(static_cast<uint16_t>(MsgType::Grant), 0xFFFFFFFFu)),
              "Grant payload of 4294967295 bytes exceeds the maximum of 65536");
}

TEST(IcCodec, RejectsTruncatedHeader) {
    auto bytes = header_bytes(static_cast<uint16_t>(MsgType::ReadReq), 0);
    bytes.resize(31);
    EXPECT_EQ(decode_error(bytes), "truncated header (31 of 32 bytes)");
    EXPECT_EQ(decode_error({}), "truncated header (0 of 32 bytes)");
}

TEST(IcCodec, ValidatePayloadOnItsOwn) {
    EXPECT_TRUE(
        validate_payload(all_specs(), static_cast<uint16_t>(MsgType::FetchReply), 4096).ok());
    EXPECT_TRUE(validate_payload(all_specs(), static_cast<uint16_t>(MsgType::FetchReply), 0).ok());
    EXPECT_FALSE(
        validate_payload(all_specs(), static_cast<uint16_t>(MsgType::FetchReply), 4095).ok());
    EXPECT_FALSE(validate_payload(all_specs(), 0, 0).ok());
}

TEST(IcCodec, PayloadRecordsRoundTrip) {
    IoPayload io;
    io.kind = static_cast<uint8_t>(IoKind::Mmio);
    io.is_write = 1;
    io.size = 4;
    io.address = 0xFEC00000;
    io.data = 0xDEADBEEF;
    auto back = record_from<IoPayload>(as_bytes_of(io));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->address, 0xFEC00000u);
    EXPECT_EQ(back->data, 0xDEADBEEFu);
    EXPECT_EQ(back->size, 4);
    EXPECT_FALSE(record_from<IoPayload>(as_bytes_of(io).first(10)));

    auto sd = ShutdownPayload::make(3, std::string(400, 'x'));
    EXPECT_EQ(sd.reason_length, kShutdownReasonMax);
    ASSERT_TRUE(sd.reason_text());
    EXPECT_EQ(sd.reason_text()->size(), kShutdownReasonMax);
    sd.reason_length = 1000;  // as a hostile peer might send it
    EXPECT_FALSE(sd.reason_text());
}

// --- StreamParser -------------------------------------------------------------------------

// Feeds `stream` in chunks of the given sizes (cycled), collecting frames until an error.
struct Parsed {
    std::vector<std::pair<MsgHeader, std::vector<uint8_t>>> frames;
    std::string error;
};
Parsed feed(StreamParser& p, const std::vector<uint8_t>& stream, std::vector<size_t> chunks) {
    Parsed out;
    size_t pos = 0, c = 0;
    while (pos < stream.size() && out.error.empty()) {
        auto room = p.writable();
        size_t n = std::min({room.size(), chunks[c++ % chunks.size()], stream.size() - pos});
        std::memcpy(room.data(), stream.data() + pos, n);
        p.commit(n);
        pos += n;
        while (true) {
            auto r = p.next();
            if (!r.ok()) {
                out.error = r.error().message;
                break;
            }
            if (!*r) break;
            out.frames.push_back({(*r)->header, {(*r)->payload.begin(), (*r)->payload.end()}});
        }
    }
    return out;
}

TEST(IcStreamParser, SplitsMessagesInAnyChunking) {
    std::vector<uint8_t> stream;
    std::vector<std::vector<uint8_t>> payloads;
    std::mt19937 rng(1);
    for (int i = 0; i < 300; ++i) {
        std::vector<uint8_t> pl(i % 7 == 0 ? kMaxPayload : rng() % 5000);
        for (auto& b : pl) b = static_cast<uint8_t>(rng());
        auto m = message(MsgType::Ping, pl, i);
        stream.insert(stream.end(), m.begin(), m.end());
        payloads.push_back(std::move(pl));
    }
    for (std::vector<size_t> chunks :
         {std::vector<size_t>{1}, {31, 33, 7}, {4096}, {65568}, {100000, 3}}) {
        StreamParser p(all_specs());
        Parsed out = feed(p, stream, chunks);
        ASSERT_EQ(out.error, "");
        ASSERT_EQ(out.frames.size(), payloads.size());
        for (size_t i = 0; i < payloads.size(); ++i) {
            EXPECT_EQ(out.frames[i].first.arg, i);
            EXPECT_EQ(out.frames[i].second, payloads[i]) << "message " << i;
        }
        EXPECT_EQ(p.buffered(), 0u);
        EXPECT_TRUE(p.check_eof().ok());
    }
}

TEST(IcStreamParser, RefusesOversizedHeaderBeforeItsBody) {
    StreamParser p(all_specs());
    auto bytes = header_bytes(static_cast<uint16_t>(MsgType::Ping), 1u << 30);
    Parsed out = feed(p, bytes, {32});
    EXPECT_EQ(out.error, "Ping payload of 1073741824 bytes exceeds the maximum of 65536");
    // The parser stays failed.
    auto again = p.next();
    ASSERT_FALSE(again.ok());
    EXPECT_FALSE(p.check_eof().ok());
}

TEST(IcStreamParser, GarbageAfterGoodMessagesIsAnError) {
    auto stream = message(MsgType::ReadReq, {}, 5);
    auto bad = header_bytes(0x9999, 0);
    stream.insert(stream.end(), bad.begin(), bad.end());
    StreamParser p(all_specs());
    Parsed out = feed(p, stream, {1000});
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_EQ(out.frames[0].first.arg, 5u);
    EXPECT_EQ(out.error, "message type 0x9999 unknown");
}

TEST(IcStreamParser, EndOfStreamMidMessageNamesWhatIsMissing) {
    {
        StreamParser p(all_specs());
        auto m = message(MsgType::ReadReq, {});
        m.resize(5);
        feed(p, m, {5});
        EXPECT_EQ(p.check_eof().error().message, "truncated header (5 of 32 bytes)");
    }
    {
        StreamParser p(all_specs());
        auto m = message(MsgType::Grant, std::vector<uint8_t>(4096, 1));
        m.resize(kHeaderBytes + 100);
        Parsed out = feed(p, m, {64});
        EXPECT_EQ(out.error, "");
        EXPECT_TRUE(out.frames.empty());
        EXPECT_EQ(p.check_eof().error().message, "truncated Grant payload (100 of 4096 bytes)");
    }
}

}  // namespace
}  // namespace kv
