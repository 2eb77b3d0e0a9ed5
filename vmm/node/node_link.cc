#include "vmm/node/node_link.h"

#include <x86intrin.h>

#include <chrono>
#include <cinttypes>
#include <cstring>

#include "base/log.h"

namespace kv {

namespace {

using Clock = std::chrono::steady_clock;

// A TscRate above 100 GHz is not a TSC.
constexpr uint64_t kMaxTscKhz = 100'000'000;

uint64_t host_tsc() {
    return __rdtsc();
}

uint64_t now_ns() {
    return uint64_t(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count());
}

bool valid_mode(uint8_t mode) {
    switch (DeliveryMode(mode)) {
        case DeliveryMode::Fixed:
        case DeliveryMode::LowestPriority:
        case DeliveryMode::Nmi:
        case DeliveryMode::Init:
        case DeliveryMode::StartUp:
        case DeliveryMode::ExtInt:
            return true;
        default:
            return false;
    }
}

constexpr uint32_t kDfrFlat = 0xFFFFFFFFu, kDfrCluster = 0x0FFFFFFFu;

const char* stop_name(StopReason r) {
    switch (r) {
        case StopReason::PowerOff:
            return "power-off";
        case StopReason::Reset:
            return "reset";
        case StopReason::Crashed:
            return "crash";
        case StopReason::Failed:
            return "failure";
        case StopReason::UserQuit:
            return "quit";
    }
    return "?";
}

}  // namespace

NodeLink::NodeLink(NodeId self, uint32_t num_nodes, Host host)
    : self_(self),
      num_nodes_(num_nodes),
      host_(std::move(host)),
      lost_(num_nodes),
      ready_(num_nodes, false) {}

void NodeLink::on_start(Transport& transport) {
    attach(transport);
}

void NodeLink::attach(Transport& transport) {
    transport_.store(&transport);
}

Status NodeLink::send(NodeId to, const MsgHeader& h, std::span<const uint8_t> payload) {
    Transport* t = transport_.load();
    if (!t) {
        // Not reachable: the transport calls on_start() before any other handler call.
        KV_ERROR("node %u: message type 0x%04x to node %u dropped: no transport yet", self_, h.type,
                 to);
        return Error{"no transport yet"};
    }
    return t->send(to, h, payload);
}

void NodeLink::send_or_report(NodeId to, const MsgHeader& h, std::span<const uint8_t> payload) {
    if (auto s = send(to, h, payload); !s) {
        // The receive side reports the lost peer (on_peer_lost) and stops the guest.
        KV_DEBUG("node %u: send to node %u failed: %s", self_, to, s.error().message.c_str());
    }
}

// --- start-up ---------------------------------------------------------------------------------

Result<NodeLink::TscSync> NodeLink::sync_tsc(bool same_host, int rounds,
                                             Clock::time_point deadline) {
    TscSync best;
    bool have = false;
    for (int i = 0; i < (same_host ? 1 : rounds); ++i) {
        uint64_t id;
        {
            std::lock_guard lk(mu_);
            id = next_request_++;
            pong_request_ = id;
            pong_.reset();
        }
        MsgHeader h;
        h.type = static_cast<uint16_t>(MsgType::Ping);
        h.request_id = id;
        uint64_t t1 = host_tsc();
        h.arg = t1;
        Transport* t = transport_.load();
        if (!t) return Error{"TSC alignment: no transport"};
        KV_TRY(t->send(kIoNode, h));
        std::unique_lock lk(mu_);
        auto round_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(2));
        if (!cv_.wait_until(lk, round_deadline, [&] { return pong_.has_value() || closed_; })) {
            if (Clock::now() >= deadline)
                return Error{"TSC alignment: node 0 did not answer in time"};
            --i;  // no answer within 2 s: ask again (a late answer is ignored)
            continue;
        }
        if (closed_) return Error{"TSC alignment: the link closed"};
        uint64_t t0 = pong_->first, base = pong_->second, t2 = pong_arrival_;
        pong_request_.reset();
        lk.unlock();
        uint64_t rtt = t2 - t1;
        // Node 0 read t0 somewhere between t1 and t2 of ours: assume the middle.
        int64_t delta = same_host ? 0 : int64_t(t0 - (t1 + rtt / 2));
        if (!have || rtt < best.best_rtt) {
            best.best_rtt = rtt;
            best.host_delta = delta;
            best.kvm_offset = uint64_t(delta) - base;
            have = true;
        }
    }
    return best;
}

