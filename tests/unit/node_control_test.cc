// NodeControl, the cluster control layer, over loopback endpoints: answers from every node
// in node order, refusals, time-outs and lost nodes as error codes, malformed replies and
// requests, and requests served off the receive thread (a request that blocks does not
// stop the node from receiving).
#include "vmm/node/node_control.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "interconnect/loopback_transport.h"
#include "interconnect/router.h"

namespace kv {
namespace {

using namespace std::chrono_literals;
using control::Json;

// A raw endpoint: records what it gets, and answers a CtlReq with `reply` if set.
struct Raw : MessageHandler {
    std::span<const MessageSpec> messages() const override { return control_messages(); }
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<MsgHeader, std::string>> got;
    std::string reply;
    Transport* t = nullptr;
    void on_start(Transport& tr) override { t = &tr; }
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> p) override {
        std::string answer;
        {
            std::lock_guard l(mu);
            answer = reply;
        }
        if (h.type == uint16_t(MsgType::CtlReq) && !answer.empty()) {
            MsgHeader r;
            r.type = uint16_t(MsgType::CtlReply);
            r.request_id = h.request_id;
            (void)t->send(from, r,
                          {reinterpret_cast<const uint8_t*>(answer.data()), answer.size()});
        }
        std::lock_guard l(mu);
        got.emplace_back(h, std::string(p.begin(), p.end()));
        cv.notify_all();
    }
    void on_peer_lost(NodeId, const Error&) override {}
    void set_reply(std::string r) {
        std::lock_guard l(mu);
        reply = std::move(r);
    }
    bool wait_for(size_t n) {
        std::unique_lock l(mu);
        return cv.wait_for(l, 10s, [&] { return got.size() >= n; });
    }
};

Json report_of(NodeId k) {
    return {{"node", k}, {"state", "running"}};
}

TEST(NodeControl, AskAllReturnsEveryNodesAnswerInOrder) {
    auto hub = LoopbackHub::create();
    NodeControl c0(0, 3, nullptr);
    NodeControl c1(1, 3, [](ControlOp op, const Json&) -> Result<Json> {
        if (op == ControlOp::Query) return report_of(1);
        return Error{"not now"};
    });
    NodeControl c2(2, 3, [](ControlOp op, const Json& args) -> Result<Json> {
        if (op == ControlOp::Resume) return Json{{"shift", args.at("tsc_shift")}};
        return report_of(2);
    });
    auto t0 = hub->attach(0, &c0), t1 = hub->attach(1, &c1), t2 = hub->attach(2, &c2);
    ASSERT_TRUE(t0.ok() && t1.ok() && t2.ok());

    auto all = c0.ask_all(ControlOp::Query, Json::object(), 5s);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].node, 1u);
    ASSERT_TRUE(all[0].reply.ok()) << all[0].reply.error().message;
    EXPECT_EQ(*all[0].reply, report_of(1));
    EXPECT_EQ(all[1].node, 2u);
    ASSERT_TRUE(all[1].reply.ok());
    EXPECT_EQ(*all[1].reply, report_of(2));

    // Arguments arrive as sent; a refusal is Refused with the node's text.
    auto r2 = c0.ask(2, ControlOp::Resume, {{"tsc_shift", 12345}}, 5s);
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ((*r2)["shift"], 12345);
    auto r1 = c0.ask(1, ControlOp::Pause, Json::object(), 5s);
    ASSERT_FALSE(r1.ok());
    EXPECT_EQ(r1.error().code, ErrorCode::Refused);
    EXPECT_EQ(r1.error().message, "node 1: not now");
    for (auto* t : {&*t0, &*t1, &*t2}) (*t)->shutdown();
}

TEST(NodeControl, ARequestThatBlocksDoesNotBlockTheReceiveThread) {
    // Node 1's pause waits for a message that node 1's receive thread must deliver (as a
    // vCPU that is pausing may wait for a page). Served on the receive thread, this would
    // never end.
    auto hub = LoopbackHub::create();
    std::mutex mu;
    std::condition_variable cv;
    bool serving = false, page_came = false;
    struct PageLayer : MessageHandler {
        std::function<void()> on_page;
        void on_message(NodeId, const MsgHeader&, std::span<const uint8_t>) override { on_page(); }
        void on_peer_lost(NodeId, const Error&) override {}
        std::span<const MessageSpec> messages() const override { return coherence; }
        MessageSpec coherence[1] = {{MsgType::Grant, {PayloadRule::Kind::EmptyOrPage, 4096}}};
    } pages;
    pages.on_page = [&] {
        std::lock_guard l(mu);
        page_came = true;
        cv.notify_all();
    };
    NodeControl c1(1, 2, [&](ControlOp, const Json&) -> Result<Json> {
        std::unique_lock l(mu);
        serving = true;
        cv.notify_all();
        if (!cv.wait_for(l, 10s, [&] { return page_came; }))
            return Error{"the page never came: the request blocked the receive thread"};
        return Json::object();
    });
    MessageRouter r1;
    ASSERT_TRUE(r1.add(pages, "coherence").ok());
    ASSERT_TRUE(r1.add(c1, "cluster control").ok());
    NodeControl c0(0, 2, nullptr);
    PageLayer pages0;  // node 0 speaks the same layers
    pages0.on_page = [] {};
    MessageRouter r0;
    ASSERT_TRUE(r0.add(pages0, "coherence").ok());
    ASSERT_TRUE(r0.add(c0, "cluster control").ok());
    auto t0 = hub->attach(0, &r0);
    auto t1 = hub->attach(1, &r1);
    ASSERT_TRUE(t0.ok() && t1.ok());
    Result<Json> answer = Error{"not asked"};
    std::thread asker([&] { answer = c0.ask(1, ControlOp::Pause, Json::object(), 20s); });
    {
        // The page goes only once node 1 is serving the request.
        std::unique_lock l(mu);
        ASSERT_TRUE(cv.wait_for(l, 10s, [&] { return serving; }));
    }
    MsgHeader h;
    h.type = uint16_t(MsgType::Grant);
    ASSERT_TRUE((*t0)->send(1, h).ok());
    asker.join();
    EXPECT_TRUE(answer.ok()) << answer.error().message;
    (*t0)->shutdown();
    (*t1)->shutdown();
}

TEST(NodeControl, ANodeThatDoesNotAnswerTimesOut) {
    auto hub = LoopbackHub::create();
    Raw silent;  // receives the request and never answers
    NodeControl c0(0, 2, nullptr);
    auto t0 = hub->attach(0, &c0), t1 = hub->attach(1, &silent);
    ASSERT_TRUE(t0.ok() && t1.ok());
    auto r = c0.ask(1, ControlOp::Query, Json::object(), 200ms);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::Timeout);
    EXPECT_EQ(r.error().message, "node 1 did not answer");
    ASSERT_TRUE(silent.wait_for(1));
    EXPECT_EQ(silent.got[0].first.type, uint16_t(MsgType::CtlReq));
    EXPECT_EQ(silent.got[0].first.arg, uint64_t(ControlOp::Query));
    EXPECT_EQ(Json::from_cbor(silent.got[0].second, true, false), Json::object());
    (*t0)->shutdown();
    (*t1)->shutdown();
}

TEST(NodeControl, ALostNodeFailsItsWaiterAndLaterRequestsAtOnce) {
    auto hub = LoopbackHub::create();
    Raw silent;
    std::vector<NodeId> lost;
    std::mutex mu;
    std::condition_variable lost_cv;
    NodeControl c0(0, 2, nullptr, [&](NodeId peer, const Error&) {
        std::lock_guard l(mu);
        lost.push_back(peer);
        lost_cv.notify_all();
    });
    auto t0 = hub->attach(0, &c0), t1 = hub->attach(1, &silent);
    ASSERT_TRUE(t0.ok() && t1.ok());
    Result<Json> r = Error{"not asked"};
    std::thread asker([&] { r = c0.ask(1, ControlOp::Pause, Json::object(), 10s); });
    ASSERT_TRUE(silent.wait_for(1));  // the request is out: now the link breaks
    ASSERT_TRUE(hub->inject_peer_loss(0, 1, "cable cut").ok());
    asker.join();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::PeerLost);
    EXPECT_EQ(r.error().message, "node 1 lost: cable cut");
    EXPECT_TRUE(c0.lost(1));
    auto again = c0.ask(1, ControlOp::Query, Json::object(), 10s);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, ErrorCode::PeerLost);
    auto all = c0.ask_all(ControlOp::Query, Json::object(), 10s);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].reply.error().code, ErrorCode::PeerLost);
    {
        // The callback runs on the receive thread, after the waiters were failed.
        std::unique_lock l(mu);
        ASSERT_TRUE(lost_cv.wait_for(l, 10s, [&] { return !lost.empty(); }));
        EXPECT_EQ(lost, std::vector<NodeId>{1});
    }
    (*t0)->shutdown();
    (*t1)->shutdown();
}

