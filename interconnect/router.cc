#include "interconnect/router.h"

#include <algorithm>
#include <cstdio>

#include "base/log.h"
#include "interconnect/codec.h"

namespace kv {

MessageRouter::MessageRouter(OnUnrouted on_unrouted) : on_unrouted_(std::move(on_unrouted)) {}

Status MessageRouter::add(Route r) {
    // A single type may refine a group; two routes of the same kind for one type conflict.
    auto& list = r.first == r.last ? types_ : groups_;
    for (const Route& other : list) {
        if (other.first != r.first) continue;
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%04x", r.first);
        return Error{"message router: " + r.layer + " registers " + buf +
                     (r.first == r.last ? "" : " (a group)") + ", which " + other.layer + " has"};
    }
    list.push_back(r);
    if (std::find(handlers_.begin(), handlers_.end(), r.handler) == handlers_.end())
        handlers_.push_back(r.handler);
    return {};
}

Status MessageRouter::add_group(uint8_t group, MessageHandler& handler, std::string layer) {
    return add(
        Route{uint16_t(group << 8), uint16_t((group << 8) | 0xFF), &handler, std::move(layer)});
}

Status MessageRouter::add_type(MsgType type, MessageHandler& handler, std::string layer) {
    return add(Route{uint16_t(type), uint16_t(type), &handler, std::move(layer)});
}

const MessageRouter::Route* MessageRouter::find(uint16_t type) const {
    for (const Route& r : types_)
        if (r.first == type) return &r;
    for (const Route& r : groups_)
        if (type >= r.first && type <= r.last) return &r;
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
    if (const Route* r = find(h.type)) return r->handler->on_message(from, h, payload);
    if (on_unrouted_) return on_unrouted_(from, h);
    const char* name = msg_type_name(MsgType(h.type));
    KV_WARN("node %u sent a %s message (0x%04x), which no layer of this node takes; dropped", from,
            name ? name : "unknown", h.type);
}

void MessageRouter::on_peer_lost(NodeId peer, const Error& why) {
    for (MessageHandler* h : handlers_) h->on_peer_lost(peer, why);
}

}  // namespace kv
