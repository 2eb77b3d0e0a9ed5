/* guest-lib.S: assembler macros shared by the freestanding test guests (count-guest.S,
 * smp-count-guest.S, pt-guest.S). #include it after bzimage-header.S; the SMP macros need
 * LAPIC, TRAMPOLINE and TR(label) defined first, and the guest to include ap-trampoline.S.
 */

/* SERIAL_PRINT: writes the NUL-terminated string at `message` to COM1 (port 0x3f8).
 * Clobbers rsi, dx and al. */
.macro SERIAL_PRINT
    lea message(%rip), %rsi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:
.endm

/* START_APS: copies the trampoline (ap-trampoline.S) to TRAMPOLINE and tells it this
 * CR3, then software-enables this LAPIC (SVR bit 8) and sends INIT and SIPI (vector 0x08:
 * 0x8000) to all but itself, the SIPI twice as the MP specification says. Leaves LAPIC in
 * rbx; calls icr_idle (ICR_IDLE below). */
.macro START_APS
    lea trampoline(%rip), %rsi
    mov $TRAMPOLINE, %rdi
    mov $(trampoline_end - trampoline), %rcx
    rep movsb
    mov %cr3, %rax
    mov $TR(tr_cr3), %rdi
    movl %eax, (%rdi)
    mov $LAPIC, %rbx
    movl $0x1ff, 0xf0(%rbx)
    movl $0x000c4500, 0x300(%rbx)
    call icr_idle
    movl $0x000c4608, 0x300(%rbx)
    call icr_idle
    movl $0x000c4608, 0x300(%rbx)
    call icr_idle
.endm

/* ICR_IDLE: the subroutine icr_idle, which waits until the ICR's delivery status (of the
 * LAPIC at rbx) is idle. */
.macro ICR_IDLE
icr_idle:
    testl $0x1000, 0x300(%rbx)
    jnz icr_idle
    ret
.endm
