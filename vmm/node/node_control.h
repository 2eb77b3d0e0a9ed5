// The cluster control layer: how the I/O node's control plane (vmm/control/) reaches the
// other nodes. The I/O node asks (CtlReq: an operation and its arguments); each node
// answers (CtlReply, same request id: {"return": VALUE} or {"error": TEXT}) from its own
// worker thread, because what it does may block: pausing waits for its vCPUs to reach an
// exit boundary, and a vCPU may itself be waiting for a page or a forwarded access that
// only the transport's receive thread delivers. So the receive thread only queues a
// request or hands a reply to its waiter; it never blocks on a peer or a vCPU.
//
// Both payloads are one JSON value encoded as CBOR (RFC 8949, nlohmann's to_cbor), so
// that binary values (a vCPU's state in a migration) travel as bytes, not as text.
//
// Errors carry a code (base/result.h): Timeout when a node did not answer in time,
// PeerLost when its connection is gone, Refused when it answered with an error. A reply
// that is not the value described above is reported, fails its request and is otherwise
// ignored: the control plane never stops the guest.
//
// Threads: ask()/ask_all() from any thread (the control server's); one request at a time
// per caller, several callers at once are fine. close() fails every waiter and stops the
// worker; the destructor calls it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/result.h"
#include "interconnect/transport.h"
#include "vmm/control/protocol.h"

namespace kv {

enum class ControlOp : uint64_t {
    Pause = 1,   // park every local vCPU at an exit boundary; freeze the guest TSC here
    Resume = 2,  // {"tsc_shift": CYCLES}: take CYCLES out of the guest TSC, run the vCPUs
    Query = 3,   // this node's report (Machine::node_report)
    // vCPU migration (docs/migration.md), one at a time, coordinated by the I/O node:
    MigrateOut = 4,  // {"vcpu", "to", "epoch", "run"}: pause it here, save it: {"state": BYTES}
    MigrateIn = 5,   // {"vcpu", "epoch", "state": BYTES (absent: take back), "run": BOOL}
    Placement = 6,   // {"vcpu", "node", "epoch"}: the vCPU is on that node now
    Run = 7,         // {"vcpu"}: the vCPU restored here runs (unless the guest is paused)
    // Snapshots (docs/snapshots.md), from the I/O node while the guest is paused or, for a
    // restore, before it first runs:
    SaveVcpu = 8,        // {"vcpu"}: the state of a vCPU placed here: {"state": BYTES}
    RestoreVcpu = 9,     // {"vcpu", "state": BYTES}: restored here, left paused until Resume
    SaveMemory = 10,     // {"from": GPA}: non-zero pages of this node's home range from GPA:
                         // {"gpas": [...], "data": BYTES, "next": GPA or null (the end)};
                         // {"gpas": [...]}: those pages, zero or not (an incremental save)
    RestoreMemory = 11,  // {"gpas": [...], "data": BYTES}: pages of this node's home range
    // {"reset": true}: this node's KVM dirty log starts again (after a snapshot);
    // {"from": GPA}: the pages its vCPUs wrote since: {"gpas": [...], "next": GPA or null}
    DirtyLog = 12,
    // {"dir", "token", "name"}: this node encodes its home range's non-zero pages and
    // writes them as part `name` into `dir` (the snapshot's temporary directory) if it
    // reaches it (dir/.node-token holds `token`): {"written": true, "bytes", "sha256",
    // "pages"}, else {"written": false, "why"} and the I/O node asks for the pages.
    SaveMemoryPart = 13,
    Last = SaveMemoryPart,
};
const char* to_string(ControlOp op);

// A request's argument `key` as an unsigned number below `limit`; the error names the key.
Result<uint64_t> uint_arg(const control::Json& args, const char* key, uint64_t limit);

// The cluster control's message types: CtlReq and CtlReply, up to kMaxPayload bytes of CBOR.
std::span<const MessageSpec> control_messages();

class NodeControl final : public MessageHandler {
  public:
    using Json = control::Json;
    // What this node does for a request (on the worker thread; may block).
    using Serve = std::function<Result<Json>(ControlOp op, const Json& args)>;
    // A peer's connection went away (the receive thread).
    using OnLost = std::function<void(NodeId peer, const Error& why)>;

    NodeControl(NodeId self, uint32_t num_nodes, Serve serve, OnLost on_lost = {});
    ~NodeControl() override;
    NodeControl(const NodeControl&) = delete;
    NodeControl& operator=(const NodeControl&) = delete;

    // MessageHandler (the transport's receive thread).
    void on_start(Transport& transport) override;
    void on_message(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload) override;
    // CtlReq and CtlReply, each with up to kMaxPayload bytes of CBOR.
    std::span<const MessageSpec> messages() const override;
    void on_peer_lost(NodeId peer, const Error& why) override;

    // Asks node `to` and waits for its answer until `timeout`.
    Result<Json> ask(NodeId to, ControlOp op, const Json& args, std::chrono::milliseconds timeout);
    // Asks every other node at once; one answer per node (by node id order), lost nodes
    // included (their answer is a PeerLost error).
    struct Answer {
        NodeId node;
        Result<Json> reply;
    };
    std::vector<Answer> ask_all(ControlOp op, const Json& args, std::chrono::milliseconds timeout);
    // The same for the nodes listed (this node is skipped).
    std::vector<Answer> ask_some(const std::vector<NodeId>& nodes, ControlOp op, const Json& args,
                                 std::chrono::milliseconds timeout);

    bool lost(NodeId node) const;
    uint32_t num_nodes() const { return num_nodes_; }
    void close();

  private:
    struct Pending {
        NodeId to = 0;
        std::optional<Result<Json>> reply;
    };
    struct Request {
        NodeId from;
        uint64_t id;
        uint64_t op;
        std::vector<uint8_t> args;
    };
    void worker();
    void answer(const Request& r);
    // Sends the request; its id, or an error (payload too big, send failed).
    Result<uint64_t> send_request(NodeId to, ControlOp op, const Json& args,
                                  std::chrono::steady_clock::time_point deadline);
    Result<Json> wait(uint64_t id, std::chrono::steady_clock::time_point deadline);

    const NodeId self_;
    const uint32_t num_nodes_;
    Serve serve_;
    OnLost on_lost_;
    std::atomic<Transport*> transport_{nullptr};

    mutable std::mutex mu_;
    std::condition_variable cv_;                    // a reply came, a peer was lost, or close()
    std::condition_variable work_cv_;               // a request came, or close()
    bool closed_ = false;                           // under mu_
    uint64_t next_id_ = 1;                          // under mu_
    std::map<uint64_t, Pending> pending_;           // under mu_: request id -> its answer so far
    std::vector<std::optional<std::string>> lost_;  // under mu_: why a node was lost
    std::deque<Request> requests_;                  // under mu_: for the worker
    std::thread worker_;
};

}  // namespace kv
