/* The freestanding test guest's assembly: the BSP's 64-bit entry point (first byte of
 * the image), exception stubs, and the AP trampoline that takes an AP from its SIPI
 * (real mode, CS = KVT_SIPI_VECTOR << 8) straight to 64-bit code. See protocol.h for the
 * memory map and docs/testing-kvm.md for the scenarios. */
#include "protocol.h"

#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define MSR_EFER 0xC0000080
#define EFER_LME 0x100
#define CR4_PAE 0x20
#define CR0_PE_ET_PG 0x80000011

/* BSP entry: the harness enters here in long mode (BootCpuState), interrupts off. */
    .section .text.entry, "ax"
    .code64
    .globl kvt_entry
kvt_entry:
    mov $KVT_BSP_STACK_TOP, %esp
    xor %ebp, %ebp
    call kvt_bsp_main
1:  cli
    hlt
    jmp 1b

/* Multi-node entry (protocol.h, KVT_DSM_ENTRY_GPA): every vCPU is entered here by its
 * node's VMM in long mode, RDI = vCPU index (kvt_dsm_main's argument), RSP = its stack. */
    .org KVT_DSM_ENTRY_GPA - KVT_IMAGE_GPA
    .globl kvt_dsm_entry
kvt_dsm_entry:
    xor %ebp, %ebp
    call kvt_dsm_main
1:  cli
    hlt
    jmp 1b

/* vCPU benchmark entry (protocol.h, KVT_BENCH_ENTRY_GPA): RDI = vCPU index, RSP set. */
    .org KVT_BENCH_ENTRY_GPA - KVT_IMAGE_GPA
    .globl kvt_bench_entry
kvt_bench_entry:
    xor %ebp, %ebp
    call kvt_bench_main
1:  cli
    hlt
    jmp 1b

    .text
/* Reloads CS and the data segments after the guest's own GDT was loaded. */
    .globl kvt_reload_segments
kvt_reload_segments:
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    pop %rax
    push $SEL_CODE64
    push %rax
    lretq

/* Exception stubs: push a zero error code where the CPU pushes none, then the vector;
 * the C side records them and ends the run. */
.macro EXCEPTION_STUB vec
exception_\vec:
    .if !((\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30))
    push $0
    .endif
    push $\vec
    jmp exception_common
.endm
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXCEPTION_STUB \v
.endr

exception_common:
    mov %rsp, %rdi  /* vector, error code, RIP, CS, RFLAGS, RSP, SS */
    and $-16, %rsp
    call kvt_exception
1:  cli
    hlt
    jmp 1b

    .section .rodata
    .balign 8
    .globl kvt_exception_stubs
kvt_exception_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_\v
.endr

/* The guest's GDT (filled in by C): null, null, 64-bit code 0x10, data 0x18, TSS 0x20
 * (BSP, two slots), TSS 0x30 (first AP, two slots). */
    .data
    .balign 16
    .globl kvt_gdt, kvt_gdt_end
kvt_gdt:
    .fill 8, 8, 0
kvt_gdt_end:

/* AP trampoline. The BSP copies [kvt_trampoline_start, kvt_trampoline_end) to
 * KVT_TRAMPOLINE_GPA and stores its CR3 at kvt_trampoline_cr3 in the copy. The code only
 * addresses its own data CS-relative, so it runs wherever it is copied. It goes from real
 * mode to long mode in one step: PAE, CR3 and EFER.LME first, then PE and PG together;
 * the far jump loads the 64-bit code segment. */
    .text
    .code16
    .globl kvt_trampoline_start, kvt_trampoline_end, kvt_trampoline_cr3
kvt_trampoline_start:
    cli
    cld
    movl %cs:(kvt_trampoline_cr3 - kvt_trampoline_start), %eax
    movl %eax, %cr3
    movl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    lgdtl %cs:(trampoline_gdtr - kvt_trampoline_start)
    movl $CR0_PE_ET_PG, %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE64, $ap_entry64
    .balign 8
trampoline_gdtr:
    .word kvt_gdt_end - kvt_gdt - 1
    .long kvt_gdt
    .balign 4
kvt_trampoline_cr3:
    .long 0
kvt_trampoline_end:

    .code64
/* An AP in 64-bit mode: data segments, a stack below KVT_AP_STACK_TOP chosen by APIC ID
 * (APs have IDs 1, 2, ...), then C. */
ap_entry64:
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $0xFEE00020, %eax  /* LAPIC ID register */
    mov (%rax), %eax
    shr $24, %eax
    dec %eax
    imul $KVT_AP_STACK_SIZE, %eax
    mov $KVT_AP_STACK_TOP, %esp
    sub %rax, %rsp
    xor %ebp, %ebp
    call kvt_ap_main
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
