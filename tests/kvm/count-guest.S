/* count-guest: the smallest bzImage vmm-launch boots, for the control-socket test
 * (tests/kvm/control-run.sh). It says where it counts on the serial port, then adds one to
 * the 64-bit counter at COUNTER_GPA forever, with no exit to the VMM: only a pause from
 * outside stops it. Boot protocol 2.15 header, 64-bit entry only (XLF_KERNEL_64), not
 * relocatable, loaded at 1 MiB (kKernelGpa); the entry is 0x200 into the kernel, where
 * vmm-launch enters in long mode with the boot GDT and the 0-4 GiB identity map.
 * Assembled to an object and copied out as a flat file (objcopy -O binary). */
#define KERNEL_GPA 0x100000
#define COUNTER_OFFSET 0x1000 /* COUNTER_GPA = 0x101000 */

#define INIT_EXTRA 0x1000
#include "bzimage-header.S"
#include "guest-lib.S"
kernel:
    .org 0x400 + 0x200
    .code64
entry64:
    cli
    SERIAL_PRINT
    lea counter(%rip), %rdi
3:  lock incq (%rdi)
    jmp 3b
message:
    .ascii "count-guest: counting at 0x101000\n\0"
    .org 0x400 + COUNTER_OFFSET
counter:
    .quad 0
    .balign 16
kernel_end:
