#include "vmm/node/node_control.h"

#include <string>

#include "base/log.h"

namespace kv {

using control::Json;

const char* to_string(ControlOp op) {
    switch (op) {
        case ControlOp::Pause:
            return "pause";
        case ControlOp::Resume:
            return "resume";
        case ControlOp::Query:
            return "query";
        case ControlOp::MigrateOut:
            return "migrate-out";
        case ControlOp::MigrateIn:
            return "migrate-in";
        case ControlOp::Placement:
            return "placement";
        case ControlOp::Run:
            return "run";
        case ControlOp::SaveVcpu:
            return "save-vcpu";
        case ControlOp::RestoreVcpu:
            return "restore-vcpu";
        case ControlOp::SaveMemory:
            return "save-memory";
        case ControlOp::RestoreMemory:
            return "restore-memory";
        case ControlOp::DirtyLog:
            return "dirty-log";
        case ControlOp::SaveMemoryPart:
            return "save-memory-part";
    }
    return "unknown";
}

Result<uint64_t> uint_arg(const Json& args, const char* key, uint64_t limit) {
    auto it = args.find(key);
    if (it == args.end() || !it->is_number_unsigned())
        return Error{std::string(key) + " must be a non-negative integer"};
    const uint64_t v = it->get<uint64_t>();
    if (v >= limit) return Error{std::string(key) + " " + std::to_string(v) + " is out of range"};
    return v;
}

NodeControl::NodeControl(NodeId self, uint32_t num_nodes, Serve serve, OnLost on_lost)
    : self_(self),
      num_nodes_(num_nodes),
      serve_(std::move(serve)),
      on_lost_(std::move(on_lost)),
      lost_(num_nodes) {
    worker_ = std::thread([this] { worker(); });
}

NodeControl::~NodeControl() {
    close();
    if (worker_.joinable()) worker_.join();
}

void NodeControl::close() {
    std::lock_guard lk(mu_);
    closed_ = true;
    cv_.notify_all();
    work_cv_.notify_all();
}

void NodeControl::on_start(Transport& transport) {
    std::lock_guard lk(mu_);
    transport_.store(&transport);
    cv_.notify_all();
}

bool NodeControl::lost(NodeId node) const {
    std::lock_guard lk(mu_);
    return node < num_nodes_ && lost_[node].has_value();
}

void NodeControl::on_peer_lost(NodeId peer, const Error& why) {
    {
        std::lock_guard lk(mu_);
        if (peer < num_nodes_) lost_[peer] = why.message;
        for (auto& [id, p] : pending_)
            if (p.to == peer && !p.reply)
                p.reply = Error{"node " + std::to_string(peer) + " lost: " + why.message,
                                ErrorCode::PeerLost};
        cv_.notify_all();
    }
    if (on_lost_) on_lost_(peer, why);
}

void NodeControl::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) {
    const auto type = MsgType(h.type);
    if (type == MsgType::CtlReq) {
        std::lock_guard lk(mu_);
        if (closed_) return;
        requests_.push_back(Request{from, h.request_id, h.arg, {payload.begin(), payload.end()}});
        work_cv_.notify_one();
        return;
    }
    if (type != MsgType::CtlReply) {
        KV_WARN("node %u sent message type 0x%04x to the cluster control layer; dropped", from,
                h.type);
        return;
    }
    // Parsed here, outside the lock: nlohmann's CBOR reader reports every malformation
    // without throwing when asked not to.
    Result<Json> reply = Error{""};
    Json j = Json::from_cbor(payload.begin(), payload.end(), true, false);
    const std::string who = "node " + std::to_string(from);
    if (j.is_discarded() || !j.is_object() || (j.contains("return") == j.contains("error")) ||
        (j.contains("error") && !j["error"].is_string())) {
        KV_ERROR("%s sent a malformed CtlReply (request %llu); the request fails", who.c_str(),
                 static_cast<unsigned long long>(h.request_id));
        reply = Error{who + " sent a malformed CtlReply"};
    } else if (j.contains("error")) {
        reply = Error{who + ": " + j["error"].get<std::string>(), ErrorCode::Refused};
    } else {
        reply = std::move(j["return"]);
    }
    std::lock_guard lk(mu_);
    auto it = pending_.find(h.request_id);
    if (it == pending_.end() || it->second.to != from || it->second.reply) return;  // gave up
    it->second.reply = std::move(reply);
    cv_.notify_all();
}

void NodeControl::worker() {
    std::unique_lock lk(mu_);
    for (;;) {
        work_cv_.wait(lk, [&] { return closed_ || !requests_.empty(); });
        if (closed_) return;
        Request r = std::move(requests_.front());
        requests_.pop_front();
        lk.unlock();
        answer(r);
        lk.lock();
    }
}

