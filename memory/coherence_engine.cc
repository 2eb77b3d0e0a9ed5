#include "memory/coherence_engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/log.h"

namespace kv {

uint64_t CoherenceEngine::now_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

Result<std::unique_ptr<CoherenceEngine>> CoherenceEngine::create(GuestMemory& mem, Options opts) {
    std::vector<Span> spans;
    uint64_t pages = 0;
    for (const auto& r : mem.regions()) {
        spans.push_back({r.mapping.data(), pages, r.size / kPageSize});
        pages += r.size / kPageSize;
    }
    auto homes = opts.homes.empty() ? HomeMap::even(pages, opts.num_nodes)
                                    : HomeMap::from_ranges(opts.homes, pages, opts.num_nodes);
    if (!homes) return homes.error();
    if (opts.self >= opts.num_nodes) return Error{"coherence engine: node id outside the cluster"};
    auto uffd = Userfaultfd::open(opts.shadow != nullptr);
    if (!uffd) return uffd.error();
    for (const auto& r : mem.regions()) KV_TRY(uffd->register_missing_wp(r.mapping.data(), r.size));
    auto stop = Fd::check(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd");
    if (!stop) return stop.error();
    return std::unique_ptr<CoherenceEngine>(
        new CoherenceEngine(mem, std::move(opts), std::move(uffd).value(), std::move(stop).value(),
                            std::move(spans), std::move(homes).value()));
}

namespace {
using Kind = PayloadRule::Kind;
constexpr MessageSpec kCoherenceMessages[] = {
    {MsgType::ReadReq, {Kind::Empty, 0}},
    {MsgType::WriteReq, {Kind::Empty, 0}},
    {MsgType::Fetch, {Kind::Empty, 0}},
    {MsgType::FetchInv, {Kind::Empty, 0}},
    {MsgType::Inv, {Kind::Empty, 0}},
    {MsgType::InvAck, {Kind::Empty, 0}},
    {MsgType::FetchReply, {Kind::EmptyOrPage, kPageSize}},
    {MsgType::Grant, {Kind::EmptyOrPage, kPageSize}},
    {MsgType::GrantAck, {Kind::Empty, 0}},
};
}  // namespace

std::span<const MessageSpec> coherence_messages() {
    return kCoherenceMessages;
}

CoherenceEngine::CoherenceEngine(GuestMemory& mem, Options opts, Userfaultfd uffd, Fd stop_fd,
                                 std::vector<Span> spans, HomeMap homes)
    : mem_(mem),
      opts_(std::move(opts)),
      uffd_(std::move(uffd)),
      stop_fd_(std::move(stop_fd)),
      spans_(std::move(spans)),
      num_pages_(homes.num_pages()),
      zero_page_(kPageSize, 0),
      core_(opts_.self, std::move(homes)),
      fault_start_(num_pages_, 0),
      fault_count_(num_pages_, 0),
      inv_start_(num_pages_, 0),
      gained_at_(opts_.hold_ns ? num_pages_ : 0, 0) {
    auto own = coherence_messages();
    messages_.assign(own.begin(), own.end());
    if (opts_.next) {
        auto more = opts_.next->messages();
        messages_.insert(messages_.end(), more.begin(), more.end());
    }
    actions_.reserve(3 * kMaxNodes);
    // Physical addresses a guest page-table entry may hold: RAM and the MMIO below 4 GiB.
    max_gpa_ = uint64_t{1} << 32;
    for (const auto& r : mem_.regions()) max_gpa_ = std::max(max_gpa_, r.base.value + r.size);
}

CoherenceEngine::~CoherenceEngine() {
    stop();
}

uint8_t* CoherenceEngine::page_ptr(uint64_t pfn) const {
    for (const auto& s : spans_)
        if (pfn >= s.first_pfn && pfn < s.first_pfn + s.pages)
            return s.base + (pfn - s.first_pfn) * kPageSize;
    return nullptr;
}

std::optional<uint64_t> CoherenceEngine::pfn_of(uint64_t addr) const {
    for (const auto& s : spans_) {
        uint64_t base = reinterpret_cast<uint64_t>(s.base);
        if (addr >= base && addr < base + s.pages * kPageSize)
            return s.first_pfn + (addr - base) / kPageSize;
    }
    return std::nullopt;
}

LocalState CoherenceEngine::local_state(uint64_t pfn) const {
    std::lock_guard lk(mu_);
    return core_.local_state(pfn);
}

bool CoherenceEngine::never_granted(uint64_t pfn) const {
    std::lock_guard lk(mu_);
    const DirEntry* d = core_.dir(pfn);
    return d && d->state == DirState::Uncached;
}

CoherenceEngine::StateCounts CoherenceEngine::state_counts() const {
    StateCounts c;
    std::lock_guard lk(mu_);
    for (uint64_t pfn = 0; pfn < num_pages_; ++pfn) {
        switch (core_.local_state(pfn)) {
            case LocalState::I:
                ++c.invalid;
                break;
            case LocalState::S:
                ++c.shared;
                break;
            case LocalState::M:
                ++c.modified;
                break;
        }
    }
    return c;
}

std::optional<Error> CoherenceEngine::error() const {
    std::lock_guard lk(err_mu_);
    return error_;
}

void CoherenceEngine::fail(const Error& e) {
    if (failed_.exchange(true)) return;
    {
        std::lock_guard lk(err_mu_);
        error_ = e;
    }
    KV_ERROR("node %u: coherence stopped: %s", opts_.self, e.message.c_str());
    if (opts_.on_error) opts_.on_error(e);
}

void CoherenceEngine::on_start(Transport& transport) {
    {
        std::lock_guard lk(mu_);
        transport_ = &transport;
    }
    // The next handler may have to answer a message before the transport's factory has
    // even returned to our owner.
    if (opts_.next) opts_.next->on_start(transport);
}

Status CoherenceEngine::start(Transport& transport) {
    {
        std::lock_guard lk(mu_);
        transport_ = &transport;
    }
    fault_thread_ = std::thread([this] { fault_loop(); });
    if (opts_.shadow) fault_handler_thread_ = std::thread([this] { fault_handler_loop(); });
    if (opts_.hold_ns) hold_thread_ = std::thread([this] { hold_loop(); });
    return {};
}

void CoherenceEngine::stop() {
    stopping_ = true;
    if (hold_thread_.joinable()) {
        {
            std::lock_guard lk(mu_);
            hold_stop_ = true;
        }
        held_cv_.notify_one();
        hold_thread_.join();
        // The receive side keeps serving peers after stop(): what was held goes now, in
        // order, and nothing is held from here on.
        std::lock_guard lk(mu_);
        for (auto& [pfn, q] : held_)
            for (auto& m : q)
                if (!failed_) deliver(m.from, m.h, m.payload, now_ns());
        held_.clear();
    }
    if (fault_thread_.joinable()) {
        uint64_t one = 1;
        // The eventfd counter cannot overflow from one write; the poll below sees it.
        (void)!::write(stop_fd_.get(), &one, sizeof one);
        fault_thread_.join();
    }
    if (fault_handler_thread_.joinable()) {
        {
            std::lock_guard lk(fq_mu_);
            fq_stop_ = true;
        }
        fq_cv_.notify_one();
        fault_handler_thread_.join();
    }
}

void CoherenceEngine::fault_loop() {
    uffd_msg msgs[16];
    pollfd fds[2] = {{uffd_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            fail(Error::from_errno("poll userfaultfd"));
            return;
        }
        if (fds[1].revents) return;
        auto n = uffd_.read_events(msgs, 16);
        if (!n) {
            fail(n.error());
            return;
        }
        if (opts_.shadow) {
            // Noted first (the guard may be waiting for it, the engine's lock held), then
            // handled on the handler thread.
            for (size_t i = 0; i < *n; ++i) {
                const uffd_msg& m = msgs[i];
                if (m.event != UFFD_EVENT_PAGEFAULT) continue;
                if (auto pfn = pfn_of(m.arg.pagefault.address))
                    opts_.shadow->note_fault(static_cast<pid_t>(m.arg.pagefault.feat.ptid), *pfn,
                                             m.arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WP |
                                                                      UFFD_PAGEFAULT_FLAG_WRITE));
            }
            {
                std::lock_guard lk(fq_mu_);
                for (size_t i = 0; i < *n; ++i)
                    if (msgs[i].event == UFFD_EVENT_PAGEFAULT) fault_queue_.push_back(msgs[i]);
            }
            fq_cv_.notify_one();
            continue;
        }
        for (size_t i = 0; i < *n; ++i)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT && !failed_) handle_fault(msgs[i]);
    }
}

void CoherenceEngine::fault_handler_loop() {
    std::unique_lock lk(fq_mu_);
    for (;;) {
        fq_cv_.wait(lk, [&] { return fq_stop_ || !fault_queue_.empty(); });
        if (fq_stop_) return;
        const uffd_msg m = fault_queue_.front();
        fault_queue_.pop_front();
        lk.unlock();
        if (!failed_) handle_fault(m);
        lk.lock();
    }
}

bool CoherenceEngine::hold_for_drop(const uint8_t* page) {
    // The page is present here (the core drops only a copy it has), so reading it cannot
    // fault.
    if (!opts_.shadow || !looks_like_page_table({page, kPageSize}, max_gpa_)) return false;
    counters_.page_table_drops.fetch_add(1, std::memory_order_relaxed);
    opts_.shadow->hold([this](uint64_t p, bool write) {
        const LocalState s = core_.local_state(p);
        return s == LocalState::I || (write && s != LocalState::M);
    });
    return true;
}

void CoherenceEngine::handle_fault(const uffd_msg& m) {
    const uint64_t flags = m.arg.pagefault.flags;
    auto pfn = pfn_of(m.arg.pagefault.address);
    if (!pfn) {
        fail(Error{"userfaultfd fault outside guest RAM"});
        return;
    }
    Access access = Access::Read;
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        access = Access::Write;
        counters_.write_protect_faults.fetch_add(1, std::memory_order_relaxed);
    } else if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
        access = Access::Write;
        counters_.write_missing_faults.fetch_add(1, std::memory_order_relaxed);
    } else {
        counters_.read_missing_faults.fetch_add(1, std::memory_order_relaxed);
    }
    const uint64_t t0 = now_ns();
    std::lock_guard lk(mu_);
    actions_.clear();
    Status st = core_.on_fault(*pfn, access, actions_);
    if (!st) return fail(st.error());
    // The first fault on the page starts the clock; coalesced ones share it. The page's
    // install or unprotect (here for the home's own pages, or on the Grant) stops it.
    if (fault_start_[*pfn] == 0) fault_start_[*pfn] = t0;
    ++fault_count_[*pfn];
    st = run_actions(t0);
    if (!st) fail(st.error());
}

