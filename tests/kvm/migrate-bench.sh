#!/bin/sh
# usage: migrate-bench.sh VMM_LAUNCH KVCTL KV_TRANSPORT_RTT SMP_COUNT_GUEST_TIMED MIGRATIONS
# (POSIX sh: runs in a lab host too; scripts/bench/migrate runs it.)
#
# The timed SMP count guest over 2 nodes of this host (vmm-launch --local), vCPU 0 on node
# 0 and vCPU 1 on node 1, each adding to a counter on its own page and timing, with the
# guest TSC, every gap between two additions. Measured in one run:
#   floor   the transport's round trip with a payload of the vCPU state's size (TCP on
#           127.0.0.1, kv-transport-rtt), as the goal compares against;
#   pause   MIGRATIONS moves of vCPU 1 (node 1 -> 0 -> 1 ...), the pause each took as the
#           I/O node reports it (pause_ns: from the vCPU's stop to its run on the target);
#   stall   what vCPU 1 saw of them: the time over 0.1 ms in gaps between its additions
#           during the moves, less the same over an equally long time without moves
#           (host preemption), per move; and the longest gap of the whole run.
# Ends with RESULT lines.
set -u
vmm=$1 kvctl=$2 rtt=$3 image=$4 count=$5 name=bench/migrate
. "$(dirname "$0")/vmm-test-lib.sh"
# p50 and p99 (nearest rank) of the numbers in file $1, one a line.
pct() { sort -n "$1" | awk '{ a[NR] = $1 } END { i = int(NR * 0.5 + 0.5); j = int(NR * 0.99 + 0.5); if (i < 1) i = 1; if (j < 1) j = 1; print a[i], a[j] }'; }

cluster_conf "1 1"
"$vmm" --config "$dir/guest.conf" --local </dev/null >"$dir/out" 2>&1 &
pid=$!
i=0
until [ -S "$sock" ] && [ "$(read_u64 0x101010 2>/dev/null)" = 2 ]; do
  kill -0 "$pid" 2>/dev/null || fail "vmm-launch ended before the guest counted"
  i=$((i + 1))
  [ $i -lt 300 ] || fail "the guest's 2 vCPUs did not start counting within 30 s"
  sleep 0.1
done
khz=$(ctl --json stats | grep -o '"tsc_khz": *[0-9]*' | head -n 1 | tr -dc 0-9)
[ -n "$khz" ] && [ "$khz" -gt 0 ] || fail "the I/O node does not say the TSC's rate"
page=0x111000 # vCPU 1 (APIC ID 1): +8 longest gap, +16 gaps over 0.1 ms, +24 their sum
over() { read_u64 $((page + 24)); }

# The moves, timed; then as long without moves.
n=0
while [ $n -lt "$count" ]; do
  if [ $((n % 2)) = 0 ]; then echo "migrate 1 0"; else echo "migrate 1 1"; fi
  n=$((n + 1))
done >"$dir/script"
[ $((count % 2)) = 1 ] && echo "migrate 1 1" >>"$dir/script"
s0=$(over)
t0=$(now_ns)
ctl <"$dir/script" >"$dir/moves" 2>&1 || fail "a migration failed: $(grep -m1 kvctl "$dir/moves")"
t1=$(now_ns)
s1=$(over)
quiet_ns=$((t1 - t0))
sleep "$(awk -v ns=$quiet_ns 'BEGIN { printf "%.3f", ns / 1e9 }')"
s2=$(over)
moved=$(grep -c '^moved: true$' "$dir/moves")
[ "$moved" -ge "$count" ] || fail "$moved of $count moves were made"
state=$(sed -n 's/^state_bytes: //p' "$dir/moves" | head -n 1)
grep '^pause_ns: ' "$dir/moves" | cut -d' ' -f2 >"$dir/pause"
set -- $(pct "$dir/pause")
p50=$1 p99=$2
longest=$(read_u64 $((page + 8)))
ctl powerdown >/dev/null
ctl quit >/dev/null
wait "$pid"
pid=

"$rtt" --bytes "$state" --samples 2000 >"$dir/rtt" 2>/dev/null || fail "kv-transport-rtt failed"
floor=$(sed -n 's/^rtt_p50_ns //p' "$dir/rtt")
floor99=$(sed -n 's/^rtt_p99_ns //p' "$dir/rtt")
awk -v p50=$p50 -v p99=$p99 -v floor=$floor -v floor99=$floor99 -v n=$moved -v state=$state \
  -v khz=$khz -v mig=$((s1 - s0)) -v quiet=$((s2 - s1)) -v longest=$longest -v qns=$quiet_ns 'BEGIN {
  tick_us = 1000 / khz
  stall = (mig - quiet) * tick_us / n
  if (stall < 0) stall = 0
  printf "floor: a %d-byte round trip on the TCP transport: p50 %.1f us, p99 %.1f us\n", state, floor / 1000, floor99 / 1000
  printf "pause: %d moves of vCPU 1 between 2 nodes of this host: p50 %.1f us (%.2fx the floor), p99 %.1f us\n", n, p50 / 1000, p50 / floor, p99 / 1000
  printf "stall: vCPU 1 lost %.1f us a move to gaps over 0.1 ms (%.1f ms in %.2f s of moves, %.1f ms in as long without), longest gap %.1f us\n", stall, mig * tick_us / 1000, qns / 1e9, quiet * tick_us / 1000, longest * tick_us
  printf "RESULT migrate_floor_rtt_us %.1f us\n", floor / 1000
  printf "RESULT migrate_pause_p50_us %.1f us\n", p50 / 1000
  printf "RESULT migrate_pause_p99_us %.1f us\n", p99 / 1000
  printf "RESULT migrate_pause_p50_ratio %.2f\n", p50 / floor
  printf "RESULT migrate_guest_stall_us %.1f us\n", stall
}'
