/* The contract between the freestanding test guest and the harness that runs it
 * (tests/kvm/kvm_harness.h, docs/testing-kvm.md). Included from the guest's C and
 * assembly and from the C++ harness, so it is plain C and preprocessor only.
 *
 * Memory map (guest-physical, identity-mapped by the harness's page tables):
 *   0x00500          the VMM's boot GDT (unused by the guest, which loads its own)
 *   0x08000          AP trampoline, copied there by the BSP (SIPI vector 0x08)
 *   0x09000-0x0EFFF  identity page tables for 0-4 GiB (written by the harness)
 *   0x50000-0x5FFFF  AP stacks, 4 KiB each, below KVT_AP_STACK_TOP
 *   0x70000          BSP stack top
 *   0x80000          struct kvt_params (harness -> guest), then struct kvt_results
 *   0x100000         the guest image; its first byte is the 64-bit entry point
 */
#ifndef KV_GUEST_FREESTANDING_PROTOCOL_H
#define KV_GUEST_FREESTANDING_PROTOCOL_H

#define KVT_IMAGE_GPA 0x100000
#define KVT_BSP_STACK_TOP 0x70000
#define KVT_AP_STACK_TOP 0x60000
#define KVT_AP_STACK_SIZE 0x1000
#define KVT_TRAMPOLINE_GPA 0x8000
#define KVT_PARAMS_GPA 0x80000
#define KVT_RESULTS_GPA 0x80100

/* Ports the harness answers. */
#define KVT_PORT_SERIAL 0x3F8 /* byte writes: console output */
#define KVT_PORT_EXIT 0x501   /* 4-byte write: the run ends with this status */
#define KVT_PORT_MARK 0x502   /* 4-byte write: the harness timestamps mark <value> */
#define KVT_PORT_CLOCK 0x504  /* 4-byte read: host monotonic time, microseconds (low 32) */

/* Scenarios (kvt_params.scenario). */
#define KVT_SCENARIO_SERIAL 1
#define KVT_SCENARIO_IPI 2
#define KVT_SCENARIO_TIMER_PERIODIC 3
#define KVT_SCENARIO_TIMER_ONESHOT 4
#define KVT_SCENARIO_COUNT 5 /* the BSP counts in results.count until params.count_stop */

/* Exit statuses written to KVT_PORT_EXIT. */
#define KVT_EXIT_PASS 0
#define KVT_EXIT_BAD_SCENARIO 1
#define KVT_EXIT_AP_TIMEOUT 2        /* the AP never reported ready after INIT/SIPI */
#define KVT_EXIT_IPI_TIMEOUT 3       /* an IPI sent to the AP was not received in time */
#define KVT_EXIT_IPI_WRONG_TARGET 4  /* the BSP received an IPI meant for the AP */
#define KVT_EXIT_AP_RESTARTED 5      /* the second SIPI restarted a running AP */
#define KVT_EXIT_TIMER_TIMEOUT 6     /* fewer ticks than asked for, in time */
#define KVT_EXIT_TIMER_EXTRA 7       /* a one-shot timer fired more than once */
#define KVT_EXIT_TIMER_COUNT 8       /* a fired one-shot timer's current count is not 0 */
#define KVT_EXIT_ICR_BUSY 9          /* ICR delivery status stayed pending */
#define KVT_EXIT_UNEXPECTED_VECTOR 10 /* an interrupt on a vector with no handler */
#define KVT_EXIT_DSM_TIMEOUT 11      /* multi-node: a wait ran past kvt_dsm_params.wait_us */
#define KVT_EXIT_DSM_MISMATCH 12     /* multi-node: a check failed (counts were reported) */
#define KVT_EXIT_EXCEPTION_BASE 0x100 /* + vector: a CPU exception (results tell where) */

/* Marks (KVT_PORT_MARK values). */
#define KVT_MARK_TIMER_START 1 /* just before the initial count is written */
#define KVT_MARK_TIMER_DONE 2  /* after the last expected tick was handled */

/* Vectors the guest installs handlers for. */
#define KVT_VECTOR_IPI 0x40
#define KVT_VECTOR_TIMER 0x41
#define KVT_VECTOR_SPURIOUS 0xFF

/* The SIPI vector: the trampoline's page number. */
#define KVT_SIPI_VECTOR (KVT_TRAMPOLINE_GPA >> 12)

/* Multi-node runs (tests/dsmkvm/, docs/testing-dsm-kvm.md): one guest whose vCPUs are
 * spread over several node processes that share guest RAM through the coherence engine.
 * No INIT/SIPI: every vCPU is entered directly in long mode at KVT_DSM_ENTRY_GPA with
 * RDI = its vCPU index and RSP = KVT_DSM_STACK_TOP(index) (the VMM's boot GDT and page
 * tables). vCPU 0 builds the guest's GDT and IDT, the others wait for it, then all run
 * the phases below, separated by barriers on a word of guest RAM. Extra ports:
 *   KVT_PORT_DSM_MISMATCHES  4-byte write: failed checks of the current phase (the VMM
 *                            adds them to the vCPU's current phase, named by its last mark)
 *   KVT_PORT_YIELD           4-byte write (spin count): a polite spin; the VMM lets other
 *                            host threads run (the host may have fewer cores than vCPUs)
 *   KVT_PORT_DSM_PUBLISH     4-byte write (round r): the vmm phase's writer has stored
 *                            KVT_DSM_VMM_VALUE(r); its VMM tells node 0's VMM, which reads
 *                            it from guest RAM and answers by storing r in the ack word
 * Marks: KVT_DSM_MARK_BEGIN(phase) after the phase's first barrier, KVT_DSM_MARK_END(phase)
 * after its last one, plus the inval phase's two check points. */
#define KVT_DSM_ENTRY_GPA (KVT_IMAGE_GPA + 0x40)
#define KVT_DSM_PARAMS_GPA 0x81000
#define KVT_DSM_MAX_VCPUS 16
#define KVT_DSM_MAX_NODES 8
#define KVT_DSM_STACK_TOP(i) (KVT_AP_STACK_TOP - (i) * KVT_AP_STACK_SIZE)
#define KVT_PORT_DSM_MISMATCHES 0x505
#define KVT_PORT_YIELD 0x506
#define KVT_PORT_DSM_PUBLISH 0x507

#define KVT_DSM_PHASE_COUNTER 1  /* every vCPU: lock xadd on one counter, iters times */
#define KVT_DSM_PHASE_MP 2       /* vCPU 0 writes data then flag; other nodes' vCPUs check */
#define KVT_DSM_PHASE_PINGPONG 3 /* vCPU 0 and the first vCPU of node 1 take turns */
#define KVT_DSM_PHASE_INVAL 4    /* all read one page, the last vCPU writes it */
#define KVT_DSM_PHASE_VMM 5      /* node 1's vCPU writes, node 0's VMM reads */
#define KVT_DSM_PHASES 5
#define KVT_DSM_MARK_BEGIN(p) (0x100 + (p))
#define KVT_DSM_MARK_END(p) (0x200 + (p))
#define KVT_DSM_MARK_INVAL_READ 0x301    /* every vCPU has read the page, nobody wrote it */
#define KVT_DSM_MARK_INVAL_WRITTEN 0x302 /* the last vCPU has written it, nobody read it since */
#define KVT_DSM_VMM_VALUE(r) (0x5EED0000u + (r))

/* The words the phases share: word j of node K's home slice is the page
 * slice_end[K] - (j + 1) * 4 KiB (one word per page, so each is its own coherence unit). */
#define KVT_DSM_WORD_BARRIER 0  /* home: node 0 */
#define KVT_DSM_WORD_COUNTER 1  /* home: the last node */
#define KVT_DSM_WORD_MP 2       /* data: home node 1; flag: home node 0 */
#define KVT_DSM_WORD_PINGPONG 3 /* home: the last node */
#define KVT_DSM_WORD_INVAL 4    /* home: the last node (the writer's node) */
#define KVT_DSM_WORD_VMM 5      /* the value: home the last node; the ack: home node 0 */
#define KVT_DSM_WORD_MP_ACK 8   /* + local index: each reader's ack, homed at its node */

/* vCPU benchmark (tests/dsmkvm/dsm_kvm_bench.cc, docs/testing-dsm-kvm.md "Benchmark"):
 * each vCPU is entered in long mode at KVT_BENCH_ENTRY_GPA (the VMM's boot GDT and page
 * tables, RSP = a stack page of its own) and runs commands its VMM hands it: it reads an
 * op from KVT_PORT_BENCH_CMD, the op's arguments from KVT_PORT_BENCH_ARG (one 4-byte read
 * each), does it, and answers with four 4-byte writes to KVT_PORT_BENCH_RESULT: the TSC
 * cycles the op took (low, high) and a value (low, high). The guest writes no memory of
 * its own but its stack, so nothing else moves between nodes. Timed regions are
 * "mfence; lfence; rdtsc; lfence" on both sides; the VMM converts cycles with
 * KVT_BENCH_OP_CALIBRATE, which counts cycles against the clock port. */
#define KVT_BENCH_ENTRY_GPA (KVT_IMAGE_GPA + 0x80)
#define KVT_PORT_BENCH_CMD 0x508
#define KVT_PORT_BENCH_ARG 0x509
#define KVT_PORT_BENCH_RESULT 0x50A
#define KVT_BENCH_OP_CALIBRATE 1 /* arg: microseconds; value: microseconds measured */
#define KVT_BENCH_OP_READ 2      /* arg: gpa (8-byte word); timed load; value: what it read */
#define KVT_BENCH_OP_WRITE 3     /* args: gpa, value; timed store */
#define KVT_BENCH_OP_PINGPONG 4  /* args: gpa, parity, rounds: wait for 2r+parity, store
                                    2r+parity+1; cycles of all rounds; value 0, or 1 if a
                                    wait ran past KVT_GUEST_WAIT_US */
#define KVT_BENCH_OP_EXIT 5      /* ends with KVT_EXIT_PASS */

/* Bound on every wait inside the guest, in microseconds of host time. */
#define KVT_GUEST_WAIT_US 5000000

#ifndef __ASSEMBLER__
#include <stdint.h>

/* Written by the harness before the BSP starts. */
struct kvt_params {
    uint32_t scenario;
    uint32_t ipi_fixed_count;    /* physical-destination fixed IPIs to the AP */
    uint32_t timer_divide;       /* LAPIC divide configuration register value */
    uint32_t timer_initial;      /* LAPIC initial count */
    uint32_t timer_ticks;        /* periodic: ticks to wait for */
    uint32_t oneshot_quiet_us;   /* one-shot: how long to watch for a second tick */
    uint32_t oneshot_rewrite_lvt; /* one-shot: after it fired, write LVT timer again
                                     (same value); the SDM says that does not re-arm */
    uint32_t count_stop;          /* count: the harness sets it non-zero to end the run */
};

/* Written by the guest; the harness reads it after the run. Fields touched by several
 * vCPUs are updated with locked instructions. */
struct kvt_results {
    uint32_t ap_started;       /* times an AP reached its 64-bit entry */
    uint32_t ap_ready;         /* APs with an enabled LAPIC, waiting for IPIs */
    uint32_t ipis_sent;        /* ICR writes of KVT_VECTOR_IPI by the BSP */
    uint32_t ipi_received[4];  /* KVT_VECTOR_IPI handled, by APIC ID */
    uint32_t timer_ticks;      /* KVT_VECTOR_TIMER handled */
    uint32_t timer_count_after; /* one-shot: current count read after it fired */
    uint32_t unexpected_vector; /* KVT_EXIT_UNEXPECTED_VECTOR: the vector in service */
    uint32_t exception_vector;
    uint64_t exception_error;
    uint64_t exception_rip;
    uint64_t count; /* count: incremented by the BSP in a loop, never by anyone else */
};

/* Multi-node runs: written by node 0's VMM before any vCPU starts. */
struct kvt_dsm_params {
    uint32_t nodes;      /* node processes */
    uint32_t per_node;   /* vCPUs per node: vCPU i runs on node i / per_node */
    uint32_t iters;      /* counter phase: lock xadd per vCPU */
    uint32_t rounds;     /* mp rounds */
    uint32_t pingpong_rounds;
    uint32_t vmm_rounds; /* vmm phase rounds */
    uint32_t wait_us;    /* bound on every wait, host microseconds */
    uint32_t reserved;
    uint64_t slice_end[KVT_DSM_MAX_NODES]; /* end (guest-physical) of node K's home slice */
};
#endif

#endif