void NodeControl::answer(const Request& r) {
    Json out;
    Json args = r.args.empty() ? Json::object() : Json::from_cbor(r.args, true, false);
    if (args.is_discarded() || !args.is_object()) {
        KV_ERROR("node %u sent a CtlReq whose arguments are not a CBOR map", r.from);
        out = {{"error", "the arguments are not a CBOR map"}};
    } else if (r.op < uint64_t(ControlOp::Pause) || r.op > uint64_t(ControlOp::Last)) {
        out = {{"error", "unknown control operation " + std::to_string(r.op)}};
    } else {
        Result<Json> res = serve_ ? serve_(ControlOp(r.op), args)
                                  : Result<Json>(Error{"this node serves no control requests"});
        if (res)
            out = {{"return", std::move(*res)}};
        else
            out = {{"error", res.error().message}};
    }
    const std::vector<uint8_t> text = Json::to_cbor(out);
    Transport* t = transport_.load();
    MsgHeader h;
    h.type = uint16_t(MsgType::CtlReply);
    h.request_id = r.id;
    h.arg = r.op;
    Status st = !t ? Status(Error{"no transport"})
                : text.size() > kMaxPayload
                    ? Status(Error{"the answer has " + std::to_string(text.size()) + " bytes"})
                    : t->send(r.from, h, text);
    if (!st)
        KV_WARN("node %u: cannot answer node %u's %s request: %s", self_, r.from,
                to_string(ControlOp(r.op)), st.error().message.c_str());
}

Result<uint64_t> NodeControl::send_request(NodeId to, ControlOp op, const Json& args,
                                           std::chrono::steady_clock::time_point deadline) {
    const std::vector<uint8_t> text = Json::to_cbor(args);
    if (text.size() > kMaxPayload)
        return Error{"control request for node " + std::to_string(to) + ": arguments of " +
                     std::to_string(text.size()) + " bytes"};
    uint64_t id;
    {
        std::unique_lock lk(mu_);
        // A request made before the interconnect started waits for it, within its deadline.
        cv_.wait_until(lk, deadline, [&] { return closed_ || transport_.load() != nullptr; });
        if (closed_) return Error{"the cluster control layer is closed", ErrorCode::PeerLost};
        if (to >= num_nodes_ || to == self_)
            return Error{"no node " + std::to_string(to) + " to ask"};
        if (lost_[to])
            return Error{"node " + std::to_string(to) + " lost: " + *lost_[to],
                         ErrorCode::PeerLost};
        id = next_id_++;
        pending_[id] = Pending{to, std::nullopt};
    }
    Transport* t = transport_.load();
    MsgHeader h;
    h.type = uint16_t(MsgType::CtlReq);
    h.request_id = id;
    h.arg = uint64_t(op);
    Status st = t ? t->send(to, h, text) : Status(Error{"no transport yet"});
    if (!st) {
        std::lock_guard lk(mu_);
        pending_.erase(id);
        return Error{"node " + std::to_string(to) + ": " + st.error().message, ErrorCode::PeerLost};
    }
    return id;
}

Result<Json> NodeControl::wait(uint64_t id, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lk(mu_);
    auto it = pending_.find(id);
    const NodeId to = it->second.to;
    cv_.wait_until(lk, deadline, [&] { return closed_ || it->second.reply.has_value(); });
    Result<Json> out =
        it->second.reply ? std::move(*it->second.reply)
        : closed_ ? Result<Json>(Error{"the cluster control layer closed", ErrorCode::PeerLost})
                  : Result<Json>(Error{"node " + std::to_string(to) + " did not answer",
                                       ErrorCode::Timeout});
    pending_.erase(it);
    return out;
}

Result<Json> NodeControl::ask(NodeId to, ControlOp op, const Json& args,
                              std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto id = send_request(to, op, args, deadline);
    if (!id) return id.error();
    return wait(*id, deadline);
}

std::vector<NodeControl::Answer> NodeControl::ask_all(ControlOp op, const Json& args,
                                                      std::chrono::milliseconds timeout) {
    std::vector<NodeId> all;
    for (NodeId k = 0; k < num_nodes_; ++k) all.push_back(k);
    return ask_some(all, op, args, timeout);
}

std::vector<NodeControl::Answer> NodeControl::ask_some(const std::vector<NodeId>& nodes,
                                                       ControlOp op, const Json& args,
                                                       std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::pair<NodeId, Result<uint64_t>>> sent;
    for (NodeId k : nodes)
        if (k != self_) sent.emplace_back(k, send_request(k, op, args, deadline));
    std::vector<Answer> out;
    for (auto& [k, id] : sent)
        out.push_back(Answer{k, id ? wait(*id, deadline) : Result<Json>(id.error())});
    return out;
}

namespace {
constexpr MessageSpec kControlMessages[] = {
    {MsgType::CtlReq, {PayloadRule::Kind::UpTo, kMaxPayload}},
    {MsgType::CtlReply, {PayloadRule::Kind::UpTo, kMaxPayload}},
};
}  // namespace

std::span<const MessageSpec> control_messages() {
    return kControlMessages;
}

std::span<const MessageSpec> NodeControl::messages() const {
    return kControlMessages;
}

}  // namespace kv
