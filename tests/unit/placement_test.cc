// VcpuPlacement (vmm/node/placement.h): where an interrupt for a vCPU goes while it moves.
#include "vmm/node/placement.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>

namespace kv {
namespace {

struct Recorder : InterruptTarget {
    std::vector<uint8_t> vectors;
    void deliver(const InterruptMessage& m) override { vectors.push_back(m.vector); }
};

InterruptMessage vec(uint8_t v) {
    InterruptMessage m;
    m.vector = v;
    return m;
}

// N nodes' placement tables over a network of FIFO queues, pumped by hand: the test picks
// the order in which messages arrive.
struct Cluster {
    struct Sent {
        NodeId to;
        uint32_t vcpu;
        InterruptMessage m;
        uint64_t epoch;
    };
    std::vector<std::unique_ptr<VcpuPlacement>> nodes;
    std::vector<std::vector<Recorder>> copies;  // [node][vcpu]
    std::vector<std::deque<Sent>> links;        // [from * n + to]
    uint32_t n;

    Cluster(uint32_t num_nodes, std::vector<NodeId> initial) : n(num_nodes) {
        links.resize(n * n);
        copies.resize(n);
        for (NodeId k = 0; k < n; ++k) {
            copies[k].resize(initial.size());
            nodes.push_back(std::make_unique<VcpuPlacement>(
                k, initial,
                [this, k](NodeId to, uint32_t v, const InterruptMessage& m, uint64_t e) {
                    links[k * n + to].push_back({to, v, m, e});
                }));
            for (uint32_t v = 0; v < initial.size(); ++v) nodes[k]->attach(v, &copies[k][v]);
        }
    }
    // Delivers the oldest message on link from -> to; false if there is none.
    bool pump(NodeId from, NodeId to) {
        auto& q = links[from * n + to];
        if (q.empty()) return false;
        Sent s = q.front();
        q.pop_front();
        nodes[to]->deliver(s.vcpu, s.m, s.epoch);
        return true;
    }
    void pump_all() {
        for (bool any = true; any;) {
            any = false;
            for (NodeId a = 0; a < n; ++a)
                for (NodeId b = 0; b < n; ++b) any |= pump(a, b);
        }
    }
};

TEST(VcpuPlacement, DeliversHereAndForwardsWithItsEpochElsewhere) {
    Cluster c(2, {0, 1});
    c.nodes[0]->deliver(0, vec(0x30), std::nullopt);  // vCPU 0 runs on node 0
    EXPECT_EQ(c.copies[0][0].vectors, (std::vector<uint8_t>{0x30}));
    c.nodes[0]->deliver(1, vec(0x31), std::nullopt);  // vCPU 1 runs on node 1
    ASSERT_EQ(c.links[0 * 2 + 1].size(), 1u);
    EXPECT_EQ(c.links[0 * 2 + 1].front().epoch, 0u);
    c.pump_all();
    EXPECT_EQ(c.copies[1][1].vectors, (std::vector<uint8_t>{0x31}));
    EXPECT_TRUE(c.copies[0][1].vectors.empty());
    EXPECT_EQ(c.nodes[0]->counters().forwarded, 1u);
    EXPECT_EQ(c.nodes[1]->counters().delivered, 1u);
}

TEST(VcpuPlacement, InterruptsDuringTheSaveFollowTheVcpuInOrder) {
    Cluster c(2, {0, 0});
    VcpuPlacement& src = *c.nodes[0];
    src.hold(1);
    src.deliver(1, vec(1), std::nullopt);  // while the state is saved: held
    src.deliver(1, vec(2), 0);
    EXPECT_TRUE(c.copies[0][1].vectors.empty()) << "nothing may reach the LAPIC being saved";
    src.leave(1, 1, 1);  // saved: goes to node 1 as migration 1
    src.deliver(1, vec(3), std::nullopt);
    // Node 1 gets them before it has the state: it holds them (epoch 1 > its 0).
    c.pump_all();
    EXPECT_TRUE(c.copies[1][1].vectors.empty());
    EXPECT_EQ(c.nodes[1]->counters().held, 3u);
    c.nodes[1]->arrive(1, 1);
    EXPECT_EQ(c.copies[1][1].vectors, (std::vector<uint8_t>{1, 2, 3}));
    c.nodes[1]->deliver(1, vec(4), std::nullopt);
    EXPECT_EQ(c.copies[1][1].vectors, (std::vector<uint8_t>{1, 2, 3, 4}));
    EXPECT_TRUE(c.copies[0][1].vectors.empty());
}

TEST(VcpuPlacement, AFailedSaveDeliversTheHeldInterruptsWhereItStays) {
    Cluster c(2, {0, 1});
    c.nodes[0]->hold(0);
    c.nodes[0]->deliver(0, vec(7), std::nullopt);
    c.nodes[0]->unhold(0);
    EXPECT_EQ(c.copies[0][0].vectors, (std::vector<uint8_t>{7}));
    EXPECT_TRUE(c.links[0 * 2 + 1].empty());
}

TEST(VcpuPlacement, StaleSendersReachTheVcpuThroughItsPath) {
    // vCPU 0 starts on node 0 and moves 0 -> 1 -> 2; node 2 never hears of the first
    // move until later, and sends with what it knows.
    Cluster c(3, {0, 1, 2});
    c.nodes[0]->hold(0);
    c.nodes[0]->leave(0, 1, 1);
    c.nodes[1]->arrive(0, 1);
    c.nodes[2]->deliver(0, vec(10), std::nullopt);  // node 2 thinks node 0, epoch 0
    c.pump(2, 0);                                   // node 0 forwards to node 1 (epoch 1)
    c.pump(0, 1);
    EXPECT_EQ(c.copies[1][0].vectors, (std::vector<uint8_t>{10}));
    // Second move, 1 -> 2; node 0 has not heard of it.
    c.nodes[1]->hold(0);
    c.nodes[1]->leave(0, 2, 2);
    c.nodes[2]->deliver(0, vec(11), std::nullopt);  // still thinks node 0
    c.pump(2, 0);                                   // 0 -> 1 (epoch 1)
    c.pump(0, 1);                                   // 1 -> 2 (epoch 2): held, not arrived
    c.pump(1, 2);
    EXPECT_TRUE(c.copies[2][0].vectors.empty());
    c.nodes[2]->arrive(0, 2);
    EXPECT_EQ(c.copies[2][0].vectors, (std::vector<uint8_t>{11}));
    // An old update does not undo a newer one.
    c.nodes[0]->moved(0, 2, 2);
    c.nodes[0]->moved(0, 1, 1);
    EXPECT_EQ(c.nodes[0]->node_of(0), 2u);
    EXPECT_EQ(c.nodes[0]->epoch_of(0), 2u);
    c.pump_all();
    // Each interrupt exactly once, where the vCPU was when it came.
    EXPECT_TRUE(c.copies[0][0].vectors.empty());
    EXPECT_EQ(c.copies[1][0].vectors, (std::vector<uint8_t>{10}));
    EXPECT_EQ(c.copies[2][0].vectors, (std::vector<uint8_t>{11}));
}

TEST(VcpuPlacement, AMigrationUndoneSendsTheInterruptsBack) {
    // 0 -> 1 fails at node 1 (its restore): node 0 takes the vCPU back as migration 2, and
    // what node 1 held for migration 1 comes back.
    Cluster c(2, {0, 1});
    c.nodes[0]->hold(0);
    c.nodes[0]->leave(0, 1, 1);
    c.nodes[0]->deliver(0, vec(5), std::nullopt);
    c.pump_all();  // held at node 1
    c.nodes[0]->arrive(0, 2);
    c.nodes[1]->moved(0, 0, 2);  // sends what it held to node 0
    c.pump_all();
    EXPECT_EQ(c.copies[0][0].vectors, (std::vector<uint8_t>{5}));
    EXPECT_TRUE(c.copies[1][0].vectors.empty());
}

TEST(VcpuPlacement, TheRoutersTargetGoesThroughTheTable) {
    Cluster c(2, {1, 1});
    c.nodes[0]->router_target(0)->deliver(vec(9));
    c.pump_all();
    EXPECT_EQ(c.copies[1][0].vectors, (std::vector<uint8_t>{9}));
}

}  // namespace
}  // namespace kv
