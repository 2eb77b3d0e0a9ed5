// libFuzzer target: messages from fuzzed peers into a NodeLink (vmm/node/node_link.h), of
// every type it takes and of some it does not, interleaved with its own sends. The
// transport is a fake that does what the TCP transport does around the handler: a message
// whose length breaks the link's rules (messages()) is not delivered but drops its peer
// (on_peer_lost), and nothing more comes from a dropped peer. A crash, sanitizer report,
// hang or broken invariant (abort) fails the fuzz ctest (tests/fuzz/CMakeLists.txt).
//
// What must hold: a malformed message stops the guest through Host::stop with a reason
// (never UB, never a call into the machine with an out-of-range value); whatever the
// link hands the machine is well-formed (a known delivery mode, an I/O size of 1/2/4/8, a
// port below 0x10000, an APIC ID below 0x100); whatever it sends passes the receiver's
// rules (prepare_outgoing against link_messages()) and goes to another node of the guest.
//
// Input layout: byte 0 picks this node (bit 0: node 0, the I/O node, or node 1) of 3;
// then records until the input ends:
//   u8 op: bit 7 clear, a message from peer (op % 3); bit 7 set, a local send (op & 7)
//   u8 type: an index into kTypes
//   u64 arg, u64 request_id (little-endian)
//   u16 length, then that many payload bytes (fewer if the input ends first)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/log.h"
#include "interconnect/codec.h"
#include "vmm/node/node_link.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr uint32_t kNodes = 3;

// Every type the link takes, then some it does not (the fake transport drops their peer).
constexpr kv::MsgType kTypes[] = {
    kv::MsgType::Shutdown, kv::MsgType::Ping,        kv::MsgType::Pong,  kv::MsgType::Ready,
    kv::MsgType::TscRate,  kv::MsgType::HpetCounter, kv::MsgType::Ipi,   kv::MsgType::ApicIdUpdate,
    kv::MsgType::IoReq,    kv::MsgType::IoReply,     kv::MsgType::Hello, kv::MsgType::Heartbeat,
    kv::MsgType::Grant,    kv::MsgType::CtlReq,
};

// The peers' side of a TCP transport: every send is checked as the sender's transport and
// the receiver's parser would check it.
class FakeTransport : public kv::Transport {
  public:
    explicit FakeTransport(kv::NodeId self) : self_(self) {}
    kv::NodeId self() const override { return self_; }
    kv::Status send(kv::NodeId to, kv::MsgHeader h, std::span<const uint8_t> payload) override {
        check(to != self_ && to < kNodes);
        check(kv::prepare_outgoing(self_, to, h, payload.size(), kv::link_messages()).ok());
        volatile uint8_t sink = 0;
        for (uint8_t b : payload) sink = sink ^ b;
        (void)sink;
        if (lost[to]) return kv::Error{"send to node " + std::to_string(to) + ": connection lost"};
        ++sent;
        return {};
    }
    void shutdown() override {}

    bool lost[kNodes] = {};
    uint64_t sent = 0;

  private:
    kv::NodeId self_;
};

bool valid_mode(kv::DeliveryMode m) {
    using kv::DeliveryMode;
    return m == DeliveryMode::Fixed || m == DeliveryMode::LowestPriority ||
           m == DeliveryMode::Nmi || m == DeliveryMode::Init || m == DeliveryMode::StartUp ||
           m == DeliveryMode::ExtInt;
}

struct Reader {
    const uint8_t* p;
    size_t left;
    template <class T>
    T take() {
        T v{};
        size_t n = std::min(sizeof v, left);
        std::memcpy(&v, p, n);
        p += n;
        left -= n;
        return v;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    static const bool quiet = [] {
        set_log_level(LogLevel::Error);
        return true;
    }();
    (void)quiet;
    if (size == 0) return 0;
    const NodeId self = data[0] & 1;
    uint64_t stops = 0;
    NodeLink::Host host;
    host.deliver_ipi = [](uint32_t, const InterruptMessage& m, uint64_t) {
        check(valid_mode(m.mode));
    };
    host.apply_addressing = [](uint32_t, const Lapic::Addressing&) {};
    host.serve_io = [self](IoKind kind, uint64_t address, std::span<uint8_t> bytes, bool) {
        check(self == kIoNode);
        check(kind == IoKind::Pio || kind == IoKind::Mmio);
        check(bytes.size() == 1 || bytes.size() == 2 || bytes.size() == 4 || bytes.size() == 8);
        check(kind != IoKind::Pio || address <= 0xFFFF);
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(b + 1);
        return (address & 1) == 0;
    };
    host.serve_eoi = [self](uint8_t) { check(self == kIoNode); };
    host.stop = [&stops](StopReason r, std::string why) {
        check(static_cast<int>(r) >= 0 && r <= StopReason::UserQuit);
        check(!why.empty());
        ++stops;
    };
    NodeLink link(self, kNodes, host);
    FakeTransport transport(self);
    link.on_start(transport);

    Reader in{data + 1, size - 1};
    while (in.left > 0) {
        const auto op = in.take<uint8_t>();
        const auto type = kTypes[in.take<uint8_t>() % std::size(kTypes)];
        MsgHeader h;
        h.type = static_cast<uint16_t>(type);
        h.arg = in.take<uint64_t>();
        h.request_id = in.take<uint64_t>();
        const size_t length = std::min<size_t>(in.take<uint16_t>(), in.left);
        // A copy the size of the payload, so ASan sees a read past it.
        const std::vector<uint8_t> payload(in.p, in.p + length);
        in.p += length;
        in.left -= length;

        if (op & 0x80) {
            // This node's own sends, between received messages.
            const NodeId to = (self + 1 + (h.arg & 1)) % kNodes;
            InterruptMessage m;
            m.vector = static_cast<uint8_t>(h.arg >> 8);
            m.mode = (h.arg & 2) ? DeliveryMode::Init : DeliveryMode::Fixed;
            // Each as the machine calls it: the announcements on node 0, the EOI and Ready
            // on the others (they go to node 0).
            switch (op & 7) {
                case 0:
                    link.send_ipi(to, static_cast<uint32_t>(h.request_id), m, h.arg);
                    break;
                case 1:
                    link.announce_addressing(static_cast<uint32_t>(h.request_id),
                                             Lapic::Addressing{static_cast<uint8_t>(h.arg),
                                                               static_cast<uint8_t>(h.arg >> 8),
                                                               (h.arg & 0x10000) != 0, true});
                    break;
                case 2:
                    if (self == kIoNode)
                        link.announce_hpet(Hpet::Counter{(h.arg & 1) != 0, h.request_id});
                    else
                        link.forward_eoi(static_cast<uint8_t>(h.arg));
                    break;
                case 3:
                    if (self == kIoNode)
                        (void)link.announce_tsc_khz(h.arg % 100'000'000 + 1);
                    else
                        (void)link.send_ready();
                    break;
                default:
                    link.broadcast_stop(StopReason::PowerOff,
                                        std::string(payload.begin(), payload.end()));
                    break;
            }
            continue;
        }

        const NodeId from = (self + 1 + op % (kNodes - 1)) % kNodes;
        if (transport.lost[from]) continue;  // a dropped peer sends nothing more
        h.length = static_cast<uint32_t>(length);
        h.src = from;
        // The transport's check of the header against the receiving handler's rules.
        if (Status v = validate_payload(link.messages(), h.type, h.length); !v) {
            transport.lost[from] = true;
            const uint64_t before = stops;
            link.on_peer_lost(from, v.error());
            check(stops == before + 1);  // a lost peer stops the guest
            continue;
        }
        link.on_message(from, h, payload);
    }
    // A link that has closed fails every forwarded access at once (no waiting).
    link.close();
    uint8_t b = 0;
    check(!link.forward_io(IoKind::Pio, 0x71, std::span(&b, 1), false));
    return 0;
}
