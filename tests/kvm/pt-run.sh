#!/bin/sh
# usage: pt-run.sh VMM_LAUNCH KVCTL PT_GUEST   (POSIX sh: runs in a lab host too)
#
# Page tables kept coherent across nodes (tests/kvm/pt-guest.S): vCPU 0 on node 0
# rewrites a page-table entry 1000 times, vCPU 1 on node 1 invalidates its TLB entry and
# reads through it each time; it must read what the new entry maps every time. Catches a
# node whose KVM keeps translations derived from a page table the coherence protocol
# replaced (shadow paging: docs/memory.md, "Page tables under shadow paging"), with
# vmm-launch's shadow-MMU guard on.
# Prints "pt: PASS" and exits 0, or names the step that failed and exits 1.
set -u
vmm=$1 kvctl=$2 image=$3 name=pt
. "$(dirname "$0")/vmm-test-lib.sh"

cluster_conf "1 1"
# The shadow-MMU guard on (vmm-launch turns it on by itself only on shadow paging).
KERRVISOR_SHADOW_GUARD=on "$vmm" --config "$dir/guest.conf" --local </dev/null >"$dir/out" 2>&1 &
pid=$!
wait_console 'pt-guest: checking'
# A round costs a few page transfers: milliseconds in a lab host. At most 3000 polls.
i=0
until [ "$(read_u64 0x101000)" = 1000 ]; do
  kill -0 "$pid" 2>/dev/null || fail "vmm-launch ended before vCPU 1 checked 1000 rounds"
  i=$((i + 1))
  [ $i -lt 3000 ] || fail "vCPU 1 did not check 1000 rounds (checked $(read_u64 0x101000), $(read_u64 0x101008) stale)"
  sleep 0.1
done
errors=$(read_u64 0x101008)
echo "pt: vCPU 1 checked $(read_u64 0x101000) rounds; $errors read a stale mapping"
[ "$errors" = 0 ] ||
  fail "vCPU 1 read through a stale translation in $errors of 1000 rounds (first in round $(read_u64 0x101018), value $(read_u64 0x101010))"
ctl quit >/dev/null || fail "quit failed"
wait "$pid" || fail "vmm-launch ended with status $? after quit"
pid=
echo "pt: PASS"
