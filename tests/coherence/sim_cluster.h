// An in-memory cluster of CoherenceCores for tests: per-pair FIFO channels, and a model of
// each node's mapping (none / read-only / read-write) and page contents on which the
// cores' actions are carried out exactly as the engine would. After every step it checks
// single-writer/multiple-readers on the mappings and that every mapped copy holds the
// last value written.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <map>
#include <random>
#include <vector>

#include "memory/coherence_protocol.h"
#include "memory/guest_memory.h"

namespace kv::testing {

enum class Map : uint8_t { None, RO, RW };

struct SimMsg {
    MsgHeader h;
    std::vector<uint8_t> payload;
};

class SimCluster {
  public:
    SimCluster(uint32_t nodes, uint64_t pages) : nodes_(nodes), pages_(pages) {
        auto homes = HomeMap::even(pages, nodes);
        EXPECT_TRUE(homes.ok());
        for (uint32_t n = 0; n < nodes; ++n) {
            cores_.emplace_back(n, homes.value());
            map_.emplace_back(pages, Map::None);
            mem_.emplace_back(pages, std::vector<uint8_t>(kPageSize, 0));
        }
        truth_.assign(pages, 0);
    }

    CoherenceCore& core(NodeId n) { return cores_[n]; }
    Map mapping(NodeId n, uint64_t pfn) const { return map_[n][pfn]; }
    uint64_t value(NodeId n, uint64_t pfn) const {
        uint64_t v;
        std::memcpy(&v, mem_[n][pfn].data(), sizeof v);
        return v;
    }
    Actions& last() { return last_; }

    // A thread of node n faults; returns the core's status.
    Status fault(NodeId n, uint64_t pfn, Access a) {
        last_.clear();
        Status st = cores_[n].on_fault(pfn, a, last_);
        if (st.ok()) run(n, last_);
        return st;
    }
    // Delivers the oldest message from `from` to `to`.
    Status deliver(NodeId from, NodeId to) {
        auto& q = chan_[{from, to}];
        EXPECT_FALSE(q.empty()) << "no message " << from << "->" << to;
        if (q.empty()) return Error{"empty channel"};
        SimMsg m = std::move(q.front());
        q.pop_front();
        last_.clear();
        Status st = cores_[to].on_message(from, m.h, m.payload, last_);
        if (st.ok()) run(to, last_);
        return st;
    }
    // Peeks the oldest message from `from` to `to` (nullptr if none).
    const SimMsg* peek(NodeId from, NodeId to) {
        auto& q = chan_[{from, to}];
        return q.empty() ? nullptr : &q.front();
    }
    size_t in_flight() const {
        size_t n = 0;
        for (const auto& [k, q] : chan_) n += q.size();
        return n;
    }
    // Delivers messages in a pseudo-random channel order until none is left.
    void drain(std::mt19937& rng) {
        while (in_flight()) ASSERT_TRUE(deliver_random(rng).ok());
    }
    Status deliver_random(std::mt19937& rng) {
        std::vector<std::pair<NodeId, NodeId>> ready;
        for (const auto& [k, q] : chan_)
            if (!q.empty()) ready.push_back(k);
        auto k = ready[rng() % ready.size()];
        return deliver(k.first, k.second);
    }

    bool can_read(NodeId n, uint64_t pfn) const { return map_[n][pfn] != Map::None; }
    bool can_write(NodeId n, uint64_t pfn) const { return map_[n][pfn] == Map::RW; }
    // A CPU access that the mapping allows: reads must see the last value written.
    void read(NodeId n, uint64_t pfn) {
        ASSERT_TRUE(can_read(n, pfn));
        EXPECT_EQ(value(n, pfn), truth_[pfn]) << "node " << n << " page " << pfn;
    }
    void write(NodeId n, uint64_t pfn) {
        ASSERT_TRUE(can_write(n, pfn));
        uint64_t v = ++truth_[pfn];
        std::memcpy(mem_[n][pfn].data(), &v, sizeof v);
        check();
    }

    void check() {
        for (uint64_t p = 0; p < pages_; ++p) {
            int rw = 0, ro = 0;
            for (uint32_t n = 0; n < nodes_; ++n) {
                rw += map_[n][p] == Map::RW;
                ro += map_[n][p] == Map::RO;
                if (map_[n][p] != Map::None) {
                    EXPECT_EQ(value(n, p), truth_[p]) << "stale copy: node " << n << " page " << p;
                }
            }
            EXPECT_LE(rw, 1) << "two writers of page " << p;
            EXPECT_TRUE(rw == 0 || ro == 0) << "writer and readers of page " << p;
        }
    }

  private:
    void run(NodeId n, const Actions& acts) {
        for (const auto& a : acts) {
            auto& m = map_[n][a.pfn];
            auto& mem = mem_[n][a.pfn];
            switch (a.op) {
                case Action::Op::Send: {
                    SimMsg msg;
                    msg.h.type = static_cast<uint16_t>(a.type);
                    msg.h.arg = a.pfn;
                    msg.h.src = n;
                    msg.h.request_id = a.flags;
                    if (a.payload == Action::Payload::LocalPage) {
                        EXPECT_NE(m, Map::RW) << "page read for sending while writable";
                        EXPECT_NE(m, Map::None) << "page read for sending while unmapped";
                        msg.payload = mem;
                    } else if (a.payload == Action::Payload::Data) {
                        msg.payload.assign(a.data.begin(), a.data.end());
                    }
                    msg.h.length = msg.payload.size();
                    ASSERT_NE(a.to, n);
                    chan_[{n, a.to}].push_back(std::move(msg));
                    break;
                }
                case Action::Op::Install:
                    EXPECT_EQ(m, Map::None) << "install over a present page (EEXIST)";
                    if (a.zero)
                        std::fill(mem.begin(), mem.end(), 0);
                    else
                        mem.assign(a.data.begin(), a.data.end());
                    m = a.state == LocalState::S ? Map::RO : Map::RW;
                    break;
                case Action::Op::Protect:
                    EXPECT_EQ(m, Map::RW);
                    m = Map::RO;
                    break;
                case Action::Op::Unprotect:
                    EXPECT_EQ(m, Map::RO);
                    m = Map::RW;
                    break;
                case Action::Op::Invalidate:
                    EXPECT_NE(m, Map::None);
                    m = Map::None;
                    std::fill(mem.begin(), mem.end(), 0xEE);  // garbage, must never be read
                    break;
                case Action::Op::Wake:
                    break;
            }
        }
        check();
    }

    uint32_t nodes_;
    uint64_t pages_;
    std::vector<CoherenceCore> cores_;
    std::vector<std::vector<Map>> map_;
    std::vector<std::vector<std::vector<uint8_t>>> mem_;
    std::vector<uint64_t> truth_;
    std::map<std::pair<NodeId, NodeId>, std::deque<SimMsg>> chan_;
    Actions last_;
};

}  // namespace kv::testing