Status NodeLink::send_ready() {
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Ready);
    Transport* t = transport_.load();
    if (!t) return Error{"ready: no transport"};
    return t->send(kIoNode, h);
}

Status NodeLink::announce_tsc_khz(uint64_t khz) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::TscRate);
    h.arg = khz;
    for (NodeId k = 0; k < num_nodes_; ++k)
        if (k != self_) KV_TRY(send(k, h, {}));
    return {};
}

void NodeLink::announce_hpet(const Hpet::Counter& c) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::HpetCounter);
    h.arg = c.running ? 1 : 0;
    for (NodeId k = 0; k < num_nodes_; ++k)
        if (reachable(k))
            send_or_report(k, h, std::span(reinterpret_cast<const uint8_t*>(&c.value), 8));
}

Hpet::Counter NodeLink::hpet_counter() const {
    std::lock_guard lk(hpet_mu_);
    return hpet_;
}

Status NodeLink::wait_ready(Clock::time_point deadline) {
    std::unique_lock lk(mu_);
    auto all = [&] {
        for (uint32_t k = 0; k < num_nodes_; ++k)
            if (k != self_ && !ready_[k]) return false;
        return true;
    };
    if (cv_.wait_until(lk, deadline, [&] { return all() || closed_; }) && !closed_) return {};
    std::string missing;
    for (uint32_t k = 0; k < num_nodes_; ++k)
        if (k != self_ && !ready_[k]) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
    return Error{"node(s) " + missing + " did not get ready" +
                 (closed_ ? " (the link closed)" : " in time")};
}

// --- sending ------------------------------------------------------------------------------

void NodeLink::send_ipi(NodeId to, uint32_t vcpu, const InterruptMessage& m, uint64_t epoch) {
    IpiPayload p;
    p.dest_vcpu = vcpu;
    p.vector = m.vector;
    p.delivery_mode = uint8_t(m.mode);
    p.level = m.assert ? 1 : 0;
    p.trigger = m.level_triggered ? 1 : 0;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Ipi);
    h.arg = epoch;
    counters_.ipis_sent.fetch_add(1, std::memory_order_relaxed);
    send_or_report(to, h, as_bytes_of(p));
}

void NodeLink::announce_addressing(uint32_t vcpu, const Lapic::Addressing& a) {
    ApicIdUpdatePayload p;
    p.apic_id = a.apic_id;
    p.ldr = uint32_t(a.ldr) << 24;
    p.dfr = a.flat ? kDfrFlat : kDfrCluster;
    p.flags = a.enabled ? 1 : 0;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::ApicIdUpdate);
    h.arg = vcpu;
    for (NodeId k = 0; k < num_nodes_; ++k) {
        if (k == self_) continue;
        counters_.addressing_sent.fetch_add(1, std::memory_order_relaxed);
        send_or_report(k, h, as_bytes_of(p));
    }
}

bool NodeLink::forward_io(IoKind kind, uint64_t address, std::span<uint8_t> data, bool write) {
    if (data.empty() || data.size() > 8) return false;
    IoPayload p;
    p.kind = uint8_t(kind);
    p.is_write = write ? 1 : 0;
    p.size = uint8_t(data.size());
    p.address = address;
    if (write) std::memcpy(&p.data, data.data(), data.size());
    PendingIo wait;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::IoReq);
    {
        std::lock_guard lk(mu_);
        if (closed_) return false;
        h.request_id = next_request_++;
        pending_io_.emplace(h.request_id, &wait);
    }
    uint64_t t0 = now_ns();
    counters_.io_forwarded.fetch_add(1, std::memory_order_relaxed);
    Transport* t = transport_.load();
    Status sent = t ? t->send(kIoNode, h, as_bytes_of(p)) : Status(Error{"no transport"});
    std::unique_lock lk(mu_);
    if (sent) cv_.wait(lk, [&] { return wait.done || closed_; });
    pending_io_.erase(h.request_id);
    lk.unlock();
    counters_.io_wait_ns.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    if (!wait.done) return false;
    if (!write) std::memcpy(data.data(), &wait.data, data.size());
    return wait.ok;
}

