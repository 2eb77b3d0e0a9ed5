/* smp-count-guest: an SMP bzImage for the vCPU migration test and benchmark
 * (tests/kvm/migrate-run.sh, scripts/bench/migrate). The boot processor starts every
 * other vCPU (INIT and SIPI to all but itself, through a real-mode trampoline it copies to
 * 0x8000), then every vCPU adds 1 to one shared counter with `lock xadd` until the ACPI
 * power button is pressed (kvctl powerdown), and halts. Boot protocol 2.15 header, 64-bit entry only, loaded at 1 MiB, entered by
 * vmm-launch in long mode with the boot GDT and the 0-4 GiB identity map, like
 * count-guest.S. Assembled to an object and copied out as a flat file.
 *
 * What the test reads with `kvctl xp` (guest-physical addresses):
 *   0x101000  u64  the shared counter
 *   0x101008  u64  vCPUs that have stopped counting (after the power button)
 *   0x101010  u64  vCPUs that have started counting (the boot processor included)
 *   0x102000  u64  the stop flag (the boot processor sets it)
 *   0x110000 + 0x1000 * APIC ID: that vCPU's own page (each on a page of its own, so
 *     that no other vCPU's writes move it between nodes):
 *     +0   u64  additions it has done
 *   With TIME_GAPS defined (the benchmark's build), the vCPUs leave the shared counter
 *   alone (so that no page moves between nodes but with a migrated vCPU) and also keep:
 *     +8   u64  the longest time between two of its additions, in TSC ticks
 *     +16  u64  how many times that time was over STALL_TICKS
 *     +24  u64  the sum of those times, in TSC ticks
 * Once every vCPU has stopped: counter = the sum of the additions, stopped = vCPUs.
 * With FILL_MIB defined (the snapshot benchmark's build), the boot processor first fills
 * FILL_MIB MiB from 16 MiB with non-zero data. */
#define KERNEL_GPA 0x100000
#define TRAMPOLINE 0x8000
#define STALL_TICKS 200000 /* about 0.1 ms at 2 GHz */
#define LAPIC 0xfee00000
#define ABS(label) (KERNEL_GPA + (label) - kernel)
#define TR(label) (TRAMPOLINE + (label) - trampoline)

#define INIT_EXTRA 0x20000 /* the per-vCPU pages after it */
#include "bzimage-header.S"
#include "guest-lib.S"
kernel:
    .org 0x400 + 0x200
    .code64
entry64:
    cli
    SERIAL_PRINT
#ifdef FILL_MIB
    /* The snapshot benchmark's build: FILL_MIB MiB from 16 MiB on, each quadword its own
     * address (no page is zero), before any vCPU counts. */
    mov $0x1000000, %rdi
    mov $(0x1000000 + FILL_MIB * 0x100000), %rcx
8:  mov %rdi, (%rdi)
    add $8, %rdi
    cmp %rcx, %rdi
    jb 8b
#endif
    START_APS                              /* the boot identity map is below 4 GiB */
    jmp count

    ICR_IDLE

/* Every vCPU: additions to the shared counter until the stop flag is set, timing the
 * gaps between them with TIME_GAPS. Every 4096 additions the vCPU looks at the flag; the
 * boot processor also reads PM1a_STS (port 0x600) and sets the flag once the ACPI power
 * button was pressed (PWRBTN_STS, bit 8: kvctl powerdown). */
count:
    mov $LAPIC, %rbx
    movl 0x20(%rbx), %eax                  /* APIC ID in bits 31:24 */
    shr $24, %eax
    mov %eax, %r11d                        /* 0: the boot processor */
    shl $12, %rax
    lea 0x110000(%rax), %rsi               /* this vCPU's page */
    lea counter(%rip), %rdi
    lea stop_flag(%rip), %rbx
    lock incq 16(%rdi)                     /* started */
    xor %r8, %r8                           /* additions so far */
#ifdef TIME_GAPS
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r9                          /* the TSC at the last addition */
#endif
3:
#ifndef TIME_GAPS
    mov $1, %eax
    lock xadd %rax, (%rdi)
#endif
    inc %r8
    mov %r8, (%rsi)
#ifdef TIME_GAPS
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r10
    sub %r9, %rax                          /* ticks since the last addition */
    mov %r10, %r9
    cmp 8(%rsi), %rax
    jbe 4f
    mov %rax, 8(%rsi)
4:  cmp $STALL_TICKS, %rax
    jbe 5f
    incq 16(%rsi)
    add %rax, 24(%rsi)
#endif
5:  test $0xfff, %r8
    jnz 3b
    test %r11d, %r11d
    jnz 7f
    mov $0x600, %dx                        /* the boot processor: the power button? */
    inw %dx, %ax
    test $0x100, %ax
    jz 7f
    movq $1, (%rbx)
7:  cmpq $0, (%rbx)
    je 3b
    lock incq 8(%rdi)                      /* done */
6:  cli
    hlt
    jmp 6b

#define AP_ENTRY count
#include "ap-trampoline.S"

message:
    .ascii "smp-count-guest: counting at 0x101000\n\0"
    .org 0x400 + 0x1000
counter:
    .quad 0                                /* 0x101000: the shared counter */
    .quad 0                                /* 0x101008: stopped */
    .quad 0                                /* 0x101010: started */
    .org 0x400 + 0x2000
stop_flag:
    .quad 0                                /* 0x102000: set by the boot processor */
    .balign 16
kernel_end:
