/*
 * Promela model of the Kerrvisor coherence protocol (memory/coherence_protocol.{h,cc}).
 *
 * 3 nodes, 2 pages: node 0 homes page 0, node 1 homes page 1, node 2 homes nothing (a
 * pure requester). Each node has a Recv process per peer (the receive side: one atomic
 * step per message, as the engine runs CoherenceCore::on_message and its actions under
 * one lock) and a Cpu process (threads as CPUs: an access either hits the local mapping or faults,
 * CoherenceCore::on_fault, and waits for the page, then retries). Coalescing of faults
 * from several threads of one node is left to tests/unit/mem_protocol_test.cc.
 * Channels ch[from*N+to] are FIFO per node pair, as every Transport is.
 *
 * Checked (tests/model/CMakeLists.txt):
 *  - check(), after every atomic step: at most one writer or many readers per page, every mapped copy holds
 *    the last value written (so a read returns the last write);
 *  - every message arrives in a state where the C++ core accepts it (assert on the
 *    conditions under which it would report a protocol violation);
 *  - no invalid end state (deadlock: a CPU waiting forever for a page), and at the end no
 *    request is pending and no directory entry is busy;
 *  - ltl requests_complete: under weak fairness every request is eventually granted.
 */
#define N 3
#define P 2
/* Accesses made by the CPU of each node (set with spin -D): each access picks either
 * page and read or write. Two accesses let a CPU read and then upgrade. */
#ifndef OPS0
#define OPS0 1
#endif
#ifndef OPS1
#define OPS1 1
#endif
#ifndef OPS2
#define OPS2 2
#endif
#define CAP 4   /* per-pair channel capacity */
#define NCPU 3

mtype = { ReadReq, WriteReq, Fetch, FetchInv, Inv, InvAck, FetchReply, Grant, GrantAck };

/* local states (LocalState) and directory states (DirState) */
#define I 0
#define S 1
#define M 2
#define UNC 0
#define SHR 1
#define MOD 2
/* grant_flags */
#define ZERO 1
#define UPG 2
#define HOME(p) (p)
#define BIT(x) (1 << (x))
#define L(x) ((x) * P + p)   /* index of page p at node x */
#define GARBAGE 255

chan ch[N * N] = [CAP] of { mtype, byte, byte, byte };  /* type, page, flags, data */

/* requester side, per node and page (CoherenceCore::Local) */
byte st[N * P];
bool pend[N * P];
bool want[N * P];   /* 0 read, 1 write */
byte val[N * P];    /* contents of the local copy */
byte last[P];       /* the last value written to each page */

/* home side, per page, held by HOME(p) (DirEntry) */
byte dst[P];
bool dzero[P];
bool busy[P];
byte owner[P];
byte sharers[P];
byte req[P];
bool kind[P];
byte acks[P];
bool fetchp[P];
bool gackp[P];
chan q[P] = [NCPU] of { byte, bool };   /* waiting requests (FIFO) */

byte finished;

inline send(to, t, pg, f, d) { ch[n * N + to]!t, pg, f, d }

/* install_local / drop_local */
inline install(s, d) { assert(st[L(n)] == I); st[L(n)] = s; val[L(n)] = d }
inline drop() { assert(st[L(n)] != I); st[L(n)] = I; val[L(n)] = GARBAGE }

/* CoherenceCore::grant: the directory is already updated. For the home itself the grant
 * is applied locally and the transaction completes (CoherenceCore::complete). */
inline grant(f, d) {
    if
    :: req[p] == n ->
        if
        :: (f & UPG) -> assert(st[L(n)] == S); st[L(n)] = M   /* Op::Unprotect */
        :: else -> install((kind[p] -> M : S), d)
        fi;
        busy[p] = 0; pend[L(n)] = 0; req[p] = 0; kind[p] = 0
    :: else -> send(req[p], Grant, p, f, d); gackp[p] = 1
    fi
}

/* CoherenceCore::finish_write_from_shared */
inline finish() {
    hadr = (sharers[p] & BIT(req[p])) != 0;
    hc = (req[p] != n) && ((sharers[p] & BIT(n)) != 0);
    z = dzero[p];
    dst[p] = MOD; owner[p] = req[p]; sharers[p] = 0; dzero[p] = 0;
    if
    :: hadr -> grant(UPG, 0)
    :: !hadr && z -> grant(ZERO, 0)
    :: !hadr && !z -> assert(hc); grant(0, val[L(n)])
    fi;
    if
    :: hc -> drop()
    :: else -> skip
    fi
}

/* CoherenceCore::serve */
inline serve(r, k) {
    busy[p] = 1; req[p] = r; kind[p] = k; acks[p] = 0; fetchp[p] = 0; gackp[p] = 0;
    if
    :: r == n && ((k == 0 && st[L(n)] != I) || st[L(n)] == M) ->
        busy[p] = 0; pend[L(n)] = 0; req[p] = 0; kind[p] = 0   /* satisfied while queued: Wake */
    :: else ->
        if
        :: k == 0 ->
            if
            :: dst[p] == UNC -> dst[p] = SHR; sharers[p] = BIT(r); grant(ZERO, 0)
            :: dst[p] == SHR ->
                sharers[p] = sharers[p] | BIT(r);
                if
                :: dzero[p] -> grant(ZERO, 0)
                :: else -> assert(st[L(n)] == S); grant(0, val[L(n)])
                fi
            :: dst[p] == MOD && owner[p] == n ->
                st[L(n)] = S;                          /* Op::Protect before reading */
                dst[p] = SHR; sharers[p] = BIT(n) | BIT(r); dzero[p] = 0;
                grant(0, val[L(n)])
            :: dst[p] == MOD && owner[p] != n -> fetchp[p] = 1; send(owner[p], Fetch, p, 0, 0)
            fi
        :: k == 1 ->
            if
            :: dst[p] == UNC -> dst[p] = MOD; owner[p] = r; dzero[p] = 0; grant(ZERO, 0)
            :: dst[p] == SHR ->
                acks[p] = sharers[p] & ~BIT(r) & ~BIT(n);
                i = 0;
                do
                :: i < N -> if :: (acks[p] & BIT(i)) -> send(i, Inv, p, 0, 0) :: else fi; i++
                :: else -> break
                od;
                if
                :: acks[p] == 0 -> finish()
                :: else
                fi
            :: dst[p] == MOD && owner[p] == n ->
                st[L(n)] = S; owner[p] = r; grant(0, val[L(n)]); drop()
            :: dst[p] == MOD && owner[p] != n -> fetchp[p] = 1; send(owner[p], FetchInv, p, 0, 0)
            fi
        fi
    fi
}

/* CoherenceCore::enqueue, then serve_next */
inline enqueue(r, k) {
    if
    :: busy[p] -> q[p]!r, k
    :: else -> serve(r, k)
    fi
}
inline serve_next() {
    do
    :: !busy[p] && len(q[p]) > 0 -> q[p]?rr, kk; serve(rr, kk)
    :: else -> break
    od
}

/* CoherenceCore::on_message, one message per atomic step */
/* Temporaries back to 0 so that they do not multiply the state space. */
inline reset() { t = 0; p = 0; f = 0; d = 0; i = 0; rr = 0; z = 0; kk = 0; hadr = 0; hc = 0 }

inline handle(from) {
    ch[from * N + n]?t, p, f, d;
    if
    /* requester side */
    :: t == Grant ->
        assert(from == HOME(p) && pend[L(n)]);
        if
        :: (f & UPG) -> assert(want[L(n)] && st[L(n)] == S); st[L(n)] = M
        :: else -> install((want[L(n)] -> M : S), ((f & ZERO) -> 0 : d))
        fi;
        pend[L(n)] = 0;
        send(from, GrantAck, p, 0, 0)
    :: t == Inv ->
        assert(from == HOME(p) && st[L(n)] != M);
        if
        :: st[L(n)] == S -> drop()
        :: else -> skip                               /* stale Inv: nothing held */
        fi;
        send(from, InvAck, p, 0, 0)
    :: t == Fetch || t == FetchInv ->
        assert(from == HOME(p) && st[L(n)] == M);
        st[L(n)] = S;                                 /* Op::Protect, then read */
        send(from, FetchReply, p, 0, val[L(n)]);
        if
        :: t == FetchInv -> drop()
        :: else
        fi
    /* home side */
    :: t == ReadReq || t == WriteReq ->
        assert(HOME(p) == n);
        assert(!(dst[p] == MOD && owner[p] == from));
        enqueue(from, t == WriteReq)
    :: t == InvAck ->
        assert(busy[p] && (acks[p] & BIT(from)));
        acks[p] = acks[p] & ~BIT(from);
        sharers[p] = sharers[p] & ~BIT(from);
        if
        :: acks[p] == 0 -> finish()
        :: else
        fi
    :: t == FetchReply ->
        assert(busy[p] && fetchp[p] && from == owner[p]);
        fetchp[p] = 0; dzero[p] = 0;
        if
        :: kind[p] == 0 ->
            dst[p] = SHR; sharers[p] = BIT(from) | BIT(req[p]);
            hc = req[p] != n;
            grant(0, d);
            if
            :: hc -> install(S, d); sharers[p] = sharers[p] | BIT(n)   /* home copy */
            :: else
            fi
        :: else -> dst[p] = MOD; owner[p] = req[p]; sharers[p] = 0; grant(0, d)
        fi
    :: t == GrantAck ->
        assert(busy[p] && gackp[p] && req[p] == from);
        busy[p] = 0; gackp[p] = 0; req[p] = 0; kind[p] = 0   /* complete */
    fi;
    if
    :: HOME(p) == n -> serve_next()
    :: else
    fi
}

/* The safety invariant, checked at the end of every atomic step (every change of the
 * shared state happens inside one): single writer / multiple readers, and every mapped
 * copy holds the last value written (so every read returns the last write). */
inline check() {
    c = 0;
    do
    :: c < P ->
        assert((st[0 * P + c] == I || val[0 * P + c] == last[c]) &&
               (st[1 * P + c] == I || val[1 * P + c] == last[c]) &&
               (st[2 * P + c] == I || val[2 * P + c] == last[c]));
        assert((st[0 * P + c] == M) + (st[1 * P + c] == M) + (st[2 * P + c] == M) <= 1);
        assert((st[0 * P + c] != M && st[1 * P + c] != M && st[2 * P + c] != M) ||
               (st[0 * P + c] != S && st[1 * P + c] != S && st[2 * P + c] != S));
        c++
    :: else -> break
    od;
    c = 0
}

/* The receive side of node n for messages from node `from`: one process per ordered
 * pair, so that weak fairness is fairness among peers (as the transport's receive
 * threads are); every handler runs as one atomic step, as the engine runs the core and
 * its actions under one lock. */
proctype Recv(byte from; byte n) {
    mtype t;
    byte p, f, d, i, rr, z, c;
    bool kk, hadr, hc;
end:
    do
    :: atomic { nempty(ch[from * N + n]) -> handle(from); check(); reset() }
    od
}

/* A thread used as a CPU of node n: OPS accesses to any page, reads or writes. */
proctype Cpu(byte n; byte nops) {
    byte p, ops, i, rr, z, f, d, c;
    bool w, kk, hadr, hc, done;
    mtype t;
    do
    :: ops < nops ->
        if
        :: p = 0
        :: p = 1
        fi;
        if
        :: w = 0
        :: w = 1
        fi;
        done = 0;
        do
        :: done -> break
        :: else ->
            atomic {
                if
                :: !w && st[L(n)] != I -> assert(val[L(n)] == last[p]); done = 1
                :: w && st[L(n)] == M -> last[p]++; val[L(n)] = last[p]; done = 1
                :: else ->
                    /* CoherenceCore::on_fault */
                    if
                    :: pend[L(n)] -> skip                       /* coalesced */
                    :: else ->
                        pend[L(n)] = 1; want[L(n)] = w;
                        if
                        :: HOME(p) == n -> enqueue(n, w); serve_next()
                        :: else -> send(HOME(p), (w -> WriteReq : ReadReq), p, 0, 0)
                        fi
                    fi
                fi;
                check(); i = 0; rr = 0; z = 0; kk = 0; hadr = 0; hc = 0
            };
            if
            :: done -> skip
            :: else -> !pend[L(n)]   /* blocked in the fault until the page is installed */
            fi
        od;
        atomic { ops++; p = 0; w = 0; done = 0 }
    :: else -> break
    od;
    finished++
}

/* At the end of every run: no request pending, no page busy at its home. */
active proctype at_end() {
    byte x;
    timeout ->
    assert(finished == NCPU);
    do
    :: x < N * P -> assert(!pend[x]); x++
    :: else -> break
    od;
    assert(!busy[0] && !busy[1])
}

init {
    atomic {
        dzero[0] = 1; dzero[1] = 1;
        run Recv(1, 0); run Recv(2, 0); run Recv(0, 1); run Recv(2, 1); run Recv(0, 2);
        run Recv(1, 2);
        run Cpu(0, OPS0); run Cpu(1, OPS1); run Cpu(2, OPS2)
    }
}

/* Every request completes: a pending request of any node for any page is eventually
 * granted. (Not "every access completes": a CPU woken by its grant may lose the page to
 * a request served before it re-runs its access, again and again; weak fairness does not
 * exclude that, and the model finds such a cycle. See docs/memory.md "Progress".) */
ltl requests_complete {
    [] ((pend[0] -> <> !pend[0]) && (pend[1] -> <> !pend[1]) && (pend[2] -> <> !pend[2]) &&
        (pend[3] -> <> !pend[3]) && (pend[4] -> <> !pend[4]) && (pend[5] -> <> !pend[5]))
}
