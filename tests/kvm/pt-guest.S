/* pt-guest: a 2-vCPU bzImage for the page-table coherence test (tests/kvm/pt-run.sh).
 * The boot processor (vCPU 0) maps one virtual page, VA = 512 GiB (PML4 entry 1), through
 * page tables of its own, and at every round points that mapping at the other of two
 * frames, writes the round number into the frame it now maps, invalidates its own TLB
 * entry and raises the round. The application processor (vCPU 1, on another node) waits
 * for the round, invalidates its TLB entry (invlpg: what an operating system's TLB
 * shootdown does) and reads VA: it must see the round number. A node whose KVM keeps a
 * translation derived from the page table's old contents (shadow paging, the page
 * rewritten behind KVM's back by the coherence protocol) reads the previous round's frame
 * and counts an error. Boot protocol 2.15 header, 64-bit entry only, loaded at 1 MiB,
 * entered by vmm-launch in long mode with the 0-4 GiB identity map (like count-guest.S).
 *
 * What the test reads with `kvctl xp` (guest-physical addresses):
 *   0x101000  u64  rounds the AP has checked
 *   0x101008  u64  rounds in which it read a stale value
 *   0x101010  u64  the first stale value it read (0: none)
 *   0x101018  u64  the round of that first error
 * The AP's rounds counter reaching ROUNDS means the run is over. */
#define KERNEL_GPA 0x100000
#define TRAMPOLINE 0x8000
#define LAPIC 0xfee00000
#define ROUNDS 1000
#define PDPT 0x200000 /* the test's page tables and frames, above the image */
#define PD 0x201000
#define PT 0x202000
#define FRAME0 0x203000
#define FRAME1 0x204000
#define FLAGS 0x205000 /* +0: the round the BSP raised; +8: the round the AP checked */
#define VA 0x8000000000
#define ABS(label) (KERNEL_GPA + (label) - kernel)
#define TR(label) (TRAMPOLINE + (label) - trampoline)

#define INIT_EXTRA 0x10000
#include "bzimage-header.S"
#include "guest-lib.S"
kernel:
    .org 0x400 + 0x200
    .code64
entry64:
    cli
    SERIAL_PRINT
    /* The mapping of VA: PML4[1] -> PDPT[0] -> PD[0] -> PT[0] -> FRAME0 (round 0). */
    mov %cr3, %rax
    and $~0xfff, %rax
    movq $(PDPT | 3), 8(%rax)
    movq $(PD | 3), PDPT
    movq $(PT | 3), PD
    movq $(FRAME0 | 3), PT
    movq $0, FRAME0
    movq $0, FLAGS
    movq $0, FLAGS + 8
    START_APS                              /* the AP */

    /* BSP: round r maps FRAME(r & 1), holding r, once the AP has checked round r - 1. */
    mov $1, %r8
3:  mov FLAGS + 8, %rax
    lea -1(%r8), %rcx
    cmp %rcx, %rax
    jne 3b                                 /* until the AP has checked round r - 1 */
    mov $FRAME0, %rax
    test $1, %r8
    jz 5f
    mov $FRAME1, %rax
5:  mov %r8, (%rax)                        /* the frame holds r ... */
    or $3, %rax
    mov %rax, PT                           /* ... and VA maps it */
    movabs $VA, %rax
    invlpg (%rax)
    mov %r8, FLAGS                         /* round r is up */
    inc %r8
    cmp $(ROUNDS + 1), %r8
    jne 3b
6:  cli
    hlt
    jmp 6b

    ICR_IDLE

/* AP: for each round, invlpg VA and read it; count what is not the round number. */
check:
    lea results(%rip), %rdi
    movabs $VA, %rsi
    mov $1, %r8
7:  mov FLAGS, %rax
    cmp %r8, %rax
    jne 7b                                 /* until round r is up */
    invlpg (%rsi)
    mov (%rsi), %rax
    cmp %r8, %rax
    je 8f
    incq 8(%rdi)
    cmpq $0, 16(%rdi)
    jne 8f
    mov %rax, 16(%rdi)
    mov %r8, 24(%rdi)
8:  mov %r8, (%rdi)                        /* rounds checked (the test's progress) */
    mov %r8, FLAGS + 8                     /* round r checked */
    inc %r8
    cmp $(ROUNDS + 1), %r8
    jne 7b
    jmp 6b

#define AP_ENTRY check
#include "ap-trampoline.S"

message:
    .ascii "pt-guest: checking at 0x101000\n\0"
    .org 0x400 + 0x1000
results:
    .quad 0, 0, 0, 0
    .balign 16
kernel_end:
