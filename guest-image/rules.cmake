# Guest programs built natively as well, so their logic is tested on the build machine
# (tests/lab: lab.smp_check.native); the guest image builds its own static copies
# (guest-image/build-initramfs).
add_executable(smp-check-native ${CMAKE_CURRENT_SOURCE_DIR}/programs/smp-check.c)
target_link_libraries(smp-check-native PRIVATE Threads::Threads)