// A JSON text as the CBOR bytes the layer sends.
std::string cbor(const std::string& json_text) {
    auto b = Json::to_cbor(Json::parse(json_text));
    return std::string(b.begin(), b.end());
}

Json uncbor(const std::string& bytes) {
    return Json::from_cbor(bytes, true, false);
}

TEST(NodeControl, AMalformedReplyFailsItsRequestOnly) {
    for (const std::string& bad :
         {std::string("\x7f\x61"), std::string("not cbor"), cbor("[1]"), cbor("{}"),
          cbor(R"({"return": 1, "error": "x"})"), cbor(R"({"error": 5})")}) {
        auto hub = LoopbackHub::create();
        Raw liar;
        liar.reply = bad;
        NodeControl c0(0, 2, nullptr);
        auto t0 = hub->attach(0, &c0), t1 = hub->attach(1, &liar);
        ASSERT_TRUE(t0.ok() && t1.ok());
        auto r = c0.ask(1, ControlOp::Query, Json::object(), 5s);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error().message, "node 1 sent a malformed CtlReply") << bad;
        EXPECT_EQ(r.error().code, ErrorCode::Generic);
        // The connection goes on: a good answer is taken.
        liar.set_reply(cbor(R"({"return": {"ok": true}})"));
        auto good = c0.ask(1, ControlOp::Query, Json::object(), 5s);
        ASSERT_TRUE(good.ok()) << good.error().message;
        EXPECT_EQ((*good)["ok"], true);
        (*t0)->shutdown();
        (*t1)->shutdown();
    }
}

TEST(NodeControl, ABadRequestGetsAnErrorAnswer) {
    auto hub = LoopbackHub::create();
    Raw asker;
    std::atomic<int> served{0};
    NodeControl c1(1, 2, [&](ControlOp, const Json&) -> Result<Json> {
        ++served;
        return Json::object();
    });
    auto t0 = hub->attach(0, &asker), t1 = hub->attach(1, &c1);
    ASSERT_TRUE(t0.ok() && t1.ok());
    auto send = [&](uint64_t op, const std::string& args) {
        MsgHeader h;
        h.type = uint16_t(MsgType::CtlReq);
        h.arg = op;
        h.request_id = 7;
        ASSERT_TRUE(
            (*t0)->send(1, h, {reinterpret_cast<const uint8_t*>(args.data()), args.size()}).ok());
    };
    send(99, cbor("{}"));
    send(uint64_t(ControlOp::Query), "\x5b not a map");
    send(uint64_t(ControlOp::Query), cbor("[1, 2]"));
    send(uint64_t(ControlOp::Query), "");
    ASSERT_TRUE(asker.wait_for(4));
    EXPECT_EQ(uncbor(asker.got[0].second),
              Json::parse(R"({"error":"unknown control operation 99"})"));
    EXPECT_EQ(uncbor(asker.got[1].second),
              Json::parse(R"({"error":"the arguments are not a CBOR map"})"));
    EXPECT_EQ(uncbor(asker.got[2].second),
              Json::parse(R"({"error":"the arguments are not a CBOR map"})"));
    EXPECT_EQ(uncbor(asker.got[3].second), Json::parse(R"({"return":{}})"));
    EXPECT_EQ(asker.got[3].first.request_id, 7u);
    EXPECT_EQ(served, 1);
    (*t0)->shutdown();
    (*t1)->shutdown();
}

}  // namespace
}  // namespace kv
