// Unit tests of the coherence protocol core (memory/coherence_protocol.h): every
// transition of the requester and home sides, crossing messages, home-local requests,
// protocol violations, and randomised interleavings checked for single-writer and
// last-value-read on a simulated cluster.
#include <gtest/gtest.h>

#include "memory/coherence_protocol.h"
#include "tests/coherence/sim_cluster.h"

namespace kv {
namespace {

using testing::Map;
using testing::SimCluster;
using Op = Action::Op;

// 3 nodes, 3 pages: node K homes page K.
constexpr uint64_t P0 = 0, P1 = 1, P2 = 2;

MsgType type_of(const testing::SimMsg* m) {
    return static_cast<MsgType>(m->h.type);
}

TEST(MemHomeMap, EvenSlices) {
    auto m = HomeMap::even(10, 3);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->home_of(0), 0u);
    EXPECT_EQ(m->home_of(2), 0u);
    EXPECT_EQ(m->home_of(3), 1u);
    EXPECT_EQ(m->home_of(6), 2u);
    EXPECT_EQ(m->home_of(9), 2u);
}

TEST(MemHomeMap, RejectsBadRanges) {
    EXPECT_FALSE(HomeMap::even(10, 0).ok());
    EXPECT_FALSE(HomeMap::even(10, 65).ok());
    EXPECT_FALSE(HomeMap::from_ranges({{0, 5, 0}, {6, 10, 1}}, 10, 2).ok());  // gap
    EXPECT_FALSE(HomeMap::from_ranges({{0, 5, 0}, {5, 10, 2}}, 10, 2).ok());  // node 2
    EXPECT_FALSE(HomeMap::from_ranges({{0, 5, 0}}, 10, 2).ok());              // short
    auto m = HomeMap::from_ranges({{0, 8, 1}, {8, 10, 0}}, 10, 2);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->home_of(7), 1u);
    EXPECT_EQ(m->home_of(8), 0u);
}

TEST(MemProtocol, ReadMissOnUntouchedPageIsAZeroGrant) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    ASSERT_EQ(c.last().size(), 1u);
    EXPECT_EQ(c.last()[0].type, MsgType::ReadReq);
    EXPECT_EQ(c.last()[0].to, 0u);
    EXPECT_TRUE(c.core(1).pending(P0));
    ASSERT_TRUE(c.deliver(1, 0).ok());
    const auto* g = c.peek(0, 1);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(type_of(g), MsgType::Grant);
    EXPECT_EQ(g->h.request_id, grant_flags::kZero);
    EXPECT_TRUE(g->payload.empty());
    EXPECT_TRUE(c.core(0).dir(P0)->busy);  // until the GrantAck
    ASSERT_TRUE(c.deliver(0, 1).ok());
    EXPECT_EQ(c.last()[0].op, Op::Install);
    EXPECT_TRUE(c.last()[0].zero);
    EXPECT_EQ(c.last()[1].type, MsgType::GrantAck);
    EXPECT_EQ(c.mapping(1, P0), Map::RO);
    EXPECT_FALSE(c.core(1).pending(P0));
    ASSERT_TRUE(c.deliver(1, 0).ok());
    const DirEntry* e = c.core(0).dir(P0);
    EXPECT_FALSE(e->busy);
    EXPECT_EQ(e->state, DirState::Shared);
    EXPECT_EQ(e->sharers, 0b010u);
    EXPECT_TRUE(e->zero);
}

TEST(MemProtocol, WriteMissOnUntouchedPageIsAZeroGrantModified) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(2, P1, Access::Write).ok());
    EXPECT_EQ(c.last()[0].type, MsgType::WriteReq);
    ASSERT_TRUE(c.deliver(2, 1).ok());
    ASSERT_TRUE(c.deliver(1, 2).ok());
    EXPECT_EQ(c.mapping(2, P1), Map::RW);
    ASSERT_TRUE(c.deliver(2, 1).ok());
    EXPECT_EQ(c.core(1).dir(P1)->state, DirState::Modified);
    EXPECT_EQ(c.core(1).dir(P1)->owner, 2u);
    c.write(2, P1);
}

