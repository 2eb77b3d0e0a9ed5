/* The boot protocol header of the freestanding bzImages (count-guest.S, smp-count-guest.S):
 * #include it first, after defining KERNEL_GPA and INIT_EXTRA (bytes the guest uses beyond
 * its image). Boot protocol 2.15, 64-bit entry only (XLF_KERNEL_64), not relocatable,
 * loaded at KERNEL_GPA; one setup sector, so the kernel starts 0x400 into the file, and
 * vmm-launch enters it 0x200 further in long mode (the boot GDT, the 0-4 GiB identity
 * map). The including file defines the labels `kernel` (at 0x400) and `kernel_end`. */
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
    .long kernel_end - kernel + INIT_EXTRA /* init_size */
    .long 0                                /* handover_offset */
    .long 0                                /* kernel_info_offset */
header_end:
    .org 0x400
