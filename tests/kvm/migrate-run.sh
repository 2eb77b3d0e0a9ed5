#!/bin/sh
# usage: migrate-run.sh VMM_LAUNCH KVCTL SMP_COUNT_GUEST   (POSIX sh: runs in a lab host too)
#
# A freestanding SMP guest (smp-count-guest.S) over 4 nodes of this host (vmm-launch
# --local): vCPU 0 on node 0, vCPUs 1 and 2 on node 1, vCPU 3 on node 2, vCPU 4 on node 3,
# all five adding to one shared counter with lock xadd (its page moves between the
# nodes). kvctl moves vCPU 1 round the nodes 25 times (100 migrations: the I/O node
# the target, the source and neither) while they count; query-vcpus shows it where it
# was sent; a listening client gets a VCPU_MIGRATION "completed" event for each move.
# vCPU 2, pinned by [vcpu.2] migrate = no, is refused with an error saying so until
# set-vcpu-capability frees it, then moves. Then the power button stops the counting and
# the count must be exact: the shared counter equals the sum of what each vCPU added.
# `quit` ends vmm-launch with status 0.
# Prints "migrate: PASS" and exits 0, or names the step that failed and exits 1.
set -u
vmm=$1 kvctl=$2 image=$3 name=migrate
. "$(dirname "$0")/vmm-test-lib.sh"
vcpu1_on() { ctl vcpus | awk '$1 == "1" { print $2 }'; }

cluster_conf "1 2 1 1" '[vcpu.2]' 'migrate = no'
"$vmm" --config "$dir/guest.conf" --local </dev/null >"$dir/out" 2>&1 &
pid=$!
wait_console 'smp-count-guest: counting'
wait_at_least 0x101010 5 || fail "not every vCPU started counting"
[ "$(vcpu1_on)" = 1 ] || fail "vCPU 1 is not on node 1 at the start"

# A client listening for events, subscribed before the first move.
listen_events
before=$(read_u64 0x101000)
# One kvctl for the 100 moves (its console reading a script): vCPU 1 round the nodes,
# 1 -> 0 -> 2 -> 3 -> 1, so that the I/O node is the target, the source, and neither
# (with the other nodes told of each move before the vCPU runs again).
n=0
while [ $n -lt 25 ]; do
  printf 'migrate 1 0\nmigrate 1 2\nmigrate 1 3\nmigrate 1 1\n'
  n=$((n + 1))
done >"$dir/script"
ctl <"$dir/script" >"$dir/moves" 2>&1 || fail "a migration failed: $(grep -m1 kvctl "$dir/moves")"
moved=$(grep -c '^moved: true$' "$dir/moves")
[ "$moved" = 100 ] || fail "$moved of 100 migrations answered 'moved: true'"
[ "$(vcpu1_on)" = 1 ] || fail "query-vcpus does not show vCPU 1 back on node 1"
for k in 2 0 1; do
  ctl migrate 1 $k >/dev/null || fail "the migration to node $k failed"
  [ "$(vcpu1_on)" = $k ] || fail "query-vcpus does not show vCPU 1 on node $k"
done
# vCPU 2 is pinned ([vcpu.2] migrate = no) until set-vcpu-capability frees it.
ctl vcpus | awk '$1 == "2" && $NF != "false" { exit 1 }' || fail "query-vcpus does not show vCPU 2 pinned"
if ctl migrate 2 0 >"$dir/refused" 2>&1; then fail "a pinned vCPU was moved"; fi
grep -q 'may not migrate' "$dir/refused" || fail "the refusal does not say why: $(cat "$dir/refused")"
ctl capability 2 yes >/dev/null || fail "set-vcpu-capability failed"
ctl migrate 2 0 >/dev/null || fail "vCPU 2 did not move once free"
[ "$(ctl vcpus | awk '$1 == "2" { print $2 }')" = 0 ] || fail "query-vcpus does not show vCPU 2 on node 0"
after=$(read_u64 0x101000)
[ "$after" -gt "$before" ] || fail "the counter did not move during the migrations ($before, $after)"
[ "$(read_u64 0x101008)" = 0 ] || fail "a vCPU stopped counting before the power button"

ctl powerdown >/dev/null || fail "powerdown failed"
wait_at_least 0x101008 5 || fail "not every vCPU stopped counting after the power button"
total=$(read_u64 0x101000)
sum=0
for page in 0x110000 0x111000 0x112000 0x113000 0x114000 0x115000 0x116000 0x117000; do
  sum=$((sum + $(read_u64 $page)))
done
echo "migrate: counter $total, the vCPUs' own counts add up to $sum (counted $before before the 100 migrations, $after after)"
[ "$total" = "$sum" ] || fail "the shared counter ($total) is not the sum of the vCPUs' additions ($sum)"
# 104 moves in all (100, three more, vCPU 2 once freed): 104 "completed" events (the
# refused move sends none).
completed() { grep -c '"event":"VCPU_MIGRATION".*"status":"completed"' "$dir/events"; }
i=0
until [ "$(completed)" -ge 104 ]; do
  i=$((i + 1))
  [ $i -lt 100 ] || fail "$(completed) VCPU_MIGRATION completed events, 104 expected"
  sleep 0.1
done
kill "$events"
grep '^pause_ns: ' "$dir/moves" | sort -n -k2 | awk '{ a[NR] = $2 } END { printf "migrate: pause p50 %d us, max %d us\n", a[int((NR + 1) / 2)] / 1000, a[NR] / 1000 }'
ctl quit >/dev/null || fail "quit failed"
wait "$pid"
status=$?
pid=
[ $status = 0 ] || fail "vmm-launch exited $status after quit"
echo "migrate: PASS"
