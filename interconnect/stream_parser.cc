#include "interconnect/stream_parser.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace kv {

StreamParser::StreamParser(std::span<const MessageSpec> specs)
    : specs_(specs), buf_(new uint8_t[kCapacity]) {}

std::span<uint8_t> StreamParser::writable() {
    // Start over at the front when everything was consumed (the common case: no copy), and
    // move a partial message to the front when the room behind it runs low. A partial
    // message is shorter than kCapacity (a whole one is consumed by next()), so afterwards
    // there is always room for the rest of it.
    if (begin_ > 0 && (begin_ == end_ || kCapacity - end_ < kCapacity / 4)) {
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    return {buf_.get() + end_, kCapacity - end_};
}

void StreamParser::commit(size_t n) {
    end_ += std::min(n, kCapacity - end_);
}

Result<std::optional<Frame>> StreamParser::next() {
    if (failed_) return *failed_;
    if (!pending_) {
        if (buffered() < kHeaderBytes) return std::optional<Frame>();
        auto h = decode_header(
            std::span<const uint8_t, kHeaderBytes>(buf_.get() + begin_, kHeaderBytes), specs_);
        if (!h.ok()) {
            failed_ = h.error();
            return *failed_;
        }
        pending_ = *h;
    }
    const size_t total = kHeaderBytes + pending_->length;
    if (buffered() < total) {
        // A header validated while sitting late in the buffer may leave too little room
        // after it for its payload: the next writable() compacts.
        return std::optional<Frame>();
    }
    Frame f{*pending_, {buf_.get() + begin_ + kHeaderBytes, pending_->length}};
    begin_ += total;
    pending_.reset();
    return std::optional<Frame>(f);
}

Status StreamParser::check_eof() const {
    if (failed_) return *failed_;
    if (buffered() == 0) return {};
    if (!pending_) {
        return Error{"truncated header (" + std::to_string(buffered()) + " of " +
                     std::to_string(kHeaderBytes) + " bytes)"};
    }
    const char* name = msg_type_name(static_cast<MsgType>(pending_->type));
    return Error{std::string("truncated ") + (name ? name : "?") + " payload (" +
                 std::to_string(buffered() - kHeaderBytes) + " of " +
                 std::to_string(pending_->length) + " bytes)"};
}

}  // namespace kv