void NodeLink::forward_eoi(uint8_t vector) {
    IoPayload p;
    p.kind = uint8_t(IoKind::Eoi);
    p.size = 1;
    p.address = vector;
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::IoReq);
    counters_.eois_forwarded.fetch_add(1, std::memory_order_relaxed);
    send_or_report(kIoNode, h, as_bytes_of(p));
}

void NodeLink::broadcast_stop(StopReason reason, const std::string& detail) {
    if (stop_sent_.exchange(true)) return;
    ShutdownPayload p = ShutdownPayload::make(int32_t(reason), detail);
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Shutdown);
    h.arg = self_;  // the origin: kept when the others pass it on
    send_stop(h, p, self_, self_);
}

void NodeLink::send_stop(const MsgHeader& h, const ShutdownPayload& p, NodeId skip_a,
                         NodeId skip_b) {
    const bool origin = h.arg == self_;
    for (NodeId k = 0; k < num_nodes_; ++k) {
        // A node whose connection is gone is not told (its loss may be what stopped the guest).
        if (k == skip_a || k == skip_b || !reachable(k)) continue;
        Status s = send(k, h, as_bytes_of(p));
        if (s) continue;
        // A node that misses this learns of the stop from another node or from the lost
        // connection; a relay to a node that has already gone is expected.
        if (origin)
            KV_WARN("node %u: cannot tell node %u the guest stopped: %s", self_, k,
                    s.error().message.c_str());
        else
            KV_DEBUG("node %u: cannot pass node %u the stop: %s", self_, k,
                     s.error().message.c_str());
    }
}

void NodeLink::close() {
    std::lock_guard lk(mu_);
    closed_ = true;
    cv_.notify_all();
}

// --- receiving ----------------------------------------------------------------------------

void NodeLink::handle_io_request(NodeId from, const MsgHeader& h, const IoPayload& io) {
    if (self_ != kIoNode) {
        host_.stop(StopReason::Failed, "node " + std::to_string(from) + " sent an IoReq to node " +
                                           std::to_string(self_) + ", which is not the I/O node");
        return;
    }
    if (io.kind == uint8_t(IoKind::Eoi)) {
        counters_.eois_served.fetch_add(1, std::memory_order_relaxed);
        if (io.address > 0xFF) {
            host_.stop(StopReason::Failed, "node " + std::to_string(from) +
                                               " sent an EOI of vector " +
                                               std::to_string(io.address));
            return;
        }
        if (host_.serve_eoi) host_.serve_eoi(uint8_t(io.address));
        return;
    }
    bool size_ok = io.size == 1 || io.size == 2 || io.size == 4 || io.size == 8;
    if (!size_ok || io.kind > uint8_t(IoKind::Mmio) || io.is_write > 1 ||
        (io.kind == uint8_t(IoKind::Pio) && io.address > 0xFFFF)) {
        host_.stop(
            StopReason::Failed, "node " + std::to_string(from) + " sent a malformed IoReq (kind " +
                                    std::to_string(io.kind) + ", size " + std::to_string(io.size) +
                                    ", address 0x" +
                                    [&] {
                                        char b[24];
                                        std::snprintf(b, sizeof b, "%" PRIx64, io.address);
                                        return std::string(b);
                                    }() +
                                    ")");
        return;
    }
    counters_.io_served.fetch_add(1, std::memory_order_relaxed);
    IoPayload reply = io;
    uint8_t buf[8] = {};
    if (io.is_write) std::memcpy(buf, &io.data, io.size);
    bool ok = host_.serve_io &&
              host_.serve_io(IoKind(io.kind), io.address, std::span(buf, io.size), io.is_write);
    reply.reserved0 = ok ? 1 : 0;  // "a device answered"
    reply.data = 0;
    if (!io.is_write) std::memcpy(&reply.data, buf, io.size);
    MsgHeader rh;
    rh.type = static_cast<uint16_t>(MsgType::IoReply);
    rh.request_id = h.request_id;
    send_or_report(from, rh, as_bytes_of(reply));
}

