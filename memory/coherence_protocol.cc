#include "memory/coherence_protocol.h"

#include <cassert>
#include <cstdio>

#include "memory/guest_memory.h"

namespace kv {

namespace {
constexpr uint64_t bit(NodeId n) {
    return uint64_t{1} << n;
}
}  // namespace

const char* to_string(LocalState s) {
    switch (s) {
        case LocalState::I:
            return "I";
        case LocalState::S:
            return "S";
        case LocalState::M:
            return "M";
    }
    return "?";
}

const char* to_string(DirState s) {
    switch (s) {
        case DirState::Uncached:
            return "Uncached";
        case DirState::Shared:
            return "Shared";
        case DirState::Modified:
            return "Modified";
    }
    return "?";
}

CoherenceCore::CoherenceCore(NodeId self, HomeMap homes)
    : self_(self), homes_(std::move(homes)), local_(homes_.num_pages()) {
    uint64_t index = 0;
    for (const auto& r : homes_.ranges()) {
        if (r.home != self_) continue;
        homed_.push_back({r.first, r.end, index});
        index += r.end - r.first;
    }
    dir_.resize(index);
}

DirEntry* CoherenceCore::dir_mut(uint64_t pfn) {
    for (const auto& r : homed_)
        if (pfn >= r.first && pfn < r.end) return &dir_[r.index + (pfn - r.first)];
    return nullptr;
}

const DirEntry* CoherenceCore::dir(uint64_t pfn) const {
    return const_cast<CoherenceCore*>(this)->dir_mut(pfn);
}

size_t CoherenceCore::queued(uint64_t pfn) const {
    auto it = waiting_.find(pfn);
    return it == waiting_.end() ? 0 : it->second.size();
}

Error CoherenceCore::violation(NodeId from, const MsgHeader& h, const char* why) const {
    return Error{"coherence: node " + std::to_string(from) + " sent message type 0x" +
                 [&] {
                     char b[8];
                     std::snprintf(b, sizeof b, "%04x", h.type);
                     return std::string(b);
                 }() +
                 " for page " + std::to_string(h.arg) + ": " + why};
}

void CoherenceCore::send(Actions& out, NodeId to, MsgType t, uint64_t pfn, Action::Payload p,
                         uint64_t flags, std::span<const uint8_t> data) {
    Action a;
    a.op = Action::Op::Send;
    a.pfn = pfn;
    a.to = to;
    a.type = t;
    a.payload = p;
    a.flags = flags;
    a.data = data;
    out.push_back(a);
}

static Action local_op(Action::Op op, uint64_t pfn) {
    Action a;
    a.op = op;
    a.pfn = pfn;
    return a;
}

void CoherenceCore::install_local(uint64_t pfn, LocalState s, bool zero,
                                  std::span<const uint8_t> data, Actions& out) {
    Action a = local_op(Action::Op::Install, pfn);
    a.state = s;
    a.zero = zero;
    a.data = data;
    out.push_back(a);
    local_[pfn].state = s;
}

void CoherenceCore::drop_local(uint64_t pfn, Actions& out) {
    out.push_back(local_op(Action::Op::Invalidate, pfn));
    local_[pfn].state = LocalState::I;
}

// ---------------------------------------------------------------------------------------
// Requester side

Status CoherenceCore::on_fault(uint64_t pfn, Access access, Actions& out) {
    if (pfn >= homes_.num_pages())
        return Error{"coherence: fault on page " + std::to_string(pfn) + " outside guest RAM"};
    Local& l = local_[pfn];
    if (l.pending) {
        // Another thread of this node already asked: its grant installs the page and the
        // kernel re-runs this access (which may then fault again, e.g. write after read).
        ++counters_.coalesced_faults;
        return {};
    }
    if ((access == Access::Read && l.state != LocalState::I) || l.state == LocalState::M) {
        // Resolved between the fault and our reading of its event.
        ++counters_.spurious_faults;
        out.push_back(local_op(Action::Op::Wake, pfn));
        return {};
    }
    l.pending = true;
    l.want = access;
    NodeId home = homes_.home_of(pfn);
    if (home == self_) {
        // The home requests its own page without a message to itself.
        DirEntry* e = dir_mut(pfn);
        enqueue(pfn, *e, {self_, access}, out);
    } else {
        send(out, home, access == Access::Read ? MsgType::ReadReq : MsgType::WriteReq, pfn);
    }
    return {};
}

Status CoherenceCore::on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload,
                                 Actions& out) {
    const uint64_t pfn = h.arg;
    if (from >= homes_.num_nodes() || from == self_)
        return violation(from, h, "sender is not a peer node");
    if (pfn >= homes_.num_pages()) return violation(from, h, "page outside guest RAM");
    const auto type = static_cast<MsgType>(h.type);
    const NodeId home = homes_.home_of(pfn);
    const bool data_ok = payload.size() == kPageSize;
    Local& l = local_[pfn];

    switch (type) {
        // ----- requester side: messages from the page's home -----
        case MsgType::Grant: {
            if (from != home) return violation(from, h, "Grant from a node that is not the home");
            if (!l.pending) return violation(from, h, "Grant without an outstanding request");
            const bool zero = h.request_id & grant_flags::kZero;
            const bool upgrade = h.request_id & grant_flags::kUpgrade;
            if ((zero || upgrade) ? !payload.empty() : !data_ok)
                return violation(from, h, "Grant payload does not match its flags");
            if (upgrade) {
                if (l.want != Access::Write || l.state != LocalState::S)
                    return violation(from, h, "upgrade Grant to a node not holding S");
                out.push_back(local_op(Action::Op::Unprotect, pfn));
                l.state = LocalState::M;
            } else {
                if (l.state != LocalState::I)
                    return violation(from, h, "Grant with data to a node holding a copy");
                install_local(pfn, l.want == Access::Read ? LocalState::S : LocalState::M, zero,
                              payload, out);
            }
            l.pending = false;
            // After the install: the home's next Inv/Fetch for this page follows our ack.
            send(out, home, MsgType::GrantAck, pfn);
            return {};
        }
        case MsgType::Inv: {
            if (from != home) return violation(from, h, "Inv from a node that is not the home");
            if (!payload.empty()) return violation(from, h, "Inv with a payload");
            if (l.state == LocalState::M) return violation(from, h, "Inv to the owner");
            if (l.state == LocalState::S)
                drop_local(pfn, out);
            else
                ++counters_.stale_invs;  // nothing held (see header): acknowledge only
            send(out, home, MsgType::InvAck, pfn);
            return {};
        }
        case MsgType::Fetch:
        case MsgType::FetchInv: {
            if (from != home) return violation(from, h, "Fetch from a node that is not the home");
            if (!payload.empty()) return violation(from, h, "Fetch with a payload");
            if (l.state != LocalState::M)
                return violation(from, h, "Fetch to a node not holding the page Modified");
            // Write-protect first so that the copy sent is a snapshot no local writer can
            // change behind it; the writers block in WP faults and re-request.
            out.push_back(local_op(Action::Op::Protect, pfn));
            l.state = LocalState::S;
            send(out, home, MsgType::FetchReply, pfn, Action::Payload::LocalPage);
            if (type == MsgType::FetchInv) drop_local(pfn, out);
            return {};
        }

        // ----- home side: messages about a page this node homes -----
        case MsgType::ReadReq:
        case MsgType::WriteReq:
        case MsgType::InvAck:
        case MsgType::FetchReply:
        case MsgType::GrantAck:
            break;
        default:
            return violation(from, h, "not a coherence message");
    }

    if (home != self_) return violation(from, h, "request for a page this node does not home");
    DirEntry& e = *dir_mut(pfn);
    switch (type) {
        case MsgType::ReadReq:
        case MsgType::WriteReq: {
            if (!payload.empty()) return violation(from, h, "request with a payload");
            const Access kind = type == MsgType::ReadReq ? Access::Read : Access::Write;
            // One outstanding request per page per node: a second one is out of protocol.
            bool dup = e.busy && e.requester == from;
            if (auto it = waiting_.find(pfn); it != waiting_.end())
                for (const auto& r : it->second) dup |= r.node == from;
            if (dup) return violation(from, h, "second outstanding request for the page");
            if (e.state == DirState::Modified && e.owner == from)
                return violation(from, h, "request from the page's owner");
            if (kind == Access::Read && e.state == DirState::Shared && (e.sharers & bit(from)))
                return violation(from, h, "read request from a sharer");
            enqueue(pfn, e, {from, kind}, out);
            return {};
        }
        case MsgType::InvAck: {
            if (!payload.empty()) return violation(from, h, "InvAck with a payload");
            if (!e.busy || !(e.acks_pending & bit(from)))
                return violation(from, h, "InvAck not awaited");
            e.acks_pending &= ~bit(from);
            e.sharers &= ~bit(from);
            if (e.acks_pending == 0) finish_write_from_shared(pfn, e, out);
            return {};
        }
        case MsgType::FetchReply: {
            if (!e.busy || !e.fetch_pending || from != e.owner)
                return violation(from, h, "FetchReply not awaited");
            if (!data_ok) return violation(from, h, "FetchReply without a page");
            e.fetch_pending = false;
            e.zero = false;
            if (e.kind == Access::Read) {
                e.state = DirState::Shared;
                e.sharers = bit(from) | bit(e.requester);
                const bool for_self = e.requester == self_;
                grant(pfn, e, Action::Payload::Data, false, false, payload, out);
                if (!for_self) {
                    // Keep a home copy so later reads of the Shared page are answered by
                    // the home alone (after the Grant: it is off the requester's path).
                    install_local(pfn, LocalState::S, false, payload, out);
                    e.sharers |= bit(self_);
                }
            } else {
                e.state = DirState::Modified;
                e.owner = e.requester;
                e.sharers = 0;
                grant(pfn, e, Action::Payload::Data, false, false, payload, out);
            }
            return {};
        }
        case MsgType::GrantAck: {
            if (!payload.empty()) return violation(from, h, "GrantAck with a payload");
            if (!e.busy || !e.grant_ack_pending || e.requester != from)
                return violation(from, h, "GrantAck not awaited");
            complete(pfn, e, out);
            return {};
        }
        default:
            return violation(from, h, "not a coherence message");
    }
}

