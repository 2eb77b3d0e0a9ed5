# Tier 3, multi-node: the freestanding test guest's vCPUs spread over several node
# processes whose guest RAM is kept coherent by the coherence engine over TCP
# (docs/testing-dsm-kvm.md). Included from tests/coherence/kvm.cmake, so the ctest
# entries sit with the other coherence tests (label `coherence`).
include(${CMAKE_SOURCE_DIR}/guest-image/freestanding/freestanding.cmake)

set(KV_DSM_DIR ${CMAKE_SOURCE_DIR}/tests/dsmkvm)
set(KV_DSM_GUEST_IMAGE ${CMAKE_CURRENT_BINARY_DIR}/dsm-kvm-guest.bin)
kv_freestanding_guest(${KV_DSM_GUEST_IMAGE})
configure_file(${KV_DSM_DIR}/dsm_guest_image.S.in ${CMAKE_CURRENT_BINARY_DIR}/dsm_guest_image.S
               @ONLY)
set_source_files_properties(${CMAKE_CURRENT_BINARY_DIR}/dsm_guest_image.S
  PROPERTIES OBJECT_DEPENDS ${KV_DSM_GUEST_IMAGE})

add_executable(kv-dsm-kvm-node ${KV_DSM_DIR}/dsm_kvm_node.cc
  ${CMAKE_CURRENT_BINARY_DIR}/dsm_guest_image.S ${KV_DSM_GUEST_IMAGE})
target_link_libraries(kv-dsm-kvm-node PRIVATE kv_vmm Threads::Threads)

# The benchmark with vCPUs as CPUs (scripts/bench/dsm runs it where the probe passes).
add_executable(kv-dsm-kvm-bench ${KV_DSM_DIR}/dsm_kvm_bench.cc
  ${CMAKE_CURRENT_BINARY_DIR}/dsm_guest_image.S ${KV_DSM_GUEST_IMAGE})
target_link_libraries(kv-dsm-kvm-bench PRIVATE kv_vmm Threads::Threads)

# 2, 3 and 4 nodes with one vCPU each, and 2 nodes with two vCPUs each. run.sh runs the
# launcher on this machine's /dev/kvm when the probe passes, otherwise inside one lab host.
set(KV_DSM_RUN ${KV_DSM_DIR}/run.sh)
foreach(cfg 2:1 3:1 4:1 2:2)
  string(REPLACE ":" ";" parts ${cfg})
  list(GET parts 0 nodes)
  list(GET parts 1 per)
  set(name coherence.kvm.${nodes}nodes_${per}vcpu)
  add_test(NAME ${name}
           COMMAND ${KV_DSM_RUN} $<TARGET_FILE:kv-dsm-kvm-node> --launch ${nodes} --per-node ${per})
  set_tests_properties(${name} PROPERTIES LABELS "coherence;kvm" TIMEOUT 900 RESOURCE_GROUPS ${KV_LAB_ONE_HOST})
endforeach()

# The same scenarios with every node process in its own network namespace, joined by
# veth pairs to a bridge (netns_launch.sh makes and removes them, inside the lab host on
# the lab path): 2, 3 and 4 nodes with one vCPU each. Needs root.
foreach(nodes 2 3 4)
  set(name coherence.kvm.netns.${nodes}nodes)
  add_test(NAME ${name}
           COMMAND ${KV_DSM_RUN} --netns $<TARGET_FILE:kv-dsm-kvm-node> --launch ${nodes} --per-node 1)
  set_tests_properties(${name} PROPERTIES LABELS "coherence;kvm;netns" TIMEOUT 900
                       RESOURCE_GROUPS ${KV_LAB_ONE_HOST})
endforeach()