TEST(MemProtocol, ReadOfPageModifiedAtHomeProtectsThenSends) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(0, P0, Access::Write).ok());  // home's own: no message
    EXPECT_EQ(c.in_flight(), 0u);
    EXPECT_EQ(c.mapping(0, P0), Map::RW);
    c.write(0, P0);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    ASSERT_GE(c.last().size(), 2u);
    EXPECT_EQ(c.last()[0].op, Op::Protect);  // before the contents are read
    EXPECT_EQ(c.last()[1].type, MsgType::Grant);
    EXPECT_EQ(c.last()[1].payload, Action::Payload::LocalPage);
    EXPECT_EQ(c.mapping(0, P0), Map::RO);
    ASSERT_TRUE(c.deliver(0, 1).ok());
    c.read(1, P0);
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(c.core(0).dir(P0)->sharers, 0b011u);
}

TEST(MemProtocol, ReadOfPageModifiedAtThirdNodeFetchesThroughHome) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(2, 0).ok());
    ASSERT_TRUE(c.deliver(0, 2).ok());
    ASSERT_TRUE(c.deliver(2, 0).ok());
    c.write(2, P0);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(type_of(c.peek(0, 2)), MsgType::Fetch);
    ASSERT_TRUE(c.deliver(0, 2).ok());
    EXPECT_EQ(c.last()[0].op, Op::Protect);
    EXPECT_EQ(c.last()[1].type, MsgType::FetchReply);
    EXPECT_EQ(c.mapping(2, P0), Map::RO);
    ASSERT_TRUE(c.deliver(2, 0).ok());
    // The home forwards the page and keeps a copy, after the Grant is on its way.
    EXPECT_EQ(c.last()[0].type, MsgType::Grant);
    EXPECT_EQ(c.last()[0].payload, Action::Payload::Data);
    EXPECT_EQ(c.last()[1].op, Op::Install);
    EXPECT_EQ(c.mapping(0, P0), Map::RO);
    ASSERT_TRUE(c.deliver(0, 1).ok());
    c.read(1, P0);
    c.read(0, P0);
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(c.core(0).dir(P0)->state, DirState::Shared);
    EXPECT_EQ(c.core(0).dir(P0)->sharers, 0b111u);
    EXPECT_FALSE(c.core(0).dir(P0)->zero);
}

TEST(MemProtocol, ReadOfSharedPageIsServedFromTheHomeCopy) {
    SimCluster c(3, 3);
    std::mt19937 rng(1);
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    c.drain(rng);
    c.write(2, P0);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    c.drain(rng);  // now Shared {0,1,2}
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    c.drain(rng);
    c.write(2, P0);
    ASSERT_TRUE(c.fault(0, P0, Access::Read).ok());  // home fetches: Shared {0,2}
    c.drain(rng);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(c.last()[0].type, MsgType::Grant);  // no Fetch to node 2
    EXPECT_EQ(c.last()[0].payload, Action::Payload::LocalPage);
    c.drain(rng);
    c.read(1, P0);
}

TEST(MemProtocol, UpgradeInvalidatesOtherSharersAndGrantsWithoutData) {
    SimCluster c(4, 4);  // node K homes page K
    std::mt19937 rng(2);
    for (NodeId n : {1u, 2u, 3u}) {
        ASSERT_TRUE(c.fault(n, P0, Access::Read).ok());
        c.drain(rng);
    }
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    EXPECT_EQ(c.last()[0].type, MsgType::WriteReq);
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(c.last().size(), 2u);  // Inv to 2 and 3, not to the requester
    EXPECT_EQ(type_of(c.peek(0, 2)), MsgType::Inv);
    EXPECT_EQ(type_of(c.peek(0, 3)), MsgType::Inv);
    EXPECT_EQ(c.peek(0, 1), nullptr);  // no Grant before every InvAck
    ASSERT_TRUE(c.deliver(0, 2).ok());
    EXPECT_EQ(c.last()[0].op, Op::Invalidate);
    EXPECT_EQ(c.last()[1].type, MsgType::InvAck);
    ASSERT_TRUE(c.deliver(2, 0).ok());
    EXPECT_EQ(c.peek(0, 1), nullptr);
    ASSERT_TRUE(c.deliver(0, 3).ok());
    ASSERT_TRUE(c.deliver(3, 0).ok());
    const auto* g = c.peek(0, 1);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->h.request_id, grant_flags::kUpgrade);
    EXPECT_TRUE(g->payload.empty());
    ASSERT_TRUE(c.deliver(0, 1).ok());
    EXPECT_EQ(c.last()[0].op, Op::Unprotect);
    c.drain(rng);
    c.write(1, P0);
    EXPECT_EQ(c.mapping(2, P0), Map::None);
    EXPECT_EQ(c.mapping(3, P0), Map::None);
}

TEST(MemProtocol, UpgradeDropsTheHomeCopyAfterTheGrant) {
    SimCluster c(3, 3);
    std::mt19937 rng(3);
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    c.drain(rng);
    c.write(2, P0);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    c.drain(rng);  // Shared {0 (home copy), 1, 2}
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    ASSERT_TRUE(c.deliver(0, 2).ok());
    ASSERT_TRUE(c.deliver(2, 0).ok());
    ASSERT_EQ(c.last().size(), 2u);
    EXPECT_EQ(c.last()[0].type, MsgType::Grant);
    EXPECT_EQ(c.last()[1].op, Op::Invalidate);
    EXPECT_EQ(c.mapping(0, P0), Map::None);
    c.drain(rng);
    c.write(1, P0);
}

TEST(MemProtocol, RacingUpgradesTheLoserIsGrantedData) {
    SimCluster c(3, 3);
    std::mt19937 rng(4);
    for (NodeId n : {1u, 2u}) {
        ASSERT_TRUE(c.fault(n, P0, Access::Read).ok());
        c.drain(rng);
    }
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());  // node 1 wins: Inv to 2
    ASSERT_TRUE(c.deliver(2, 0).ok());  // node 2's WriteReq waits in the FIFO
    EXPECT_EQ(c.core(0).queued(P0), 1u);
    ASSERT_TRUE(c.deliver(0, 2).ok());  // node 2 loses its S copy, request still pending
    EXPECT_EQ(c.mapping(2, P0), Map::None);
    EXPECT_TRUE(c.core(2).pending(P0));
    ASSERT_TRUE(c.deliver(2, 0).ok());  // InvAck
    ASSERT_TRUE(c.deliver(0, 1).ok());  // upgrade grant
    c.write(1, P0);
    ASSERT_TRUE(c.deliver(1, 0).ok());  // GrantAck: the home serves node 2
    EXPECT_EQ(type_of(c.peek(0, 1)), MsgType::FetchInv);
    ASSERT_TRUE(c.deliver(0, 1).ok());
    EXPECT_EQ(c.last()[0].op, Op::Protect);
    EXPECT_EQ(c.last()[1].type, MsgType::FetchReply);
    EXPECT_EQ(c.last()[2].op, Op::Invalidate);
    ASSERT_TRUE(c.deliver(1, 0).ok());
    const auto* g = c.peek(0, 2);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->h.request_id, 0u);
    EXPECT_EQ(g->payload.size(), kPageSize);
    ASSERT_TRUE(c.deliver(0, 2).ok());
    c.read(2, P0);  // sees node 1's write
    c.write(2, P0);
    c.drain(rng);
    EXPECT_EQ(c.core(0).dir(P0)->owner, 2u);
}

TEST(MemProtocol, WriteToPageModifiedElsewhereFetchesAndInvalidates) {
    SimCluster c(3, 3);
    std::mt19937 rng(5);
    ASSERT_TRUE(c.fault(1, P2, Access::Write).ok());
    c.drain(rng);
    c.write(1, P2);
    ASSERT_TRUE(c.fault(0, P2, Access::Write).ok());
    ASSERT_TRUE(c.deliver(0, 2).ok());
    EXPECT_EQ(type_of(c.peek(2, 1)), MsgType::FetchInv);
    c.drain(rng);
    EXPECT_EQ(c.mapping(1, P2), Map::None);
    c.write(0, P2);
    EXPECT_EQ(c.core(2).dir(P2)->owner, 0u);
}

TEST(MemProtocol, FaultsOfOneNodeOnOnePageAreCoalesced) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    EXPECT_EQ(c.last().size(), 1u);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    EXPECT_TRUE(c.last().empty());
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    EXPECT_TRUE(c.last().empty());
    EXPECT_EQ(c.core(1).counters().coalesced_faults, 2u);
    EXPECT_EQ(c.in_flight(), 1u);
}

TEST(MemProtocol, FaultAlreadySatisfiedOnlyWakes) {
    SimCluster c(3, 3);
    std::mt19937 rng(6);
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    c.drain(rng);
    ASSERT_TRUE(c.fault(1, P0, Access::Read).ok());
    ASSERT_EQ(c.last().size(), 1u);
    EXPECT_EQ(c.last()[0].op, Op::Wake);
    EXPECT_EQ(c.core(1).counters().spurious_faults, 1u);
}

TEST(MemProtocol, HomeRequestsItsOwnPagesWithoutMessages) {
    SimCluster c(3, 3);
    ASSERT_TRUE(c.fault(0, P0, Access::Read).ok());
    EXPECT_EQ(c.in_flight(), 0u);
    EXPECT_EQ(c.mapping(0, P0), Map::RO);
    EXPECT_FALSE(c.core(0).pending(P0));
    ASSERT_TRUE(c.fault(0, P0, Access::Write).ok());
    EXPECT_EQ(c.last()[0].op, Op::Unprotect);
    EXPECT_EQ(c.in_flight(), 0u);
    c.write(0, P0);
}

TEST(MemProtocol, HomeWriteInvalidatesRemoteSharersFirst) {
    SimCluster c(3, 3);
    std::mt19937 rng(7);
    ASSERT_TRUE(c.fault(0, P0, Access::Read).ok());
    ASSERT_TRUE(c.fault(2, P0, Access::Read).ok());
    c.drain(rng);
    ASSERT_TRUE(c.fault(0, P0, Access::Write).ok());
    EXPECT_EQ(c.last()[0].type, MsgType::Inv);
    EXPECT_EQ(c.mapping(0, P0), Map::RO);  // not writable before the InvAck
    ASSERT_TRUE(c.deliver(0, 2).ok());
    ASSERT_TRUE(c.deliver(2, 0).ok());
    EXPECT_EQ(c.last()[0].op, Op::Unprotect);
    c.write(0, P0);
}

TEST(MemProtocol, HomeRequestQueuesBehindARemoteTransaction) {
    SimCluster c(3, 3);
    std::mt19937 rng(8);
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());  // granted, GrantAck not yet back
    ASSERT_TRUE(c.fault(0, P0, Access::Read).ok());
    EXPECT_TRUE(c.last().empty());
    EXPECT_EQ(c.core(0).queued(P0), 1u);
    ASSERT_TRUE(c.deliver(0, 1).ok());
    c.write(1, P0);
    ASSERT_TRUE(c.deliver(1, 0).ok());  // GrantAck: the home's read is served -> Fetch
    EXPECT_EQ(type_of(c.peek(0, 1)), MsgType::Fetch);
    c.drain(rng);
    c.read(0, P0);
    EXPECT_FALSE(c.core(0).pending(P0));
}

TEST(MemProtocol, QueuedRequestsAreServedInArrivalOrder) {
    SimCluster c(4, 4);
    std::mt19937 rng(9);
    ASSERT_TRUE(c.fault(1, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    ASSERT_TRUE(c.fault(3, P0, Access::Write).ok());
    ASSERT_TRUE(c.fault(2, P0, Access::Write).ok());
    ASSERT_TRUE(c.deliver(3, 0).ok());
    ASSERT_TRUE(c.deliver(2, 0).ok());
    EXPECT_EQ(c.core(0).queued(P0), 2u);
    ASSERT_TRUE(c.deliver(0, 1).ok());
    ASSERT_TRUE(c.deliver(1, 0).ok());
    EXPECT_EQ(c.core(0).dir(P0)->requester, 3u);
    c.drain(rng);
    EXPECT_EQ(c.core(0).dir(P0)->owner, 2u);
    EXPECT_FALSE(c.core(0).dir(P0)->busy);
}

TEST(MemProtocol, InvReachingANodeHoldingNothingIsAcknowledged) {
    SimCluster c(3, 3);
    MsgHeader h;
    h.type = static_cast<uint16_t>(MsgType::Inv);
    h.arg = P0;
    Actions out;
    ASSERT_TRUE(c.core(1).on_message(0, h, {}, out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MsgType::InvAck);
    EXPECT_EQ(c.core(1).counters().stale_invs, 1u);
}

Status inject(SimCluster& c, NodeId to, NodeId from, MsgType t, uint64_t pfn, size_t payload = 0,
              uint64_t flags = 0) {
    MsgHeader h;
    h.type = static_cast<uint16_t>(t);
    h.arg = pfn;
    h.request_id = flags;
    std::vector<uint8_t> p(payload);
    Actions out;
    return c.core(to).on_message(from, h, p, out);
}

TEST(MemProtocol, OutOfProtocolMessagesAreErrorsNamingThePeer) {
    SimCluster c(3, 3);
    auto st = inject(c, 1, 0, MsgType::Fetch, P0);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("node 0"), std::string::npos) << st.error().message;
    EXPECT_FALSE(inject(c, 1, 0, MsgType::FetchInv, P0).ok());          // not the owner
    EXPECT_FALSE(inject(c, 1, 0, MsgType::Grant, P0, kPageSize).ok());  // no request
    EXPECT_FALSE(inject(c, 1, 2, MsgType::Inv, P0).ok());               // not the home
    EXPECT_FALSE(inject(c, 0, 1, MsgType::GrantAck, P0).ok());          // not awaited
    EXPECT_FALSE(inject(c, 0, 1, MsgType::InvAck, P0).ok());
    EXPECT_FALSE(inject(c, 0, 1, MsgType::FetchReply, P0, kPageSize).ok());
    EXPECT_FALSE(inject(c, 0, 1, MsgType::ReadReq, P1).ok());      // not homed at 0
    EXPECT_FALSE(inject(c, 0, 1, MsgType::ReadReq, 99).ok());      // outside RAM
    EXPECT_FALSE(inject(c, 0, 7, MsgType::ReadReq, P0).ok());      // no such node
    EXPECT_FALSE(inject(c, 0, 1, MsgType::ReadReq, P0, 10).ok());  // payload
    EXPECT_FALSE(inject(c, 0, 1, MsgType::Ping, P0).ok());
    ASSERT_TRUE(inject(c, 0, 1, MsgType::WriteReq, P0).ok());
    EXPECT_FALSE(inject(c, 0, 1, MsgType::WriteReq, P0).ok());  // second outstanding
    // A Grant whose payload does not match its flags.
    ASSERT_TRUE(c.fault(2, P1, Access::Read).ok());
    EXPECT_FALSE(inject(c, 2, 1, MsgType::Grant, P1, 100).ok());
    EXPECT_FALSE(inject(c, 2, 1, MsgType::Grant, P1, kPageSize, grant_flags::kZero).ok());
    EXPECT_FALSE(inject(c, 2, 1, MsgType::Grant, P1, 0, grant_flags::kUpgrade).ok());
}

// Random interleavings of faults, CPU accesses and message deliveries: SimCluster checks
// the invariants after every step; at the end every request has completed.
TEST(MemProtocol, RandomInterleavingsKeepSingleWriterAndLastValue) {
    for (uint32_t seed = 0; seed < 300; ++seed) {
        std::mt19937 rng(seed);
        const uint32_t nodes = 2 + seed % 3;
        const uint64_t pages = nodes + (seed / 3) % 2;
        SimCluster c(nodes, pages);
        for (int step = 0; step < 400; ++step) {
            uint32_t what = rng() % 3;
            if (what == 0 && c.in_flight()) {
                ASSERT_TRUE(c.deliver_random(rng).ok()) << "seed " << seed;
                continue;
            }
            NodeId n = rng() % nodes;
            uint64_t p = rng() % pages;
            bool wr = rng() % 2;
            if (wr ? c.can_write(n, p) : c.can_read(n, p)) {
                if (wr)
                    c.write(n, p);
                else
                    c.read(n, p);
            } else {
                ASSERT_TRUE(c.fault(n, p, wr ? Access::Write : Access::Read).ok());
            }
            if (::testing::Test::HasFailure()) FAIL() << "seed " << seed << " step " << step;
        }
        c.drain(rng);
        for (NodeId n = 0; n < nodes; ++n)
            for (uint64_t p = 0; p < pages; ++p) {
                EXPECT_FALSE(c.core(n).pending(p)) << "seed " << seed;
                if (const DirEntry* e = c.core(n).dir(p)) {
                    EXPECT_FALSE(e->busy);
                }
            }
    }
}

}  // namespace
}  // namespace kv