void CoherenceEngine::on_message(NodeId from, const MsgHeader& h,
                                 std::span<const uint8_t> payload) {
    const auto type = static_cast<MsgType>(h.type);
    if (!CoherenceCore::is_coherence(type)) {
        if (opts_.next) opts_.next->on_message(from, h, payload);
        return;
    }
    if (failed_) return;
    if (payload.size() == kPageSize)
        counters_.pages_received.fetch_add(1, std::memory_order_relaxed);
    if (type == MsgType::Inv)
        counters_.invalidations_received.fetch_add(1, std::memory_order_relaxed);
    const uint64_t t0 = now_ns();
    std::lock_guard lk(mu_);
    if (opts_.hold_ns && !hold_stop_ && h.arg < num_pages_) {
        // Behind a held message from the same node about the same page, or itself taking
        // away access gained within the hold window: it waits (hold_loop releases it).
        auto it = held_.find(h.arg);
        bool behind = it != held_.end() &&
                      std::any_of(it->second.begin(), it->second.end(),
                                  [from](const HeldMessage& m) { return m.from == from; });
        if (behind || in_hold(h, t0)) {
            held_[h.arg].push_back({from, h, {payload.begin(), payload.end()}});
            counters_.held_messages.fetch_add(1, std::memory_order_relaxed);
            held_cv_.notify_one();
            return;
        }
    }
    deliver(from, h, payload, t0);
}

void CoherenceEngine::deliver(NodeId from, const MsgHeader& h, std::span<const uint8_t> payload,
                              uint64_t t0) {
    const auto type = static_cast<MsgType>(h.type);
    actions_.clear();
    Status st = core_.on_message(from, h, payload, actions_);
    if (!st) return fail(st.error());
    if (type == MsgType::InvAck && h.arg < num_pages_ && inv_start_[h.arg] != 0) {
        const DirEntry* e = core_.dir(h.arg);
        if (e && e->acks_pending == 0) {
            counters_.record_invalidation_latency(t0 - inv_start_[h.arg]);
            inv_start_[h.arg] = 0;
        }
    }
    st = run_actions(t0);
    if (!st) fail(st.error());
}

bool CoherenceEngine::in_hold(const MsgHeader& h, uint64_t now) const {
    const uint64_t pfn = h.arg;
    if (now >= gained_at_[pfn] + opts_.hold_ns) return false;
    const LocalState s = core_.local_state(pfn);
    switch (static_cast<MsgType>(h.type)) {
        case MsgType::ReadReq:  // the home's write access (a read request downgrades M)
        case MsgType::Fetch:
            return s == LocalState::M;
        case MsgType::WriteReq:  // any access (the home's copy goes)
        case MsgType::Inv:
        case MsgType::FetchInv:
            return s != LocalState::I;
        default:
            return false;
    }
}

void CoherenceEngine::release_held(uint64_t pfn, std::deque<HeldMessage>& q, uint64_t now,
                                   uint64_t& next) {
    uint64_t waiting = 0;  // nodes with a message still held: their later ones keep waiting
    for (auto it = q.begin(); it != q.end() && !failed_;) {
        const uint64_t bit = uint64_t{1} << it->from;
        if (waiting & bit) {
            ++it;
        } else if (in_hold(it->h, now)) {
            waiting |= bit;
            next = std::min(next, gained_at_[pfn] + opts_.hold_ns);
            ++it;
        } else {
            HeldMessage m = std::move(*it);
            it = q.erase(it);
            deliver(m.from, m.h, m.payload, now);
        }
    }
}

void CoherenceEngine::hold_loop() {
    std::unique_lock lk(mu_);
    while (!hold_stop_) {
        const uint64_t now = now_ns();
        uint64_t next = UINT64_MAX;
        for (auto it = held_.begin(); it != held_.end();) {
            release_held(it->first, it->second, now, next);
            it = it->second.empty() || failed_ ? held_.erase(it) : std::next(it);
        }
        if (next == UINT64_MAX)
            held_cv_.wait(lk);
        else
            held_cv_.wait_for(lk, std::chrono::nanoseconds(next - now));
    }
}

void CoherenceEngine::on_peer_lost(NodeId peer, const Error& why) {
    if (opts_.next) opts_.next->on_peer_lost(peer, why);
    if (stopping_) return;
    fail(Error{"node " + std::to_string(peer) + " lost: " + why.message});
}

Status CoherenceEngine::run_actions(uint64_t t0) {
    for (size_t i = 0; i < actions_.size(); ++i) {
        const Action& a = actions_[i];
        uint8_t* page = page_ptr(a.pfn);
        switch (a.op) {
            case Action::Op::Send: {
                if (!transport_) return Error{"coherence engine: no transport"};
                MsgHeader h;
                h.type = static_cast<uint16_t>(a.type);
                h.arg = a.pfn;
                h.request_id = a.flags;
                std::span<const uint8_t> payload;
                // LocalPage: present and write-protected (the core's ordering), so this read
                // neither faults nor races a writer.
                if (a.payload == Action::Payload::LocalPage) payload = {page, kPageSize};
                if (a.payload == Action::Payload::Data) payload = a.data;
                // A Send followed by the Invalidate of the same page (a Grant or FetchReply
                // that hands the page to a writer, then this node's copy dropped): drop the
                // copy before the message leaves, sending a snapshot if the message carries
                // it. Otherwise, between the send and the drop, the receiver may already
                // write while a local access still reads the old copy (one writer or many
                // readers; in the model the two are one step).
                if (i + 1 < actions_.size() && actions_[i + 1].op == Action::Op::Invalidate &&
                    actions_[i + 1].pfn == a.pfn) {
                    thread_local uint8_t snapshot[kPageSize];
                    const bool owed = hold_for_drop(page);
                    if (a.payload == Action::Payload::LocalPage) {
                        std::memcpy(snapshot, page, kPageSize);
                        payload = {snapshot, kPageSize};
                    }
                    const int r = ::madvise(page, kPageSize, MADV_DONTNEED);
                    if (owed) opts_.shadow->release();
                    if (r != 0) return Error::from_errno("madvise(MADV_DONTNEED) on guest RAM");
                    counters_.local_invalidations.fetch_add(1, std::memory_order_relaxed);
                    ++i;  // that Invalidate is done
                }
                if (!payload.empty()) counters_.pages_sent.fetch_add(1, std::memory_order_relaxed);
                if (a.type == MsgType::Inv) {
                    counters_.invalidations_sent.fetch_add(1, std::memory_order_relaxed);
                    if (inv_start_[a.pfn] == 0) inv_start_[a.pfn] = t0;
                }
                Status st = transport_->send(a.to, h, payload);
                if (!st)
                    return Error{"send to node " + std::to_string(a.to) + ": " +
                                 st.error().message};
                break;
            }
            case Action::Op::Install: {
                // Zeros are installed by UFFDIO_COPY from a zero buffer, not UFFDIO_ZEROPAGE:
                // the shared zero page carries no uffd-wp bit, so a write to a zero page
                // installed for S would be resolved by the kernel's CoW without a WP fault
                // (docs/memory.md; tests/unit/mem_uffd_test.cc checks it).
                const uint8_t* src = a.zero ? zero_page_.data() : a.data.data();
                KV_TRY(uffd_.copy(page, src, kPageSize, a.state == LocalState::S));
                break;
            }
            case Action::Op::Protect:
                KV_TRY(uffd_.writeprotect(page, kPageSize, true));
                break;
            case Action::Op::Unprotect:
                KV_TRY(uffd_.writeprotect(page, kPageSize, false));
                break;
            case Action::Op::Invalidate: {
                // KVM's MMU notifier drops the guest mapping too; the next access faults.
                const bool owed = hold_for_drop(page);
                const int r = ::madvise(page, kPageSize, MADV_DONTNEED);
                if (owed) opts_.shadow->release();
                if (r != 0) return Error::from_errno("madvise(MADV_DONTNEED) on guest RAM");
                counters_.local_invalidations.fetch_add(1, std::memory_order_relaxed);
                break;
            }
            case Action::Op::Wake:
                KV_TRY(uffd_.wake(page, kPageSize));
                break;
        }
        if (opts_.shadow && (a.op == Action::Op::Install || a.op == Action::Op::Unprotect ||
                             a.op == Action::Op::Wake))
            opts_.shadow->resolved(a.pfn, core_.local_state(a.pfn) == LocalState::M);
        if (opts_.hold_ns && (a.op == Action::Op::Install || a.op == Action::Op::Unprotect))
            gained_at_[a.pfn] = now_ns();
        if ((a.op == Action::Op::Install || a.op == Action::Op::Unprotect ||
             a.op == Action::Op::Wake) &&
            fault_start_[a.pfn] != 0 && !core_.pending(a.pfn)) {
            if (a.op != Action::Op::Wake)
                counters_.record_fault_latency(now_ns() - fault_start_[a.pfn]);
            fault_start_[a.pfn] = 0;
        }
    }
    return {};
}

std::vector<CoherenceEngine::HotPage> CoherenceEngine::hottest_pages(size_t n) const {
    std::vector<HotPage> out;
    std::lock_guard lk(mu_);
    for (uint64_t pfn = 0; pfn < num_pages_; ++pfn) {
        uint32_t c = fault_count_[pfn];
        if (c == 0) continue;
        if (out.size() < n) {
            out.push_back({pfn, c});
        } else if (c > out.back().faults) {
            out.back() = {pfn, c};
        } else {
            continue;
        }
        std::sort(out.begin(), out.end(),
                  [](const HotPage& a, const HotPage& b) { return a.faults > b.faults; });
    }
    return out;
}

}  // namespace kv
