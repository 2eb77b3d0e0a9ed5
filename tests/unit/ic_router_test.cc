// MessageRouter: each message reaches the layer that registered its group or type, start
// and peer loss reach every layer once, conflicting registrations are refused, and a
// message of a type no layer takes is reported.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "interconnect/router.h"

namespace kv {
namespace {

struct Layer : MessageHandler {
    std::vector<uint16_t> types;
    int starts = 0;
    std::vector<NodeId> lost;
    void on_start(Transport&) override { ++starts; }
    void on_message(NodeId, const MsgHeader& h, std::span<const uint8_t>) override {
        types.push_back(h.type);
    }
    void on_peer_lost(NodeId peer, const Error&) override { lost.push_back(peer); }
};

struct NullTransport : Transport {
    NodeId self() const override { return 0; }
    Status send(NodeId, MsgHeader, std::span<const uint8_t>) override { return {}; }
    void shutdown() override {}
};

MsgHeader of(MsgType t) {
    MsgHeader h;
    h.type = uint16_t(t);
    return h;
}

TEST(IcRouter, RoutesByGroupAndSingleTypeRefinesAGroup) {
    Layer link, coherence, control;
    MessageRouter r;
    ASSERT_TRUE(r.add_group(0x01, link, "link").ok());
    ASSERT_TRUE(r.add_group(0x02, coherence, "coherence").ok());
    ASSERT_TRUE(r.add_type(MsgType::Ping, control, "control").ok());
    r.on_message(1, of(MsgType::Grant), {});
    r.on_message(1, of(MsgType::Ready), {});
    r.on_message(1, of(MsgType::Ping), {});
    r.on_message(1, of(MsgType::Inv), {});
    EXPECT_EQ(coherence.types,
              (std::vector<uint16_t>{uint16_t(MsgType::Grant), uint16_t(MsgType::Inv)}));
    EXPECT_EQ(link.types, std::vector<uint16_t>{uint16_t(MsgType::Ready)});
    EXPECT_EQ(control.types, std::vector<uint16_t>{uint16_t(MsgType::Ping)});
    EXPECT_EQ(r.layer_of(MsgType::Pong), "link");
    EXPECT_EQ(r.layer_of(MsgType::Ping), "control");
    EXPECT_EQ(r.layer_of(MsgType::IoReq), "");
}

TEST(IcRouter, StartAndPeerLossReachEveryLayerOnce) {
    Layer a, b;
    MessageRouter r;
    ASSERT_TRUE(r.add_group(0x01, a, "a").ok());
    ASSERT_TRUE(r.add_group(0x03, a, "a").ok());  // one layer, two groups: called once
    ASSERT_TRUE(r.add_group(0x02, b, "b").ok());
    NullTransport t;
    r.on_start(t);
    r.on_peer_lost(2, Error{"gone"});
    EXPECT_EQ(a.starts, 1);
    EXPECT_EQ(b.starts, 1);
    EXPECT_EQ(a.lost, std::vector<NodeId>{2});
    EXPECT_EQ(b.lost, std::vector<NodeId>{2});
}

TEST(IcRouter, RefusesASecondHandlerForAGroupOrType) {
    Layer a, b;
    MessageRouter r;
    ASSERT_TRUE(r.add_group(0x02, a, "coherence").ok());
    Status st = r.add_group(0x02, b, "intruder");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message,
              "message router: intruder registers 0x0200 (a group), which coherence has");
    ASSERT_TRUE(r.add_type(MsgType::Grant, b, "grants").ok());
    st = r.add_type(MsgType::Grant, a, "again");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("0x0208, which grants has"), std::string::npos);
}

TEST(IcRouter, ReportsAMessageNoLayerTakes) {
    std::vector<std::pair<NodeId, uint16_t>> unrouted;
    MessageRouter r([&](NodeId from, const MsgHeader& h) { unrouted.emplace_back(from, h.type); });
    Layer a;
    ASSERT_TRUE(r.add_group(0x02, a, "coherence").ok());
    r.on_message(3, of(MsgType::IoReq), {});
    ASSERT_EQ(unrouted.size(), 1u);
    EXPECT_EQ(unrouted[0].first, 3u);
    EXPECT_EQ(unrouted[0].second, uint16_t(MsgType::IoReq));
    EXPECT_TRUE(a.types.empty());
}

}  // namespace
}  // namespace kv