void NodeLink::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) {
    auto malformed = [&](const std::string& what) {
        host_.stop(StopReason::Failed, "node " + std::to_string(from) + " sent " + what);
    };
    switch (MsgType(h.type)) {
        case MsgType::Ipi: {
            auto p = record_from<IpiPayload>(payload);
            if (!p || !valid_mode(p->delivery_mode) || p->level > 1 || p->trigger > 1)
                return malformed("a malformed Ipi");
            InterruptMessage m;
            m.vector = p->vector;
            m.mode = DeliveryMode(p->delivery_mode);
            m.assert = p->level == 1;
            m.level_triggered = p->trigger == 1;
            m.dest = p->dest_vcpu;
            counters_.ipis_received.fetch_add(1, std::memory_order_relaxed);
            if (host_.deliver_ipi) host_.deliver_ipi(p->dest_vcpu, m, h.arg);
            return;
        }
        case MsgType::ApicIdUpdate: {
            auto p = record_from<ApicIdUpdatePayload>(payload);
            if (!p || p->apic_id > 0xFF) return malformed("a malformed ApicIdUpdate");
            Lapic::Addressing a{uint8_t(p->apic_id), uint8_t(p->ldr >> 24), (p->dfr >> 28) == 0xF,
                                (p->flags & 1) != 0};
            counters_.addressing_received.fetch_add(1, std::memory_order_relaxed);
            if (host_.apply_addressing) host_.apply_addressing(uint32_t(h.arg), a);
            return;
        }
        case MsgType::IoReq: {
            auto p = record_from<IoPayload>(payload);
            if (!p) return malformed("a malformed IoReq");
            handle_io_request(from, h, *p);
            return;
        }
        case MsgType::IoReply: {
            auto p = record_from<IoPayload>(payload);
            if (!p) return malformed("a malformed IoReply");
            std::lock_guard lk(mu_);
            auto it = pending_io_.find(h.request_id);
            if (it == pending_io_.end()) return;  // its waiter gave up (link closed)
            it->second->done = true;
            it->second->ok = p->reserved0 == 1;
            it->second->data = p->data;
            cv_.notify_all();
            return;
        }
        case MsgType::Shutdown: {
            auto p = record_from<ShutdownPayload>(payload);
            auto text = p ? p->reason_text() : std::nullopt;
            if (!p || !text || p->exit_code < 0 || p->exit_code > int32_t(StopReason::UserQuit))
                return malformed("a malformed Shutdown");
            if (h.arg >= num_nodes_ || h.arg == self_)
                return malformed("a Shutdown naming node " + std::to_string(h.arg) +
                                 " as its origin");
            const auto origin = NodeId(h.arg);
            // Stopped already (here, or told by another node): the others have been told.
            if (stop_sent_.exchange(true)) return;
            // Passed on before this node stops and its connections close (broadcast_stop).
            send_stop(h, *p, from, origin);
            StopReason r = StopReason(p->exit_code);
            KV_INFO("node %u: node %u stopped the guest (%s): %.*s", self_, origin, stop_name(r),
                    int(text->size()), text->data());
            if (host_.stop)
                host_.stop(r, std::string(*text) + " (on node " + std::to_string(origin) + ")");
            return;
        }
        case MsgType::Ping: {
            if (self_ != kIoNode) return malformed("a Ping to a node that is not node 0");
            MsgHeader r;
            r.type = static_cast<uint16_t>(MsgType::Pong);
            r.request_id = h.request_id;
            r.arg = host_tsc();
            uint64_t base = tsc_base_.load();
            send_or_report(from, r,
                           std::span(reinterpret_cast<const uint8_t*>(&base), sizeof base));
            return;
        }
        case MsgType::Pong: {
            uint64_t arrival = host_tsc();
            if (payload.size() != 8) return malformed("a Pong without the TSC base");
            uint64_t base;
            std::memcpy(&base, payload.data(), 8);
            std::lock_guard lk(mu_);
            if (!pong_request_ || *pong_request_ != h.request_id) return;  // a late answer
            pong_ = std::pair{h.arg, base};
            pong_arrival_ = arrival;
            cv_.notify_all();
            return;
        }
        case MsgType::TscRate: {
            if (self_ == kIoNode) return malformed("a TscRate to node 0");
            if (h.arg == 0 || h.arg > kMaxTscKhz)
                return malformed("a TscRate of " + std::to_string(h.arg) + " kHz");
            tsc_khz_.store(h.arg);
            return;
        }
        case MsgType::HpetCounter: {
            if (self_ == kIoNode) return malformed("an HpetCounter to node 0");
            if (h.arg > 1) return malformed("an HpetCounter with state " + std::to_string(h.arg));
            uint64_t value;
            std::memcpy(&value, payload.data(), 8);  // the codec checked the length
            std::lock_guard lk(hpet_mu_);
            hpet_ = Hpet::Counter{h.arg == 1, value};
            return;
        }
        case MsgType::Ready: {
            if (self_ != kIoNode) return malformed("a Ready to a node that is not node 0");
            std::lock_guard lk(mu_);
            if (from < ready_.size()) ready_[from] = true;
            cv_.notify_all();
            return;
        }
        default:
            return malformed("an unexpected " + std::to_string(h.type) + " message");
    }
}