// ---------------------------------------------------------------------------------------
// Home side

void CoherenceCore::enqueue(uint64_t pfn, DirEntry& e, Request r, Actions& out) {
    if (e.busy) {
        waiting_[pfn].push_back(r);
        return;
    }
    serve(pfn, e, r, out);
}

void CoherenceCore::serve_next(uint64_t pfn, DirEntry& e, Actions& out) {
    while (!e.busy) {
        auto it = waiting_.find(pfn);
        if (it == waiting_.end()) return;
        Request r = it->second.front();
        it->second.pop_front();
        if (it->second.empty()) waiting_.erase(it);
        serve(pfn, e, r, out);
    }
}

void CoherenceCore::complete(uint64_t pfn, DirEntry& e, Actions& out) {
    e.busy = false;
    e.grant_ack_pending = false;
    if (e.requester == self_) local_[pfn].pending = false;
    serve_next(pfn, e, out);
}

void CoherenceCore::grant(uint64_t pfn, DirEntry& e, Action::Payload payload, bool zero,
                          bool upgrade, std::span<const uint8_t> data, Actions& out) {
    if (e.requester == self_) {
        if (upgrade) {
            out.push_back(local_op(Action::Op::Unprotect, pfn));
            local_[pfn].state = LocalState::M;
        } else {
            install_local(pfn, e.kind == Access::Read ? LocalState::S : LocalState::M, zero, data,
                          out);
        }
        complete(pfn, e, out);
        return;
    }
    uint64_t flags = (zero ? grant_flags::kZero : 0) | (upgrade ? grant_flags::kUpgrade : 0);
    send(out, e.requester, MsgType::Grant, pfn, payload, flags, data);
    e.grant_ack_pending = true;
}

