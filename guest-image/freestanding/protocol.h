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
};
#endif

#endif
