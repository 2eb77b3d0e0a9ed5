// The coherence protocol core: a pure state machine (no system calls, no threads).
//
// Inputs are local faults and received coherence messages; outputs are Actions that the
// engine carries out in order (send a message, install a page, set or clear write
// protection, drop the local copy, wake faulting threads). The same core runs on every
// node and plays two roles:
//   - requester: the local state of every page (I / S / M) and at most one outstanding
//     request per page (further faults on that page coalesce behind it);
//   - home: for the pages this node homes, the directory entry (Uncached / Shared /
//     Modified, owner, sharer mask, busy flag, FIFO of waiting requests).
//
// Home-based, 4-hop, serialised per page at the home (docs/memory.md has the diagrams):
//
//   read miss    R --ReadReq--> H [--Fetch--> O --FetchReply(data)--> H] --Grant--> R
//                R --GrantAck--> H   (the home serves the next request of the page)
//   write miss   R --WriteReq--> H, then FetchInv to the owner or Inv to every sharer,
//                H waits for FetchReply / all InvAcks, --Grant--> R --GrantAck--> H
//   upgrade S->M the same WriteReq; the Grant carries no data if R is still a sharer
//                when the home serves it, and the page otherwise (it lost a race).
//
// The home is also a requester of its own pages: its requests go into the same FIFO
// without messages to itself, its own copy is installed, protected or dropped by local
// actions, and its transactions complete without a GrantAck. The home keeps a copy of
// every Shared page that is not a zero page (data passing through it on a Fetch is
// installed there), so a read of a Shared page is answered by the home alone.
//
// Crossing messages. Transports are FIFO per node pair and the home serves one
// transaction per page at a time, ending it only on GrantAck, so:
//   - an Inv or Fetch for a page is only ever sent after the Grant that created the copy
//     it targets has been acknowledged: an Inv cannot overtake that Grant. An Inv reaching
//     a node in I (it holds nothing) is answered with InvAck and changes nothing;
//   - two upgrades racing: the loser is invalidated (S -> I) while its WriteReq waits at
//     the home; when served it is no longer a sharer and is granted the page with data;
//   - a Fetch/FetchInv reaching a node that does not hold the page Modified is a protocol
//     violation (an Error naming the peer), as are all other out-of-protocol messages;
//   - faults from several threads of a node for one page: one request, the others are
//     coalesced (the kernel re-runs their access when the page is installed).
// The Promela model tests/model/coherence.pml checks these claims exhaustively.
//
// Threading: not thread-safe; the engine serialises calls and runs the returned actions
// before the next call (action order matters: protect, then read, then drop).
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "interconnect/message.h"
#include "memory/home_map.h"

namespace kv {

enum class LocalState : uint8_t { I, S, M };
enum class DirState : uint8_t { Uncached, Shared, Modified };
enum class Access : uint8_t { Read, Write };

// Flags carried in MsgHeader::request_id of coherence messages (the header has no flags
// field; see docs/memory.md "Wire").
namespace grant_flags {
constexpr uint64_t kZero = 1;     // Grant: install a zero page (no payload)
constexpr uint64_t kUpgrade = 2;  // Grant: S -> M, keep your copy (no payload)
}  // namespace grant_flags

struct Action {
    enum class Op : uint8_t {
        Send,        // send `type` for `pfn` to `to`, payload per `payload`
        Install,     // map the page with `data` (or zeros if `zero`), write-protected if S
        Protect,     // M -> S: set write protection (before the contents are read)
        Unprotect,   // S -> M: clear write protection, waking blocked writers
        Invalidate,  // drop the local copy (MADV_DONTNEED)
        Wake,        // wake threads blocked on the page (fault already satisfied)
    };
    enum class Payload : uint8_t {
        None,       // header only
        LocalPage,  // the current contents of the local copy (present, protected)
        Data,       // `data` (bytes of the message being handled)
    };
    Op op = Op::Send;
    uint64_t pfn = 0;
    // Send
    NodeId to = 0;
    MsgType type = MsgType::Ping;
    uint64_t flags = 0;  // goes to request_id
    Payload payload = Payload::None;
    // Install (and Send with Payload::Data)
    LocalState state = LocalState::I;
    bool zero = false;
    std::span<const uint8_t> data;
};
using Actions = std::vector<Action>;

struct DirEntry {
    DirState state = DirState::Uncached;
    bool zero = true;  // contents are all zero (never granted writable)
    bool busy = false;
    NodeId owner = 0;      // valid in Modified
    uint64_t sharers = 0;  // valid in Shared
    // The transaction being served while busy.
    NodeId requester = 0;
    Access kind = Access::Read;
    uint64_t acks_pending = 0;   // nodes whose InvAck is awaited
    bool fetch_pending = false;  // a FetchReply from `owner` is awaited
    bool grant_ack_pending = false;
};

class CoherenceCore {
  public:
    struct Counters {
        uint64_t coalesced_faults = 0;
        uint64_t spurious_faults = 0;  // the page already allowed the access
        uint64_t stale_invs = 0;       // an Inv reached a node holding nothing
    };

    CoherenceCore(NodeId self, HomeMap homes);

    // A local thread faulted on `pfn` (MISSING: the page is I; WP: a write to S).
    Status on_fault(uint64_t pfn, Access access, Actions& out);
    // A coherence message arrived from `from`. `payload` must outlive the actions.
    Status on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload,
                      Actions& out);

    NodeId self() const { return self_; }
    const HomeMap& homes() const { return homes_; }
    LocalState local_state(uint64_t pfn) const { return local_[pfn].state; }
    bool pending(uint64_t pfn) const { return local_[pfn].pending; }
    // Directory entry of a page this node homes (nullptr otherwise).
    const DirEntry* dir(uint64_t pfn) const;
    size_t queued(uint64_t pfn) const;
    const Counters& counters() const { return counters_; }

    static bool is_coherence(MsgType t) {
        return static_cast<uint16_t>(t) >= 0x0201 && static_cast<uint16_t>(t) <= 0x0209;
    }

  private:
    struct Local {
        LocalState state = LocalState::I;
        bool pending = false;  // a request is outstanding (one per page per node)
        Access want = Access::Read;
    };
    struct Request {
        NodeId node;
        Access kind;
    };

    DirEntry* dir_mut(uint64_t pfn);
    Error violation(NodeId from, const MsgHeader& h, const char* why) const;

    // Home side.
    void enqueue(uint64_t pfn, DirEntry& e, Request r, Actions& out);
    void serve(uint64_t pfn, DirEntry& e, Request r, Actions& out);
    void serve_next(uint64_t pfn, DirEntry& e, Actions& out);
    void finish_write_from_shared(uint64_t pfn, DirEntry& e, Actions& out);
    // Sends a Grant to a remote requester or applies it locally (then completes).
    void grant(uint64_t pfn, DirEntry& e, Action::Payload payload, bool zero, bool upgrade,
               std::span<const uint8_t> data, Actions& out);
    void complete(uint64_t pfn, DirEntry& e, Actions& out);

    // Requester side applied locally.
    void install_local(uint64_t pfn, LocalState s, bool zero, std::span<const uint8_t> data,
                       Actions& out);
    void drop_local(uint64_t pfn, Actions& out);

    static void send(Actions& out, NodeId to, MsgType t, uint64_t pfn,
                     Action::Payload p = Action::Payload::None, uint64_t flags = 0,
                     std::span<const uint8_t> data = {});

    NodeId self_;
    HomeMap homes_;
    std::vector<Local> local_;
    // Directory entries of the pages homed here: homed ranges concatenated.
    struct HomedRange {
        uint64_t first, end, index;
    };
    std::vector<HomedRange> homed_;
    std::vector<DirEntry> dir_;
    // Waiting requests of busy pages, created on demand (most pages never queue).
    std::unordered_map<uint64_t, std::deque<Request>> waiting_;
    Counters counters_;
};

const char* to_string(LocalState s);
const char* to_string(DirState s);

}  // namespace kv