void NodeLink::on_peer_lost(NodeId peer, const Error& why) {
    if (peer < num_nodes_) lost_[peer].store(true);
    close();
    if (host_.stop)
        host_.stop(StopReason::Failed, "node " + std::to_string(peer) + " lost: " + why.message);
}

void NodeLink::print_counters(FILE* out) const {
    const Counters& c = counters_;
    std::fprintf(out,
                 "node %u link: ipis sent=%" PRIu64 " received=%" PRIu64
                 "; apic-addressing sent=%" PRIu64 " received=%" PRIu64 "; io forwarded=%" PRIu64
                 " (waited %" PRIu64 " us) served=%" PRIu64 "; eoi forwarded=%" PRIu64
                 " served=%" PRIu64 "\n",
                 self_, c.ipis_sent.load(), c.ipis_received.load(), c.addressing_sent.load(),
                 c.addressing_received.load(), c.io_forwarded.load(), c.io_wait_ns.load() / 1000,
                 c.io_served.load(), c.eois_forwarded.load(), c.eois_served.load());
}

namespace {
using Kind = PayloadRule::Kind;
constexpr MessageSpec kLinkMessages[] = {
    {MsgType::Shutdown, {Kind::Fixed, sizeof(ShutdownPayload)}},
    {MsgType::Ping, {Kind::UpTo, kMaxPayload}},
    {MsgType::Pong, {Kind::UpTo, kMaxPayload}},
    {MsgType::Ready, {Kind::Empty, 0}},
    {MsgType::TscRate, {Kind::Empty, 0}},
    {MsgType::HpetCounter, {Kind::Fixed, 8}},
    {MsgType::Ipi, {Kind::Fixed, sizeof(IpiPayload)}},
    {MsgType::ApicIdUpdate, {Kind::Fixed, sizeof(ApicIdUpdatePayload)}},
    {MsgType::IoReq, {Kind::Fixed, sizeof(IoPayload)}},
    {MsgType::IoReply, {Kind::Fixed, sizeof(IoPayload)}},
};
}  // namespace

std::span<const MessageSpec> link_messages() {
    return kLinkMessages;
}

std::span<const MessageSpec> NodeLink::messages() const {
    return kLinkMessages;
}

}  // namespace kv
