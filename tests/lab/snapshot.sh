#!/usr/bin/env bash
# Checkpoint/restart of a Linux guest over 2 lab hosts: the guest runs a computation in 8
# steps (parallel-work rounds of growing size; each step's checksum line is kept in the
# guest's /tmp) and prints the MD5 of those lines at the end. After step 3, kvctl on host
# 0 saves a snapshot with --stop; then node 1's vmm-launch is killed (kill -9), and node
# 0's must stop by itself within 10 s naming node 1 as lost (what cluster.hosts2.kill-node
# checks with a running guest, here with a paused one; one lab run serves both, since each
# boot over 2 hosts costs minutes and a CI run must stay under 45). The snapshot is restored on 1 host (a cluster config of one node with the
# guest's 2 vCPUs and all its RAM), and again on the 2 hosts; each restored guest goes on
# from step 4 and ends by itself.
#
# snapshot.sh PARALLEL_WORK_NATIVE [LAB-BOOT-OPTION...]   (cluster.hosts2.snapshot)
# Passes when: every control step succeeded (KV-LAB-CONTROL-STATUS=0), both restored runs
# printed the checksum that the same computation gives when run here without a break
# (PARALLEL_WORK_NATIVE is guest-image/programs/parallel-work.c built for this machine),
# neither printed a step from before the snapshot again (the guest went on; it did not
# boot), the guest's uptime at its first step after each restore is no less than at its
# last step before the save (its clock did not step back), node 1 sent its pages (the
# hosts share no file system), node 0 stopped within 10 s of node 1's kill and said
# "node 1 lost", both guests reported status 0 and vmm-launch exited 0
# after each restore; and in a third restore on the 2 hosts, cut off mid-run when host 1's
# link goes down (no reset, no FIN: the heartbeat is all that tells), node 0 stopped by
# itself within 10 s with an error saying node 1 went silent, and exited non-zero.
set -uo pipefail
native=$1
shift
[[ -x $native ]] || { echo "snapshot: FAIL: $native is missing (build parallel-work-native)" >&2; exit 1; }
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
script=$(mktemp /tmp/kv-snapshot-script.XXXXXX)
out=$(mktemp /tmp/kv-snapshot-out.XXXXXX)
sums=$(mktemp /tmp/kv-snapshot-sums.XXXXXX)
trap 'rm -f "$script" "$out" "$sums"' EXIT
for i in 1 2 3 4 5 6 7 8; do
  "$native" -u "${i}0" -m 2 | grep -o 'checksum.[0-9a-f]*' | sort -u >>"$sums"
done
want=$(md5sum <"$sums" | cut -c1-32)
echo "snapshot: the computation's checksum, run here: $want"

cat >"$script" <<'SCRIPT'
set -e
wait_console 'KV-STEP-3' 1800 'KV-EXIT-STATUS'
kvctl snapshot save /tmp/snap --stop
# Every node is killed: all that is left of the guest is the snapshot.
lab_node 1 kill
killed=$(date +%s)
while pidof vmm-launch >/dev/null && [ $(($(date +%s) - killed)) -lt 30 ]; do sleep 0.2; done
if pidof vmm-launch >/dev/null; then
  echo "KV-NODE0-STILL-RUNNING"
  killall -9 vmm-launch
else
  echo "KV-NODE0-STOPPED-AFTER-KILL=$(($(date +%s) - killed))s"
fi
grep -E 'node 1 lost' /run/kv-console.log | head -n 3 | sed 's/^/node0: /'
ls /tmp/snap
opts=$(cat /kv/vmm-options)
cmdline=$(cat /kv/cmdline)
# One node with every vCPU and all the RAM of the nodes in /kv/cluster.conf.
vcpus=$(sed -n 's/^vcpus = //p' /kv/cluster.conf | awk '{ s += $1 } END { print s }')
mib=$(sed -n 's/^memory = \([0-9]*\)M$/\1/p' /kv/cluster.conf | awk '{ s += $1 } END { print s }')
{
  awk '/^\[node\./ { exit } { print }' /kv/cluster.conf
  printf '[node.0]\naddress = 127.0.0.1\nport = 7700\nvcpus = %s\nmemory = %sM\n' "$vcpus" "$mib"
} >/tmp/one-node.conf
# restore WHERE CONFIG: node 0 restored from the snapshot over CONFIG until the guest
# ends; its console's step and checksum lines are shown with WHERE in front.
restore() {
  status=0
  # shellcheck disable=SC2086 # the options are words
  timeout 1200 vmm-launch --config "$2" --node 0 --cmdline "$cmdline" $opts --restore /tmp/snap \
    >"/tmp/restore-$1.log" 2>&1 || status=$?
  tr -d '\r' <"/tmp/restore-$1.log" | grep -E 'KV-STEP-|KV-SUM-|KV-EXIT-STATUS|vmm-launch|restore' |
    sed "s/^/$1: /"
  echo "$1: KV-RESTORE-VMM-STATUS=$status"
}
restore one-host /tmp/one-node.conf
lab_node 1 run
restore two-hosts /kv/cluster.conf
# Once more on the 2 hosts, and once the restored guest is running, host 1 is cut off the
# network (lab_node 1 silence): no reset, no FIN, nothing more from node 1. Node 0 hears
# no heartbeat and must stop by itself within 10 s, naming node 1.
lab_node 1 run
# shellcheck disable=SC2086 # the options are words
timeout 300 vmm-launch --config /kv/cluster.conf --node 0 --cmdline "$cmdline" $opts \
  --restore /tmp/snap >/tmp/restore-silenced.log 2>&1 &
