// Wire format of every message between node processes.
//
// Each message is a fixed 32-byte header followed by `length` payload bytes. All fields are
// little-endian on the wire (x86 only, so the in-memory layout is the wire layout; the
// static_asserts pin it). The header is validated on receipt (magic, version, known type,
// length within the type's bounds); anything else drops the connection (docs/interconnect.md).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kv {

using NodeId = uint32_t;

constexpr uint32_t kMsgMagic = 0x4B56524Bu;  // "KRVK" little-endian
constexpr uint16_t kMsgVersion = 1;
constexpr uint32_t kMaxPayload = 64 * 1024;  // a page plus room; anything larger is refused

// Message types. Groups: 0x01xx node link, 0x02xx coherence, 0x03xx vCPU/IPI, 0x04xx I/O,
// 0x05xx cluster control. The layer that takes a group registers it with the node's
// MessageRouter (router.h).
enum class MsgType : uint16_t {
    // control
    Hello = 0x0101,  // handshake: node id, cluster config digest, auth
    HelloAck = 0x0102,
    Shutdown = 0x0103,  // the guest stopped; payload: exit code and reason
    Ping = 0x0104,      // request/response round trip (benchmarks, liveness)
    Pong = 0x0105,
    Ready = 0x0106,        // node -> I/O node: this node's vCPUs exist and wait for SIPI
    TscRate = 0x0107,      // I/O node -> node, before the BSP starts: arg = the guest TSC's
                           // rate in kHz (as it runs, not as told to a dilated guest)
    HpetCounter = 0x0108,  // I/O node -> node: the HPET main counter changed; arg = 1 if
                           // it runs, payload: its value (u64; running: minus the ticks of
                           // guest time so far)
    Heartbeat = 0x0109,    // transport -> transport on an idle connection; no payload, never
                           // handed to a handler (tcp_transport.h)
    // coherence (memory/): `arg` is the guest page frame number
    ReadReq = 0x0201,     // requester -> home
    WriteReq = 0x0202,    // requester -> home (also upgrade S->M)
    Fetch = 0x0203,       // home -> owner: downgrade to S and send the page
    FetchInv = 0x0204,    // home -> owner: send the page and invalidate
    Inv = 0x0205,         // home -> sharer: invalidate
    InvAck = 0x0206,      // sharer -> home
    FetchReply = 0x0207,  // owner -> home, payload: page (or empty if unchanged)
    Grant = 0x0208,       // home -> requester, payload: page, or empty for zero/upgrade grants
    GrantAck = 0x0209,    // requester -> home: installed, the home may serve the next request
    // vCPUs and interrupts (vcpu/)
    Ipi = 0x0301,           // deliver an interrupt to a local vCPU: payload ipi record
    ApicIdUpdate = 0x0302,  // a LAPIC's addressing state changed (APIC ID, LDR, DFR)
    // forwarded I/O (vmm/)
    IoReq = 0x0401,  // PIO/MMIO access forwarded to the I/O node
    IoReply = 0x0402,
    // cluster control (vmm/node/node_control.h): the I/O node's control plane asks a node
    CtlReq = 0x0501,    // I/O node -> node: `arg` = the operation; payload: arguments (CBOR)
    CtlReply = 0x0502,  // node -> I/O node, same request_id: payload: the answer (CBOR)
};

struct MsgHeader {
    uint32_t magic = kMsgMagic;
    uint16_t version = kMsgVersion;
    uint16_t type = 0;        // MsgType
    uint32_t length = 0;      // payload bytes following the header
    uint32_t src = 0;         // sending node
    uint64_t request_id = 0;  // matches replies to requests
    uint64_t arg = 0;         // page frame number or vCPU id, by type
};
static_assert(sizeof(MsgHeader) == 32);
static_assert(offsetof(MsgHeader, type) == 6);
static_assert(offsetof(MsgHeader, length) == 8);
static_assert(offsetof(MsgHeader, request_id) == 16);
static_assert(offsetof(MsgHeader, arg) == 24);

}  // namespace kv
