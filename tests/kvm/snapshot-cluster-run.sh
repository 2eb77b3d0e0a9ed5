#!/bin/sh
# usage: snapshot-cluster-run.sh VMM_LAUNCH KVCTL SMP_COUNT_GUEST   (POSIX sh: runs in a lab
# host too)
#
# Checkpoint/restart of a freestanding SMP guest over several nodes (vmm-launch --local:
# one process per node on this host). The SMP count guest runs with 3 vCPUs over 2 nodes
# (2 + 1, 96M each). Saved while it runs (a memory part per node and a part per vCPU, the
# one on node 1 included), it counts on; then saved incrementally from that with --stop:
# only the pages some node's vCPUs wrote since, far fewer. Then restored from that chain
# three times, each by a new vmm-launch: on the same 2 nodes, on 1 node (a
# cluster config of one [node.0] with 3 vCPUs and 192M) and on 3 nodes (1 vCPU and 64M
# each). Each time the counter goes on from at least the saved value, no vCPU starts
# again (the started count stays 3), the guest prints nothing (it did not boot), and
# after the power button the shared counter equals the sum of the three vCPUs' own
# counts (memory and registers came back together, whichever node each vCPU and each
# page landed on). A layout that would give a vCPU another APIC ID (1 + 2) and a config
# without [node.K] sections are refused with a message saying so.
# Prints "snapshot-cluster: PASS" and exits 0, or names the step that failed.
set -u
vmm=$1 kvctl=$2 image=$3 name=snapshot-cluster
. "$(dirname "$0")/vmm-test-lib.sh"
snap=$dir/snap
launch() { # launch VCPU_COUNTS NODE_MEMORY [ARG...]: vmm-launch --local over those nodes
  node_memory=$2 cluster_conf "$1"
  shift 2
  rm -f "$sock"
  "$vmm" --config "$dir/guest.conf" --local "$@" </dev/null >"$dir/out" 2>&1 &
  pid=$!
}

launch "2 1" 96M
wait_console 'smp-count-guest: counting'
wait_at_least 0x101010 3 || fail "not every vCPU started counting"
wait_at_least 0x101000 100000 || fail "the counter did not reach 100000"
ctl snapshot save "$dir/live" >"$dir/lsave" 2>&1 || fail "the save of the running guest failed: $(cat "$dir/lsave")"
grep -qx 'status: running' "$dir/lsave" || fail "the guest does not run on after the save: $(cat "$dir/lsave")"
for part in memory-node-0 memory-node-1 vcpu-0 vcpu-1 vcpu-2 machine.json; do
  [ -f "$dir/live/$part" ] || fail "no part $part in the snapshot: $(ls "$dir/live")"
done
# The nodes share this host's file system: node 1 wrote its part itself.
grep -qx 'node_parts: 1' "$dir/lsave" || fail "node 1 did not write its own memory part: $(cat "$dir/lsave")"
grep -q '"nodes": 2' "$dir/live/manifest.json" || fail "the manifest does not say 2 nodes: $(cat "$dir/live/manifest.json")"
c=$(read_u64 0x101000)
wait_at_least 0x101000 $((c + 100000)) || fail "the guest does not count on after the save"
full=$(sed -n 's/^pages: //p' "$dir/lsave")
ctl snapshot save "$snap" --incremental-from "$dir/live" --stop >"$dir/save" 2>&1 || fail "the incremental save failed: $(cat "$dir/save")"
grep -qx 'status: paused' "$dir/save" || fail "the guest is not left paused: $(cat "$dir/save")"
incr=$(sed -n 's/^pages: //p' "$dir/save")
echo "snapshot-cluster: incremental: $incr pages written since the parent, the full snapshot had $full"
[ -n "$incr" ] && [ "$incr" -ge 1 ] && [ "$incr" -lt "$full" ] || fail "the incremental snapshot has $incr pages, the full one $full"
grep -q '"parent": "../live"' "$snap/manifest.json" || fail "the incremental snapshot does not name its parent ../live"
saved=$(read_u64 0x101000)
echo "snapshot-cluster: saved at counter $saved: $(tr '\n' ' ' <"$dir/save")"
ctl quit >/dev/null || fail "quit failed"
ended 0
lines=$(wc -l <"$dir/console")

# restored COUNTS MEMORY: restores $snap (and its parent) over that layout and checks it
# goes on exactly.
restored() {
  launch "$1" "$2" --restore "$snap"
  wait_control "the guest restored over nodes '$1'"
  first=$(read_u64 0x101000)
  [ -n "$first" ] && [ "$first" -ge "$saved" ] || fail "over '$1': the restored counter reads $first, below the saved $saved"
  wait_at_least 0x101000 $((saved + 100000)) || fail "over '$1': the restored counter does not move on from $saved"
  [ "$(read_u64 0x101010)" = 3 ] || fail "over '$1': the started count is $(read_u64 0x101010), not 3 (did it boot again?)"
  [ "$(wc -l <"$dir/console")" = "$lines" ] || fail "over '$1': the restored guest printed again (it booted): $(tail -n 2 "$dir/console")"
  ctl powerdown >/dev/null || fail "over '$1': powerdown failed"
  wait_at_least 0x101008 3 || fail "over '$1': not every vCPU stopped counting after the power button"
  total=$(read_u64 0x101000)
  sum=$(($(read_u64 0x110000) + $(read_u64 0x111000) + $(read_u64 0x112000)))
  echo "snapshot-cluster: over nodes '$1': restored at $first; counter $total, the vCPUs' own counts add up to $sum"
  [ "$total" = "$sum" ] || fail "over '$1': the shared counter ($total) is not the sum of the vCPUs' additions ($sum)"
  ctl quit >/dev/null || fail "over '$1': quit failed"
  ended 0
}
restored "2 1" 96M
restored "3" 192M
restored "1 1 1" 64M

# Refusals, each naming what is wrong, nothing run: a layout that numbers the vCPUs
# otherwise (1 + 2: vCPU 1 would be APIC ID 2), and a config without [node.K] sections.
node_memory=96M cluster_conf "1 2"
"$vmm" --config "$dir/guest.conf" --local --restore "$snap" </dev/null >"$dir/refused" 2>&1 &&
  fail "a snapshot was restored onto a layout with other APIC IDs"
grep -q "APIC ID" "$dir/refused" || fail "the refusal does not name the APIC IDs: $(cat "$dir/refused")"
"$vmm" --kernel "$image" --memory 192M --vcpus 3 --console none --restore "$snap" \
  </dev/null >"$dir/refused" 2>&1 && fail "a cluster snapshot was restored without [node.K] sections"
grep -q "cluster config" "$dir/refused" || fail "the refusal does not say why: $(cat "$dir/refused")"
echo "snapshot-cluster: PASS"
