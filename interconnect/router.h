// The transport's one MessageHandler on a node: it hands each received message to the
// layer that registered its type, so that no layer sees another's messages (before it, the
// coherence engine took every message and passed on what it did not want).
//
// Each layer registers, before the transport exists, the message-type group it owns (the
// high byte of MsgType: 0x01 node link, 0x02 coherence, 0x03 vCPUs, 0x04 I/O, 0x05
// cluster control) or single types of a group it shares, with its handler. A type that
// has a single-type route goes there, else to its group's handler. The payload length of
// every type is still checked, before any handler runs, by the codec's table
// (interconnect/codec.h), so a handler sees only well-formed lengths.
//
// Threads: add() before the transport starts (not thread-safe against dispatch); the
// MessageHandler calls come on the transport's receive thread. on_start() and
// on_peer_lost() go to every registered handler, once each, in registration order.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "interconnect/transport.h"

namespace kv {

class MessageRouter final : public MessageHandler {
  public:
    // A received message of a type no layer of this node registered (a peer that speaks a
    // layer this node does not run); `from` sent it. Default: logged and dropped.
    using OnUnrouted = std::function<void(NodeId from, const MsgHeader& h)>;
    explicit MessageRouter(OnUnrouted on_unrouted = {});

    // Every type 0xGGxx goes to `handler`; `layer` names it in errors. An error if the
    // group or type already has a handler.
    Status add_group(uint8_t group, MessageHandler& handler, std::string layer);
    Status add_type(MsgType type, MessageHandler& handler, std::string layer);

    // The layer that would receive `type` ("" if none).
    std::string layer_of(MsgType type) const;

    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    void on_peer_lost(NodeId peer, const Error& why) override;

  private:
    struct Route {
        uint16_t first = 0, last = 0;  // inclusive range of types
        MessageHandler* handler = nullptr;
        std::string layer;
    };
    const Route* find(uint16_t type) const;
    Status add(Route r);

    OnUnrouted on_unrouted_;
    std::vector<Route> types_;               // single types, looked up first
    std::vector<Route> groups_;              // whole groups
    std::vector<MessageHandler*> handlers_;  // each once, in registration order
};

}  // namespace kv
