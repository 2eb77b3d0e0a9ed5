/* ap-trampoline.S: the real-mode start of an application processor, for the SMP test
 * guests (smp-count-guest.S, pt-guest.S). #include it in the guest's .text after
 * defining TRAMPOLINE (where the guest copies it, below 1 MiB), TR(label) and ABS(label)
 * as those guests do, and AP_ENTRY (the 64-bit label the AP jumps to). The guest copies
 * trampoline..trampoline_end to TRAMPOLINE and stores its CR3 at TR(tr_cr3) first. */
/* Real mode at CS:IP = 0x0800:0 -> long mode with its own GDT and the boot processor's
 * page tables, then AP_ENTRY. */
    .balign 16
trampoline:
    .code16
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tr_gdtr - trampoline
    mov %cr4, %eax
    or $0x20, %eax                         /* PAE */
    mov %eax, %cr4
    movl tr_cr3 - trampoline, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx                  /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax                   /* PG, PE */
    mov %eax, %cr0
    ljmpl $0x08, $TR(tr_long)
    .code64
tr_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    movabs $ABS(AP_ENTRY), %rax
    jmp *%rax
    .balign 8
tr_gdt:
    .quad 0
    .quad 0x00af9a000000ffff               /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff               /* 0x10: data */
tr_gdtr:
    .word tr_gdtr - tr_gdt - 1
    .long TR(tr_gdt)
tr_cr3:
    .long 0
trampoline_end:
