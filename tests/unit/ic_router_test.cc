// MessageRouter: each message reaches the layer that declared its type, start and peer
// loss reach every layer once, a type two layers declare is refused, and the router's
// messages() (what the transport checks received headers against) is every layer's rules.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "interconnect/router.h"

namespace kv {
namespace {

using Kind = PayloadRule::Kind;

struct Layer : MessageHandler {
    explicit Layer(std::vector<MessageSpec> s) : specs(std::move(s)) {}
    std::vector<MessageSpec> specs;
    std::vector<uint16_t> types;
    int starts = 0;
    std::vector<NodeId> lost;
    void on_start(Transport&) override { ++starts; }
    void on_message(NodeId, const MsgHeader& h, std::span<const uint8_t>) override {
        types.push_back(h.type);
    }
    void on_peer_lost(NodeId peer, const Error&) override { lost.push_back(peer); }
    std::span<const MessageSpec> messages() const override { return specs; }
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

Layer link_layer() {
    return Layer({{MsgType::Ready, {Kind::Empty, 0}}, {MsgType::Pong, {Kind::UpTo, 100}}});
}
Layer coherence_layer() {
    return Layer({{MsgType::Grant, {Kind::EmptyOrPage, 4096}}, {MsgType::Inv, {Kind::Empty, 0}}});
}

TEST(IcRouter, RoutesEachDeclaredTypeToItsLayer) {
    Layer link = link_layer(), coherence = coherence_layer();
    Layer control({{MsgType::Ping, {Kind::UpTo, 100}}});
    MessageRouter r;
    ASSERT_TRUE(r.add(link, "link").ok());
    ASSERT_TRUE(r.add(coherence, "coherence").ok());
    ASSERT_TRUE(r.add(control, "control").ok());
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

// The router's messages() holds each layer's own rules, so a length that is right for one
// layer's type and wrong for another's is judged by the layer that receives it.
TEST(IcRouter, ItsMessagesAreEveryLayersRules) {
    Layer link = link_layer(), coherence = coherence_layer();
    MessageRouter r;
    ASSERT_TRUE(r.add(link, "link").ok());
    ASSERT_TRUE(r.add(coherence, "coherence").ok());
    EXPECT_EQ(r.messages().size(), 4u);
    EXPECT_TRUE(validate_payload(r.messages(), uint16_t(MsgType::Grant), 4096).ok());
    EXPECT_TRUE(validate_payload(r.messages(), uint16_t(MsgType::Pong), 100).ok());
    EXPECT_EQ(validate_payload(r.messages(), uint16_t(MsgType::Pong), 101).error().message,
              "Pong payload of 101 bytes (expected at most 100)");
    EXPECT_EQ(validate_payload(r.messages(), uint16_t(MsgType::Inv), 1).error().message,
              "Inv payload of 1 bytes (expected 0)");
    EXPECT_EQ(validate_payload(r.messages(), uint16_t(MsgType::IoReq), 24).error().message,
              "IoReq (0x0401) is not a message this node takes");
    EXPECT_EQ(validate_payload(r.messages(), 0x9999, 0).error().message,
              "message type 0x9999 unknown");
}

TEST(IcRouter, StartAndPeerLossReachEveryLayerOnce) {
    Layer a = link_layer(), b = coherence_layer();
    MessageRouter r;
    ASSERT_TRUE(r.add(a, "a").ok());
    ASSERT_TRUE(r.add(b, "b").ok());
    NullTransport t;
    r.on_start(t);
    r.on_peer_lost(2, Error{"gone"});
    EXPECT_EQ(a.starts, 1);
    EXPECT_EQ(b.starts, 1);
    EXPECT_EQ(a.lost, std::vector<NodeId>{2});
    EXPECT_EQ(b.lost, std::vector<NodeId>{2});
}

TEST(IcRouter, RefusesATypeAnotherLayerHas) {
    Layer a = coherence_layer();
    Layer b({{MsgType::GrantAck, {Kind::Empty, 0}}, {MsgType::Grant, {Kind::Empty, 0}}});
    MessageRouter r;
    ASSERT_TRUE(r.add(a, "coherence").ok());
    Status st = r.add(b, "intruder");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message,
              "message router: intruder registers Grant (0x0208), which coherence has");
    // Nothing of the refused layer was added.
    EXPECT_EQ(r.layer_of(MsgType::GrantAck), "");
    EXPECT_EQ(r.messages().size(), 2u);
}

}  // namespace
}  // namespace kv
