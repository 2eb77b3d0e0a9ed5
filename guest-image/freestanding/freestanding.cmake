# kv_freestanding_guest(OUTPUT): builds the freestanding test guest (entry.S, guest.c,
# guest.ld in this folder) into the flat binary OUTPUT, loaded at KVT_IMAGE_GPA
# (protocol.h). Uses the project's C compiler with freestanding flags; no libc.
set(KV_FREESTANDING_DIR ${CMAKE_CURRENT_LIST_DIR})

function(kv_freestanding_guest output)
  set(dir ${KV_FREESTANDING_DIR})
  set(work ${output}.d)
  set(flags -m64 -O2 -g0 -ffreestanding -nostdlib -fno-pic -fno-pie -static -mno-red-zone
            -mgeneral-regs-only -fno-stack-protector -fcf-protection=none
            -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns
            -Wall -Wextra -Werror -I${dir})
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${work}
    COMMAND ${CMAKE_C_COMPILER} ${flags} -c ${dir}/entry.S -o ${work}/entry.o
    COMMAND ${CMAKE_C_COMPILER} ${flags} -std=c11 -c ${dir}/guest.c -o ${work}/guest.o
    COMMAND ${CMAKE_C_COMPILER} ${flags} -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,${dir}/guest.ld
            ${work}/entry.o ${work}/guest.o -o ${work}/guest.elf
    COMMAND ${CMAKE_OBJCOPY} -O binary ${work}/guest.elf ${output}
    DEPENDS ${dir}/entry.S ${dir}/guest.c ${dir}/guest.ld ${dir}/protocol.h
    COMMENT "Building the freestanding test guest"
    VERBATIM)
endfunction()
