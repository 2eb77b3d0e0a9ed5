/* count-guest: the smallest bzImage vmm-launch boots, for the control-socket test
 * (tests/kvm/control-run.sh). It says where it counts on the serial port, then adds one to
 * the 64-bit counter at COUNTER_GPA forever, with no exit to the VMM: only a pause from
 * outside stops it. Boot protocol 2.15 header, 64-bit entry only (XLF_KERNEL_64), not
 * relocatable, loaded at 1 MiB (kKernelGpa); the entry is 0x200 into the kernel, where
 * vmm-launch enters in long mode with the boot GDT and the 0-4 GiB identity map.
 * Assembled to an object and copied out as a flat file (objcopy -O binary). */
#define KERNEL_GPA 0x100000
#define COUNTER_OFFSET 0x1000 /* COUNTER_GPA = 0x101000 */

    .text
    .globl _start
_start:
    .org 0x1f1
    .byte 1                                /* setup_sects: the kernel starts at 0x400 */
    .word 0                                /* root_flags */
    .long (kernel_end - kernel) / 16       /* syssize, in 16-byte paragraphs */
    .word 0, 0, 0                          /* ram_size, vid_mode, root_dev */
    .org 0x1fe
    .word 0xAA55                           /* boot_flag */
    .byte 0xeb, header_end - _start - 0x202        /* jump: the header ends at header_end */
    .ascii "HdrS"
    .word 0x020F                           /* version 2.15 */
    .org 0x230
    .long 0x200000                         /* kernel_alignment */
    .byte 0                                /* relocatable_kernel: no */
    .byte 0                                /* min_alignment */
    .word 0x1                              /* xloadflags: XLF_KERNEL_64 */
    .long 255                              /* cmdline_size */
    .org 0x258
    .quad KERNEL_GPA                       /* pref_address */
    .long kernel_end - kernel + 0x1000     /* init_size */
    .long 0                                /* handover_offset */
    .long 0                                /* kernel_info_offset */
header_end:
    .org 0x400
kernel:
    .org 0x400 + 0x200
    .code64
entry64:
    cli
    lea message(%rip), %rsi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  lea counter(%rip), %rdi
3:  lock incq (%rdi)
    jmp 3b
message:
    .ascii "count-guest: counting at 0x101000\n\0"
    .org 0x400 + COUNTER_OFFSET
counter:
    .quad 0
    .balign 16
kernel_end:
