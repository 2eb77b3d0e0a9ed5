// The transport's one MessageHandler on a node: it hands each received message to the
// layer that registered its type, so that no layer sees another's messages (before it, the
// coherence engine took every message and passed on what it did not want).
//
// Each layer registers itself, before the transport exists, with its handler: the router
// routes every message type the handler's messages() declares (with its payload length
// rule) to it. Two layers declaring one type is an error. The router's own messages() is
// the union, so the transport checks every received header against the rule of the layer
// that will receive it, before any handler runs: a handler sees only well-formed lengths
// of its own types, and a message no layer of this node takes drops the connection.
//
// Threads: add() before the transport starts (not thread-safe against dispatch); the
// MessageHandler calls come on the transport's receive thread. on_start() and
// on_peer_lost() go to every registered handler, once each, in registration order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "interconnect/transport.h"

namespace kv {

class MessageRouter final : public MessageHandler {
  public:
    MessageRouter() = default;

    // Routes every type of handler.messages() to `handler`; `layer` names it in errors.
    // An error, and nothing added, if another layer has one of the types.
    Status add(MessageHandler& handler, std::string layer);

    // The layer that would receive `type` ("" if none).
    std::string layer_of(MsgType type) const;

    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    void on_peer_lost(NodeId peer, const Error& why) override;
    std::span<const MessageSpec> messages() const override { return specs_; }

  private:
    struct Route {
        uint16_t type = 0;
        MessageHandler* handler = nullptr;
        std::string layer;
    };
    const Route* find(uint16_t type) const;

    std::vector<Route> routes_;
    std::vector<MessageSpec> specs_;         // every route's spec, for the transport
    std::vector<MessageHandler*> handlers_;  // each once, in registration order
};

}  // namespace kv
