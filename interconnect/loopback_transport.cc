#include "interconnect/loopback_transport.h"

#include "interconnect/codec.h"

namespace kv {

std::shared_ptr<LoopbackHub> LoopbackHub::create() {
    return std::shared_ptr<LoopbackHub>(new LoopbackHub());
}

Result<std::unique_ptr<LoopbackTransport>> LoopbackHub::attach(NodeId id, MessageHandler* handler) {
    if (!handler) return Error{"loopback: no message handler"};
    std::unique_ptr<LoopbackTransport> t;
    {
        std::lock_guard lock(mu_);
        if (endpoints_.count(id) || gone_.count(id)) {
            return Error{"loopback: node " + std::to_string(id) + " already attached"};
        }
        t.reset(new LoopbackTransport(shared_from_this(), id, handler));
        endpoints_[id] = t.get();
    }
    // Started after registration so that on_start() sees a transport able to send.
    t->thread_ = std::thread([p = t.get()] { p->run(); });
    return t;
}

Status LoopbackHub::inject_peer_loss(NodeId a, NodeId b, const std::string& why) {
    std::lock_guard lock(mu_);
    auto ia = endpoints_.find(a);
    auto ib = endpoints_.find(b);
    if (a == b || ia == endpoints_.end() || ib == endpoints_.end()) {
        return Error{"loopback: no link between node " + std::to_string(a) + " and node " +
                     std::to_string(b)};
    }
    if (!cut_.emplace(link(a, b), why).second) return {};  // already broken: told once
    ia->second->post({b, true, {}, {}, why});
    ib->second->post({a, true, {}, {}, why});
    return {};
}

Status LoopbackHub::deliver(NodeId from, NodeId to, const MsgHeader& h,
                            std::span<const uint8_t> payload) {
    std::lock_guard lock(mu_);
    const std::string dest = "send to node " + std::to_string(to);
    if (gone_.count(to)) return Error{dest + ": connection lost (node shut down)"};
    auto it = endpoints_.find(to);
    if (it == endpoints_.end() || to == from) return Error{dest + ": not a peer"};
    if (auto c = cut_.find(link(from, to)); c != cut_.end()) {
        return Error{dest + ": connection lost (" + c->second + ")"};
    }
    it->second->post({from, false, h, {payload.begin(), payload.end()}, {}});
    return {};
}

void LoopbackHub::detach(NodeId id) {
    std::lock_guard lock(mu_);
    if (!endpoints_.erase(id)) return;
    gone_.insert(id);
    for (auto& [other, ep] : endpoints_) {
        // As with TCP, the others see the connection close; a link already cut stays told.
        if (cut_.emplace(link(id, other), "node " + std::to_string(id) + " shut down").second) {
            ep->post(
                {id, true, {}, {}, "node " + std::to_string(id) + ": connection closed by peer"});
        }
    }
}

LoopbackTransport::LoopbackTransport(std::shared_ptr<LoopbackHub> hub, NodeId id,
                                     MessageHandler* handler)
    : hub_(std::move(hub)), id_(id), handler_(handler) {}

LoopbackTransport::~LoopbackTransport() {
    shutdown();
}

Status LoopbackTransport::send(NodeId to, MsgHeader h, std::span<const uint8_t> payload) {
    KV_TRY(prepare_outgoing(id_, to, h, payload.size(), handler_->messages()));
    return hub_->deliver(id_, to, h, payload);
}

void LoopbackTransport::post(Event e) {
    std::lock_guard lock(mu_);
    if (stop_) return;
    queue_.push_back(std::move(e));
    cv_.notify_one();
}

void LoopbackTransport::run() {
    handler_->on_start(*this);
    while (true) {
        Event e;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            e = std::move(queue_.front());
            queue_.pop_front();
        }
        if (!e.lost) {
            handler_->on_message(e.from, e.header, e.payload);
        } else if (reported_lost_.insert(e.from).second) {
            handler_->on_peer_lost(e.from, Error{e.why});
        }
    }
}

void LoopbackTransport::shutdown() {
    std::lock_guard guard(shutdown_mu_);
    hub_->detach(id_);  // no new events from here on; the others learn of the loss
    {
        std::lock_guard lock(mu_);
        stop_ = true;
        queue_.clear();
    }
    cv_.notify_one();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace kv
