#!/bin/bash
# tests/guestprogs/fake-topology.sh NUMA_CHECK WAKEUP_BENCH
# numa-check (--root) and wakeup-bench --numa (--sysfs) against fake sysfs/proc trees of
# one and two NUMA nodes: each case must end with its exit status and print its line.
set -uo pipefail
numa_check=$1 wakeup_bench=$2
tmp=$(mktemp -d /tmp/kv-fake-topology.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0

# tree NAME ONLINE "NODE_CPULIST NODE_MIB NODE_DISTANCES"... : a fake tree; /proc's
# MemTotal is the nodes' sum unless PROC_MIB is set.
tree() {
  local root=$tmp/$1 online=$2 k=0 sum=0
  shift 2
  rm -rf "$root"
  mkdir -p "$root/sys/devices/system/cpu" "$root/proc"
  echo "$online" >"$root/sys/devices/system/cpu/online"
  for node in "$@"; do
    read -r cpus mib dist <<<"$node"
    dist=${dist//_/ }
    local d=$root/sys/devices/system/node/node$k
    mkdir -p "$d"
    echo "$cpus" >"$d/cpulist"
    printf 'Node %d MemTotal:       %d kB\nNode %d MemFree:        1000 kB\n' \
      "$k" $((mib * 1024)) "$k" >"$d/meminfo"
    echo "$dist" >"$d/distance"
    sum=$((sum + mib)) k=$((k + 1))
  done
  echo "0-$((k - 1))" >"$root/sys/devices/system/node/online"
  printf 'MemTotal:       %d kB\nMemFree:        1000 kB\n' $((${PROC_MIB:-$sum} * 1024)) \
    >"$root/proc/meminfo"
  echo "$root"
}

# expect CASE STATUS PATTERN -- COMMAND...
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [[ $status == "$want" ]] && grep -Eq -- "$pattern" <<<"$out"; then
    echo "ok   $name"
  else
    echo "FAIL $name: status $status (expected $want), pattern '$pattern'; output:"
    sed 's/^/    /' <<<"$out"
    failed=1
  fi
}

# Two nodes of one CPU and 512 MiB each, as a 2-host x 1-vCPU guest shows them.
good=$(tree good 0-1 "0 470 10_20" "1 500 20_10")
expect "2 nodes: pass" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 1 --node-mem-mib 512,512
expect "2 nodes: one memory figure for all" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 1 --node-mem-mib 512
expect "2 nodes: memory not given, reported" 0 "info node1 MemTotal 500.0 MiB" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 1
expect "2 nodes: wrong cpu count" 1 "FAIL cpus online 2 \(0-1\), expected 4" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 2 --node-mem-mib 512
expect "2 nodes: expected 3" 1 "FAIL nodes 2 under .*expected 3" -- \
  "$numa_check" --root "$good" --nodes 3 --cpus-per-node 1,0,1 --node-mem-mib 512
expect "2 nodes: explicit cpulists swapped" 1 "FAIL node0 cpus 0, expected 1" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 1 --cpulists 1:0
expect "2 nodes: node RAM smaller than MemTotal" 1 "FAIL node1 MemTotal 500.0 MiB, RAM 480 MiB" -- \
  "$numa_check" --root "$good" --nodes 2 --cpus-per-node 1 --node-mem-mib 512,480
swapped=$(tree swapped 0-1 "1 470 10_20" "0 500 20_10")
expect "swapped cpus: explicit cpulists" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$swapped" --nodes 2 --cpus-per-node 1 --cpulists 1:0 --node-mem-mib 512
expect "swapped cpus: default numbering" 1 "FAIL node0 cpus 1, expected 0" -- \
  "$numa_check" --root "$swapped" --nodes 2 --cpus-per-node 1 --node-mem-mib 512
# Node 0 lost 112 MiB: more than its allowance (3% of 512 + 8 + 48 = 71 MiB).
greedy=$(tree greedy 0-1 "0 400 10_20" "1 500 20_10")
expect "kernel's share too big" 1 "FAIL node0 MemTotal 400.0 MiB, RAM 512 MiB, kernel's share 112.0 MiB \(allowed 71, kernel image's node\)" -- \
  "$numa_check" --root "$greedy" --nodes 2 --cpus-per-node 1 --node-mem-mib 512
# With KASLR the kernel image may sit in another node's RAM (seen on node 2 of 3 in the
# lab: 40 MiB there, 9 on node 0): that node gets the image's allowance, node 0 does not.
image2=$(tree image2 0-2 "0 503 10_20_20" "1 504 20_10_20" "2 472 20_20_10")
expect "kernel image on node 2" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$image2" --nodes 3 --cpus-per-node 1 --node-mem-mib 512
# Only one node gets it: two nodes that lost 40 MiB each are one too many.
image12=$(tree image12 0-2 "0 503 10_20_20" "1 472 20_10_20" "2 472 20_20_10")
expect "two nodes lost as much as an image" 1 "FAIL node(1|2) MemTotal 472.0 MiB, RAM 512 MiB, kernel's share 40.0 MiB \(allowed 23\)" -- \
  "$numa_check" --root "$image12" --nodes 3 --cpus-per-node 1 --node-mem-mib 512
expect "a bigger allowance" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$greedy" --nodes 2 --cpus-per-node 1 --node-mem-mib 512 --slack-mib 100
# /proc/meminfo disagrees with the nodes.
mismatch=$(PROC_MIB=900 tree mismatch 0-1 "0 470 10_20" "1 500 20_10")
expect "MemTotal is not the nodes' sum" 1 "FAIL MemTotal 900.0 MiB \(sum of nodes 970.0 MiB\)" -- \
  "$numa_check" --root "$mismatch" --nodes 2 --cpus-per-node 1 --node-mem-mib 512
flat=$(tree flat 0-1 "0 470 10_10" "1 500 10_10")
expect "no remote distance" 1 "FAIL node1 distances 10 10" -- \
  "$numa_check" --root "$flat" --nodes 2 --cpus-per-node 1 --node-mem-mib 512
three=$(tree three 0-3 "0-1 470 10_20_20" "2 500 20_10_20" "3 500 20_20_10")
expect "3 nodes, uneven cpus" 0 "^numa-check: PASS$" -- \
  "$numa_check" --root "$three" --nodes 3 --cpus-per-node 2,1,1 --node-mem-mib 512
expect "bad usage" 2 "--cpus-per-node has 2 figures for 3 nodes" -- \
  "$numa_check" --root "$three" --nodes 3 --cpus-per-node 2,1

# wakeup-bench --numa on this machine's CPUs 0 and 1 with fake node assignments.
one=$(tree one 0-1 "0-1 900 10")
expect "wakeup: one node" 3 "one NUMA node: no cross-node pair" -- \
  "$wakeup_bench" --numa --sysfs "$one/sys" -n 200
expect "wakeup: one node, same-node figure" 3 "^RESULT wakeup_same_node_us [0-9.]+ us$" -- \
  "$wakeup_bench" --numa --sysfs "$one/sys" -n 200
expect "wakeup: one cpu per node" 3 "^RESULT wakeup_cross_node_us [0-9.]+ us$" -- \
  "$wakeup_bench" --numa --sysfs "$good/sys" -n 200
# Overlapping nodes (not a real machine): both pairs exist on two CPUs.
both=$(tree both 0-1 "0-1 470 10_20" "1 500 20_10")
expect "wakeup: both pairs, ratio" 0 "^RESULT wakeup_cross_vs_same_node_ratio [0-9.]+$" -- \
  "$wakeup_bench" --numa --sysfs "$both/sys" -n 200 -k 4
exit $failed
