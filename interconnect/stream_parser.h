// Splits a received byte stream into validated messages. Pure (no system calls), so the
// TCP receive path and the fuzz target (tests/fuzz/decoder_fuzz.cc) run the same code.
//
// The parser owns one buffer of kHeaderBytes + kMaxPayload bytes, allocated once when the
// parser is made: enough for one largest message, so a message is always contiguous and
// handed out in place, with no allocation per message. Bytes of a partial message are
// moved to the front of the buffer when more room is asked for (at most one message's
// worth, and only when the reader wants to append).
//
// Usage (one thread at a time):
//     auto room = parser.writable();        // never empty
//     n = recv(fd, room.data(), room.size());
//     parser.commit(n);
//     while (true) {
//         auto r = parser.next();           // Error: drop the connection
//         if (!r.ok() || !*r) break;        // nullopt: need more bytes
//         deliver((*r)->header, (*r)->payload);  // valid until the next writable()
//     }
//     at EOF: parser.check_eof()            // Error if a message was cut short
//
// A header is validated as soon as its 32 bytes are in, before its payload arrives, so an
// oversized or unknown message is refused without waiting for (or buffering) its body.
// After an error the parser stays failed: every later next() repeats the error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "base/result.h"
#include "interconnect/codec.h"

namespace kv {

struct Frame {
    MsgHeader header;
    std::span<const uint8_t> payload;  // points into the parser's buffer
};

class StreamParser {
  public:
    static constexpr size_t kCapacity = kHeaderBytes + kMaxPayload;

    // Headers are checked against `specs` (the receiving handler's messages(); they must
    // outlive the parser).
    explicit StreamParser(std::span<const MessageSpec> specs);
    StreamParser(const StreamParser&) = delete;
    StreamParser& operator=(const StreamParser&) = delete;
    StreamParser(StreamParser&&) noexcept = default;
    StreamParser& operator=(StreamParser&&) noexcept = default;

    // Room to append received bytes. Invalidates the payload of frames handed out before.
    std::span<uint8_t> writable();
    // `n` bytes were written at the start of the last writable() span.
    void commit(size_t n);
    // The next complete message, nullopt if more bytes are needed, or the protocol error.
    Result<std::optional<Frame>> next();
    // At end of stream: an error if a message was cut short ("truncated header (5 of 32
    // bytes)", "truncated Grant payload (100 of 4096 bytes)"), or the parser failed earlier.
    Status check_eof() const;

    // Bytes received but not yet handed out as a frame.
    size_t buffered() const { return end_ - begin_; }

  private:
    std::span<const MessageSpec> specs_;
    std::unique_ptr<uint8_t[]> buf_;
    size_t begin_ = 0;                  // first byte not yet consumed
    size_t end_ = 0;                    // one past the last byte received
    std::optional<MsgHeader> pending_;  // validated header whose payload is incomplete
    std::optional<Error> failed_;
};

}  // namespace kv
