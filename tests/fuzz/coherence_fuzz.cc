// libFuzzer target: coherence messages from fuzzed peer nodes, and this node's own faults,
// into the protocol core (memory/coherence_protocol.h) of one node of 3 with 6 pages (node
// K homes pages 2K and 2K+1), the state machine the engine (coherence_engine.h) runs on
// its receive and fault threads. As the transport does, a message whose length breaks the
// coherence rules (coherence_messages()) is not delivered but drops its peer; as the
// engine does, the first error the core returns is fatal and ends the run. A crash,
// sanitizer report, hang or broken invariant (abort) fails the fuzz ctest
// (tests/fuzz/CMakeLists.txt).
//
// The core's actions are carried out on a model of the node's mappings (none, read-only,
// read-write), as the engine carries them out with userfaultfd, and must be ones the
// engine can carry out: every page number inside guest RAM; no install over a present
// page (UFFDIO_COPY would fail), protect only a writable page, unprotect only a read-only
// one, drop only a present one; a page sent as LocalPage present and read-only (the
// engine reads it: a missing page would fault on the engine's own thread); sends only to
// another node, with a coherence type and a payload the receiver's rules take, data
// within the message it came from. After every step the model agrees with the core's
// local state of every page (I: none, S: read-only, M: read-write).
//
// Input layout: byte 0 picks this node (mod 3); then records of 4 bytes until the input
// ends:
//   u8 op: bit 7 set, a local fault on page `page` (bit 0: a write); else a message from
//          peer (op % 2) of type kTypes[(op >> 1) % 9]
//   u8 page: the header's arg (page frame number, mod 8: pages 6 and 7 are outside RAM)
//   u8 flags: the header's request_id (grant_flags)
//   u8 body: bit 0 set, a whole page of payload (filled with this byte), else none
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "base/log.h"
#include "interconnect/codec.h"
#include "memory/coherence_engine.h"
#include "memory/coherence_protocol.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr uint32_t kNodes = 3;
constexpr uint64_t kPages = 6;

constexpr kv::MsgType kTypes[] = {
    kv::MsgType::ReadReq,    kv::MsgType::WriteReq, kv::MsgType::Fetch,
    kv::MsgType::FetchInv,   kv::MsgType::Inv,      kv::MsgType::InvAck,
    kv::MsgType::FetchReply, kv::MsgType::Grant,    kv::MsgType::GrantAck,
};

enum class Map : uint8_t { None, RO, RW };

// Carries out `acts` on the model as CoherenceEngine::run_actions() does with userfaultfd.
void run(kv::NodeId self, const kv::Actions& acts, std::span<const uint8_t> payload,
         std::vector<Map>& map) {
    using kv::Action;
    for (const Action& a : acts) {
        check(a.pfn < kPages);
        Map& m = map[a.pfn];
        switch (a.op) {
            case Action::Op::Send: {
                check(a.to != self && a.to < kNodes);
                check(kv::CoherenceCore::is_coherence(a.type));
                size_t bytes = 0;
                if (a.payload == Action::Payload::LocalPage) {
                    check(m == Map::RO);
                    bytes = kv::kPageSize;
                } else if (a.payload == Action::Payload::Data) {
                    check(a.data.size() == kv::kPageSize);
                    check(a.data.data() >= payload.data() &&
                          a.data.data() + a.data.size() <= payload.data() + payload.size());
                    bytes = a.data.size();
                }
                kv::MsgHeader h;
                h.type = static_cast<uint16_t>(a.type);
                h.arg = a.pfn;
                h.request_id = a.flags;
                check(kv::prepare_outgoing(self, a.to, h, bytes, kv::coherence_messages()).ok());
                break;
            }
            case Action::Op::Install:
                check(m == Map::None);
                check(a.zero ||
                      (a.data.size() == kv::kPageSize && a.data.data() >= payload.data() &&
                       a.data.data() + a.data.size() <= payload.data() + payload.size()));
                check(a.state == kv::LocalState::S || a.state == kv::LocalState::M);
                m = a.state == kv::LocalState::S ? Map::RO : Map::RW;
                break;
            case Action::Op::Protect:
                check(m == Map::RW);
                m = Map::RO;
                break;
            case Action::Op::Unprotect:
                check(m == Map::RO);
                m = Map::RW;
                break;
            case Action::Op::Invalidate:
                check(m != Map::None);
                m = Map::None;
                break;
            case Action::Op::Wake:
                break;
        }
    }
}

void check_agrees(const kv::CoherenceCore& core, const std::vector<Map>& map) {
    for (uint64_t p = 0; p < kPages; ++p) {
        const kv::LocalState s = core.local_state(p);
        check(map[p] == (s == kv::LocalState::I   ? Map::None
                         : s == kv::LocalState::S ? Map::RO
                                                  : Map::RW));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    static const bool quiet = [] {
        set_log_level(LogLevel::Error);
        return true;
    }();
    (void)quiet;
    if (size == 0) return 0;
    const NodeId self = data[0] % kNodes;
    auto homes = HomeMap::even(kPages, kNodes);
    check(homes.ok());
    CoherenceCore core(self, *homes);
    std::vector<Map> map(kPages, Map::None);
    bool lost[kNodes] = {};
    Actions acts;
    std::vector<uint8_t> payload;

    for (size_t i = 1; i + 4 <= size; i += 4) {
        const uint8_t op = data[i], page = data[i + 1], flags = data[i + 2], body = data[i + 3];
        acts.clear();
        Status st;
        if (op & 0x80) {
            st = core.on_fault(page % kPages, (op & 1) ? Access::Write : Access::Read, acts);
            payload.clear();
        } else {
            const NodeId from = (self + 1 + op % 2) % kNodes;
            if (lost[from]) continue;  // a dropped peer sends nothing more
            MsgHeader h;
            h.type = static_cast<uint16_t>(kTypes[(op >> 1) % std::size(kTypes)]);
            h.arg = page % 8;
            h.request_id = flags;
            h.src = from;
            // A fresh buffer the size of the payload, so ASan sees a read past it.
            payload.assign((body & 1) ? kPageSize : 0, body);
            payload.shrink_to_fit();
            h.length = static_cast<uint32_t>(payload.size());
            if (!validate_payload(coherence_messages(), h.type, h.length).ok()) {
                lost[from] = true;  // the transport drops it (the engine then fails)
                continue;
            }
            st = core.on_message(from, h, payload, acts);
        }
        // An error is fatal for the guest: the engine stops serving (coherence_engine.h).
        if (!st) {
            check(!st.error().message.empty());
            return 0;
        }
        run(self, acts, payload, map);
        check_agrees(core, map);
    }
    return 0;
}
