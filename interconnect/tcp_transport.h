// Transport over TCP: a full mesh, one connection per node pair.
//
// Start-up (create()): the node listens (unless it is the highest id) and, concurrently,
// connects to every lower-id node; each connection runs the Hello/HelloAck handshake
// (handshake.h has the sequence diagram and the refusal rules):
//
//   node 2                 node 1                 node 0
//     |--connect, Hello---->|                       |
//     |--connect, Hello-------------------------->  |
//     |                     |--connect, Hello-----> |
//     |<--HelloAck----------|<--HelloAck----------- |
//     |<--HelloAck------------------------------    |
//   create() returns once all N-1 connections are up, or fails naming the peers not
//   reached by TransportOptions::connect_timeout. The listening socket is then closed:
//   a lost peer is not re-admitted (a node that dies stops the guest, issue 3 item 5).
//
// Threading:
//   - one receive thread per transport: epoll over every peer socket and an eventfd that
//     shutdown() signals. It reads into the peer's StreamParser (one preallocated buffer
//     of 32 + kMaxPayload bytes per peer), validates every header with the codec and calls
//     the handler in order per peer (and, as one thread, in one order over all peers).
//   - send() from any thread never waits for the network: under a per-peer mutex it writes
//     header + payload with one non-blocking sendmsg(); what the socket buffer does not
//     take goes to the peer's send queue (a byte buffer), and while that queue holds
//     anything later messages join it behind, so messages to one peer leave whole and in
//     the order their send() returned. The receive thread writes the queue out when the
//     socket is writable (EPOLLOUT, asked for only while the queue is not empty). So a
//     caller may send under its own lock (the coherence engine does) and two nodes whose
//     socket buffers are full cannot deadlock: neither receive thread ever blocks in a
//     send. The queue is bounded by the protocols above (request/reply, one fault per
//     vCPU); past kMaxSendQueue bytes the peer is taken as not reading and dropped.
//   - no heap allocation per message when the socket takes it at once (errors aside).
//
// Liveness (TransportOptions::heartbeat, H): the receive thread sends a 32-byte Heartbeat on
// every connection nothing was sent on for min(H/4, 250 ms), and drops a peer from which
// nothing at all arrived for H ("node 1: silent for 4000 ms (heartbeat 4s)"), reported
// like a close. A heartbeat never waits: if the peer's socket buffer is full or a sender
// holds it, it is skipped (that connection has data in flight, which TCP_USER_TIMEOUT
// bounds). Every connection also has TCP_USER_TIMEOUT = H and keepalive (set_liveness()).
// So every wait for a peer (a forwarded I/O reply, a page grant, a control reply) ends
// within about H of the peer going silent, through on_peer_lost. Handlers run on the
// receive thread: one that blocked for H would stop this node's heartbeats.
//
// Errors: a truncated, oversized, unknown or out-of-protocol message (a Hello after the
// handshake, a header whose src is not the connection's node), a reset, or a close by the
// peer drops that connection: one log line naming the peer and the problem, then
// on_peer_lost(peer, why) exactly once, on the receive thread. Other peers are unaffected.
// send() to a lost peer fails with the reason.
//
// shutdown(): stops and joins the receive thread, writes out what the send queues still
// hold (waiting at most kShutdownFlush for each socket to take it: a Shutdown message sent
// just before is not lost), then closes every socket; no handler call happens after it
// returns. It must not be called from inside a handler.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "interconnect/stream_parser.h"
#include "interconnect/tcp_socket.h"
#include "interconnect/transport.h"
#include "interconnect/transport_options.h"

namespace kv {

// A peer whose send queue grows past this is not reading: its connection is dropped.
inline constexpr size_t kMaxSendQueue = size_t(256) << 20;
// shutdown() waits at most this long for the send queues to drain.
inline constexpr std::chrono::milliseconds kShutdownFlush{2000};

class TcpTransport final : public Transport {
  public:
    // Builds the mesh (blocking until done or the connect deadline) and starts receiving.
    static Result<std::unique_ptr<TcpTransport>> create(const TransportOptions& opts,
                                                        MessageHandler* handler);
    ~TcpTransport() override;

    NodeId self() const override { return opts_.self; }
    Status send(NodeId to, MsgHeader h, std::span<const uint8_t> payload = {}) override;
    void shutdown() override;
    // Bytes waiting in the send queue to `to` (0 for an unknown or lost peer); for tests
    // and statistics.
    size_t queued(NodeId to);

  private:
    struct Peer {
        explicit Peer(std::span<const MessageSpec> specs) : parser(specs) {}
        PeerAddress addr;
        // Set during start-up; afterwards changed (closed) only under send_mu, by the
        // receive thread's drop() or by shutdown() after the receive thread is joined.
        Fd fd;
        std::mutex send_mu;
        std::atomic<bool> lost{false};
        std::string lost_why;  // under send_mu
        // The send queue (under send_mu): out[out_head..] is still to be written; while it
        // is not empty the socket is watched for EPOLLOUT (want_out).
        std::vector<uint8_t> out;
        size_t out_head = 0;
        bool want_out = false;
        std::atomic<bool> jammed{false};     // the queue overflowed: drop() names that
        StreamParser parser;                 // receive thread only
        Clock::time_point last_rx;           // receive thread only: bytes last arrived
        std::atomic<Clock::rep> last_tx{0};  // a message last went out (Clock ticks)
    };

    TcpTransport(const TransportOptions& opts, MessageHandler* handler);
    Status start();
    Status accept_higher(Fd listener, Clock::time_point deadline, std::vector<NodeId>* unreached,
                         std::vector<std::string>* refusals);
    Status connect_lower(Clock::time_point deadline, std::vector<NodeId>* unreached);
    Status connect_one(Peer& p, Clock::time_point deadline, bool* reached);
    Peer* find(NodeId id);
    void receive_loop();
    void on_readable(Peer& p);
    void drop(Peer& p, const Error& why);
    // Under p.send_mu: writes what the socket takes of the queue without waiting (then of
    // iov, if the queue emptied), queues the rest of iov and watches EPOLLOUT while
    // anything is left. An error is the socket's (reset, broken).
    Status write_out(Peer& p, ::msghdr* msg);
    // Receive thread, on EPOLLOUT.
    void on_writable(Peer& p);
    void watch_out(Peer& p, bool on);  // under p.send_mu
    // Receive thread: drops silent peers and sends heartbeats on idle connections; returns
    // how long until it is next due.
    std::chrono::milliseconds keep_alive(Clock::time_point now);
    void send_heartbeat(Peer& p, Clock::time_point now);

    TransportOptions opts_;
    MessageHandler* handler_;
    std::vector<MessageSpec> specs_;            // what is received: the handler's, and Heartbeat
    std::vector<std::unique_ptr<Peer>> peers_;  // every node but self, by ascending id
    Fd epoll_;
    Fd wake_;    // eventfd: shutdown() -> receive thread
    Fd cancel_;  // eventfd: a failing start-up half tells the other to stop waiting
    std::thread receiver_;
    std::atomic<bool> stopping_{false};
    std::mutex shutdown_mu_;
    bool shut_down_ = false;  // under shutdown_mu_
};

Result<std::unique_ptr<Transport>> make_tcp_transport(const TransportOptions& opts,
                                                      MessageHandler* handler);

}  // namespace kv
