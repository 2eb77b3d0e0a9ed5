// The node link's messages (vmm/node/node_link.h): the payload records of the types it
// takes, and their length rules (NodeLink::messages()). The wire numbering of the types is
// interconnect/message.h; the interconnect itself knows none of these records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "interconnect/codec.h"

namespace kv {

// The node link's message types and their length rules: Shutdown, Ping/Pong, Ready,
// TscRate, HpetCounter, Ipi, ApicIdUpdate, IoReq, IoReply.
std::span<const MessageSpec> link_messages();

// Ipi: deliver an interrupt to a vCPU that the receiving node runs (or is receiving, or
// knows the node of: placement.h). Header `arg` is the sender's placement epoch for that
// vCPU. The destination is in the record because the sender has already expanded
// shorthands and logical destinations (architecture.md, vCPUs and interrupts).
struct IpiPayload {
    uint32_t dest_vcpu = 0;
    uint8_t vector = 0;
    uint8_t delivery_mode =
        0;                // LAPIC ICR encoding: 0 fixed, 1 lowest, 2 SMI, 4 NMI, 5 INIT, 6 SIPI
    uint8_t level = 0;    // 1 assert, 0 de-assert
    uint8_t trigger = 0;  // 0 edge, 1 level
};
static_assert(sizeof(IpiPayload) == 8);
static_assert(offsetof(IpiPayload, vector) == 4);
static_assert(offsetof(IpiPayload, delivery_mode) == 5);
static_assert(offsetof(IpiPayload, level) == 6);
static_assert(offsetof(IpiPayload, trigger) == 7);

// ApicIdUpdate: a LAPIC's addressing state, announced to every node. `arg` is the vCPU id.
struct ApicIdUpdatePayload {
    uint32_t apic_id = 0;
    uint32_t ldr = 0;    // logical destination register
    uint32_t dfr = 0;    // destination format register
    uint32_t flags = 0;  // bit 0: the LAPIC is software-enabled (SVR bit 8)
};
static_assert(sizeof(ApicIdUpdatePayload) == 16);
static_assert(offsetof(ApicIdUpdatePayload, ldr) == 4);
static_assert(offsetof(ApicIdUpdatePayload, dfr) == 8);

// IoReq (vCPU node -> I/O node) and IoReply (back, same request_id, `data` filled for a
// read). One record type for both so a reply can echo the request.
// Eoi: a vCPU EOIed a level-triggered vector (`address` is the vector); the I/O node's
// IOAPIC re-evaluates its pins. Sent as an IoReq; it has no reply.
enum class IoKind : uint8_t { Pio = 0, Mmio = 1, Eoi = 2 };
struct IoPayload {
    uint8_t kind = 0;      // IoKind
    uint8_t is_write = 0;  // 1 write, 0 read
    uint8_t size = 0;      // access width in bytes: 1, 2, 4 or 8
    uint8_t reserved0 = 0;
    uint32_t reserved1 = 0;
    uint64_t address = 0;  // port number (PIO) or guest-physical address (MMIO)
    uint64_t data = 0;     // written value, or the value read (IoReply)
};
static_assert(sizeof(IoPayload) == 24);
static_assert(offsetof(IoPayload, size) == 2);
static_assert(offsetof(IoPayload, address) == 8);
static_assert(offsetof(IoPayload, data) == 16);

}  // namespace kv
