#include "interconnect/router.h"

#include <algorithm>
#include <cstdio>

#include "base/log.h"
#include "interconnect/codec.h"

namespace kv {

Status MessageRouter::add(MessageHandler& handler, std::string layer) {
    const auto specs = handler.messages();
    for (const MessageSpec& spec : specs) {
        if (const Route* other = find(uint16_t(spec.type))) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "0x%04x", unsigned(spec.type));
            const char* name = msg_type_name(spec.type);
            return Error{"message router: " + layer + " registers " + (name ? name : "?") + " (" +
                         buf + "), which " + other->layer + " has"};
        }
    }
    for (const MessageSpec& spec : specs) {
        routes_.push_back(Route{uint16_t(spec.type), &handler, layer});
        specs_.push_back(spec);
    }
    if (std::find(handlers_.begin(), handlers_.end(), &handler) == handlers_.end())
        handlers_.push_back(&handler);
    return {};
}

const MessageRouter::Route* MessageRouter::find(uint16_t type) const {
    for (const Route& r : routes_)
        if (r.type == type) return &r;
    return nullptr;
}

std::string MessageRouter::layer_of(MsgType type) const {
    const Route* r = find(uint16_t(type));
    return r ? r->layer : std::string();
}

void MessageRouter::on_start(Transport& transport) {
    for (MessageHandler* h : handlers_) h->on_start(transport);
}

void MessageRouter::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) {
    // The transport has checked the type against messages(): every type has a route.
    if (const Route* r = find(h.type)) return r->handler->on_message(from, h, payload);
    KV_WARN("node %u sent message type 0x%04x, which no layer of this node takes; dropped", from,
            h.type);
}

void MessageRouter::on_peer_lost(NodeId peer, const Error& why) {
    for (MessageHandler* h : handlers_) h->on_peer_lost(peer, why);
}

}  // namespace kv
