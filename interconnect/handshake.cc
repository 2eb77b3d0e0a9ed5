#include "interconnect/handshake.h"

#include <cstring>

namespace kv {

const char* hello_status_text(HelloStatus s) {
    switch (s) {
        case HelloStatus::Ok:
            return "ok";
        case HelloStatus::VersionMismatch:
            return "protocol version mismatch";
        case HelloStatus::DigestMismatch:
            return "config digest mismatch";
        case HelloStatus::UnexpectedNode:
            return "unexpected node id";
        case HelloStatus::DuplicateNode:
            return "node already connected";
        case HelloStatus::AuthFailed:
            return "authentication failed";
    }
    return "unknown refusal";
}

HelloPayload make_hello(const TransportOptions& opts, NodeId peer, HelloStatus status) {
    HelloPayload p;
    p.node_id = opts.self;
    p.protocol_version = kMsgVersion;
    p.status = static_cast<uint16_t>(status);
    std::memcpy(p.config_digest, opts.config_digest.data(), kDigestBytes);
    if (opts.auth) opts.auth->fill_proof(p, peer);
    return p;
}

HelloStatus check_hello(const TransportOptions& opts, const HelloPayload& theirs,
                        std::string* why) {
    if (theirs.protocol_version != kMsgVersion) return HelloStatus::VersionMismatch;
    if (std::memcmp(theirs.config_digest, opts.config_digest.data(), kDigestBytes) != 0) {
        return HelloStatus::DigestMismatch;
    }
    if (opts.auth) {
        Status st = opts.auth->verify_proof(theirs);
        if (!st.ok()) {
            *why = st.error().message;
            return HelloStatus::AuthFailed;
        }
    }
    return HelloStatus::Ok;
}

}  // namespace kv
