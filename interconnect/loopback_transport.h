// An in-process Transport for unit tests of the layers above (memory/, vcpu/): N endpoints
// in one process, joined by a LoopbackHub, with the TCP transport's semantics:
//   - send() validates type and payload length with the codec and fills src/length, so a
//     layer that would be refused by a real peer is refused here too;
//   - each endpoint has its own receive thread that calls its handler in order (per
//     sender, and in one order overall); on_start() comes first;
//   - a lost peer is reported once with on_peer_lost, after the messages it sent before
//     the loss; later sends between the two fail. Losses come from inject_peer_loss() or
//     from an endpoint's shutdown() (every other endpoint loses it, like a closed socket);
//   - shutdown(): no handler call after it returns; messages still queued are dropped.
// Unlike TCP, a message is copied into a queue (one allocation per message): test use only.
//
// Lock order: hub mutex, then an endpoint's queue mutex. Handlers run with no lock held,
// so they may send().
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "interconnect/transport.h"

namespace kv {

class LoopbackTransport;

class LoopbackHub : public std::enable_shared_from_this<LoopbackHub> {
  public:
    static std::shared_ptr<LoopbackHub> create();

    // A new endpoint `id`; its peers are every other endpoint attached to this hub.
    Result<std::unique_ptr<LoopbackTransport>> attach(NodeId id, MessageHandler* handler);

    // Breaks the link between a and b as if their connection dropped: each is told once
    // (on_peer_lost with `why`), and sends between them fail from now on.
    Status inject_peer_loss(NodeId a, NodeId b, const std::string& why);

  private:
    friend class LoopbackTransport;
    LoopbackHub() = default;
    Status deliver(NodeId from, NodeId to, const MsgHeader& h, std::span<const uint8_t> payload);
    void detach(NodeId id);
    static std::pair<NodeId, NodeId> link(NodeId a, NodeId b) {
        return a < b ? std::pair(a, b) : std::pair(b, a);
    }

    std::mutex mu_;
    std::map<NodeId, LoopbackTransport*> endpoints_;        // attached and not shut down
    std::set<NodeId> gone_;                                 // shut down: ids never reused
    std::map<std::pair<NodeId, NodeId>, std::string> cut_;  // broken links and why
};

class LoopbackTransport final : public Transport {
  public:
    ~LoopbackTransport() override;
    NodeId self() const override { return id_; }
    Status send(NodeId to, MsgHeader h, std::span<const uint8_t> payload = {}) override;
    void shutdown() override;

  private:
    friend class LoopbackHub;
    struct Event {
        NodeId from = 0;
        bool lost = false;  // a peer-loss notice instead of a message
        MsgHeader header;
        std::vector<uint8_t> payload;
        std::string why;
    };

    LoopbackTransport(std::shared_ptr<LoopbackHub> hub, NodeId id, MessageHandler* handler);
    void post(Event e);  // called with the hub mutex held
    void run();

    std::shared_ptr<LoopbackHub> hub_;
    const NodeId id_;
    MessageHandler* const handler_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> queue_;         // under mu_
    bool stop_ = false;               // under mu_
    std::set<NodeId> reported_lost_;  // receive thread only
    std::mutex shutdown_mu_;
    std::thread thread_;
};

}  // namespace kv