silenced_vmm=$!
deadline=$(($(date +%s) + 600))
until grep -q 'KV-STEP-4' /tmp/restore-silenced.log; do
  kill -0 $silenced_vmm 2>/dev/null || { echo "KV-SILENCED-RUN-ENDED-EARLY"; break; }
  [ "$(date +%s)" -lt "$deadline" ] || { echo "KV-SILENCED-RUN-NO-STEP"; break; }
  sleep 0.2 # polling a log another process writes
done
lab_node 1 silence
silenced=$(date +%s)
while kill -0 $silenced_vmm 2>/dev/null && [ $(($(date +%s) - silenced)) -lt 30 ]; do sleep 0.2; done
if kill -0 $silenced_vmm 2>/dev/null; then
  echo "KV-NODE0-STILL-RUNNING-SILENCED"
  kill -9 $silenced_vmm
else
  echo "KV-NODE0-STOPPED-AFTER-SILENCE=$(($(date +%s) - silenced))s"
fi
status=0
wait $silenced_vmm || status=$?
echo "silenced: KV-RESTORE-VMM-STATUS=$status"
tr -d '\r' </tmp/restore-silenced.log | grep -E 'node 1' | head -n 3 | sed 's/^/silenced: /'
SCRIPT
guest='for i in 1 2 3 4 5 6 7 8; do parallel-work -u ${i}0 -m 2|grep -o checksum.[0-9a-f]*|sort -u>>/tmp/s;read u x </proc/uptime;echo KV-STEP-$i $u;done;echo KV-SUM-$(md5sum</tmp/s)'
"$lab" boot --control-script "$script" "$@" -- "$guest" 2>&1 | tee "$out"

name=snapshot
. "$(dirname "$0")/check-lib.sh"
check "every control step succeeded" '^KV-LAB-CONTROL-STATUS=0$'
check "the snapshot was saved with the guest paused" '^ctl: status: paused$'
# The hosts share no file system: node 1 sent its pages to node 0.
check "node 1 sent its pages (it does not reach host 0's directory)" '^ctl: node_parts: 0$'
check "node 0 named node 1 lost after its kill" '^ctl: node0: .*node 1 lost'
after_kill=$(sed -n 's/^ctl: KV-NODE0-STOPPED-AFTER-KILL=\([0-9]*\)s.*/\1/p' "$out" | tail -n 1)
if [[ -z $after_kill ]]; then
  echo "snapshot: FAIL: node 0 did not stop by itself within 30 s of node 1's kill" >&2
  ok=0
elif ((10#$after_kill >= 10)); then
  echo "snapshot: FAIL: node 0 stopped ${after_kill} s after node 1's kill (limit 10 s)" >&2
  ok=0
else
  echo "snapshot: node 0 stopped ${after_kill} s after node 1's kill, naming it"
fi
check "node 0 named node 1 silent after its link went down" '^ctl: silenced: .*node 1: silent for'
after_silence=$(sed -n 's/^ctl: KV-NODE0-STOPPED-AFTER-SILENCE=\([0-9]*\)s.*/\1/p' "$out" | tail -n 1)
if [[ -z $after_silence ]]; then
  echo "snapshot: FAIL: node 0 did not stop by itself within 30 s of host 1's link going down" >&2
  ok=0
elif ((10#$after_silence >= 10)); then
  echo "snapshot: FAIL: node 0 stopped ${after_silence} s after host 1's link went down (limit 10 s)" >&2
  ok=0
else
  echo "snapshot: node 0 stopped ${after_silence} s after host 1 went silent, naming it"
fi
if grep -q '^ctl: silenced: KV-RESTORE-VMM-STATUS=0$' "$out"; then
  echo "snapshot: FAIL: node 0 exited 0 although node 1 went silent" >&2
  ok=0
fi
for where in one-host two-hosts; do
  check "restored on $where, the guest printed the checksum of a run without a break" "^ctl: $where: KV-SUM-$want"
  check "restored on $where, the guest went on to the last step" "^ctl: $where: KV-STEP-8"
  if grep -Eq "^ctl: $where: KV-STEP-[123] " "$out"; then
    echo "snapshot: FAIL: restored on $where, the guest printed a step from before the snapshot again (it booted)" >&2
    ok=0
  fi
  check "restored on $where, the guest reported status 0" "^ctl: $where: KV-EXIT-STATUS=0"
  check "restored on $where, vmm-launch exited 0" "^ctl: $where: KV-RESTORE-VMM-STATUS=0$"
done
# The guest's clock (its uptime at each step) goes on from where it was at the save.
before=$(grep -av '^ctl:' "$out" | tr -d '\r' | sed -n 's/.*KV-STEP-[0-9]* \([0-9.]*\).*/\1/p' | tail -n 1)
for where in one-host two-hosts; do
  after=$(grep -a "^ctl: $where: KV-STEP-" "$out" | head -n 1 | sed -n 's/.*KV-STEP-[0-9]* \([0-9.]*\).*/\1/p')
  echo "snapshot: uptime at the last step before the save ${before:-?} s, at the first restored on $where ${after:-?} s"
  if [[ -z $before || -z $after ]] || ! awk -v a="$after" -v b="$before" 'BEGIN { exit !(a >= b) }'; then
    echo "snapshot: FAIL: restored on $where, the guest's clock stepped back (or a step printed no uptime)" >&2
    ok=0
  fi
done
((ok)) && echo "snapshot: ok"
((ok))