void CoherenceCore::serve(uint64_t pfn, DirEntry& e, Request r, Actions& out) {
    e.busy = true;
    e.requester = r.node;
    e.kind = r.kind;
    e.acks_pending = 0;
    e.fetch_pending = false;
    e.grant_ack_pending = false;

    if (r.node == self_) {
        // The home's own request may have been satisfied while it waited in the FIFO
        // (the home keeps a copy of data that passes through it).
        LocalState s = local_[pfn].state;
        if ((r.kind == Access::Read && s != LocalState::I) || s == LocalState::M) {
            out.push_back(local_op(Action::Op::Wake, pfn));
            complete(pfn, e, out);
            return;
        }
    }

    if (r.kind == Access::Read) {
        switch (e.state) {
            case DirState::Uncached:  // never touched: a zero page, no transfer
                e.state = DirState::Shared;
                e.sharers = bit(r.node);
                grant(pfn, e, Action::Payload::None, true, false, {}, out);
                return;
            case DirState::Shared:
                e.sharers |= bit(r.node);
                if (e.zero) {
                    grant(pfn, e, Action::Payload::None, true, false, {}, out);
                } else {
                    // Invariant: a Shared non-zero page has a copy at its home.
                    assert(local_[pfn].state == LocalState::S);
                    grant(pfn, e, Action::Payload::LocalPage, false, false, {}, out);
                }
                return;
            case DirState::Modified:
                if (e.owner == self_) {
                    // Protect before the Grant reads the contents (local writers block).
                    out.push_back(local_op(Action::Op::Protect, pfn));
                    local_[pfn].state = LocalState::S;
                    e.state = DirState::Shared;
                    e.sharers = bit(self_) | bit(r.node);
                    e.zero = false;
                    grant(pfn, e, Action::Payload::LocalPage, false, false, {}, out);
                } else {
                    e.fetch_pending = true;
                    send(out, e.owner, MsgType::Fetch, pfn);
                }
                return;
        }
    }

    switch (e.state) {
        case DirState::Uncached:
            e.state = DirState::Modified;
            e.owner = r.node;
            e.zero = false;
            grant(pfn, e, Action::Payload::None, true, false, {}, out);
            return;
        case DirState::Shared: {
            // Invalidate every other sharer; the home's own copy is dropped last, after the
            // Grant has been built from it (finish_write_from_shared).
            e.acks_pending = e.sharers & ~bit(r.node) & ~bit(self_);
            for (NodeId n = 0; n < homes_.num_nodes(); ++n)
                if (e.acks_pending & bit(n)) send(out, n, MsgType::Inv, pfn);
            if (e.acks_pending == 0) finish_write_from_shared(pfn, e, out);
            return;
        }
        case DirState::Modified:
            if (e.owner == self_) {
                out.push_back(local_op(Action::Op::Protect, pfn));
                local_[pfn].state = LocalState::S;
                e.owner = r.node;
                grant(pfn, e, Action::Payload::LocalPage, false, false, {}, out);
                drop_local(pfn, out);
            } else {
                e.fetch_pending = true;
                send(out, e.owner, MsgType::FetchInv, pfn);
            }
            return;
    }
}

void CoherenceCore::finish_write_from_shared(uint64_t pfn, DirEntry& e, Actions& out) {
    const NodeId r = e.requester;
    const bool requester_has_copy = e.sharers & bit(r);
    const bool home_has_copy = r != self_ && (e.sharers & bit(self_));
    const bool zero = e.zero;
    e.state = DirState::Modified;
    e.owner = r;
    e.sharers = 0;
    e.zero = false;
    if (requester_has_copy) {
        grant(pfn, e, Action::Payload::None, false, true, {}, out);
    } else if (zero) {
        grant(pfn, e, Action::Payload::None, true, false, {}, out);
    } else {
        // The requester lost its copy (or never had one): send the home's.
        assert(home_has_copy);
        grant(pfn, e, Action::Payload::LocalPage, false, false, {}, out);
    }
    if (home_has_copy) drop_local(pfn, out);
}

}  // namespace kv
