#!/bin/sh
# usage: control-run.sh VMM_LAUNCH KVCTL COUNT_GUEST   (POSIX sh: runs in a lab host too)
#
# vmm-launch boots the count guest with a control socket; three times, kvctl stops it
# (status then says paused, every vCPU is paused, and the counter the guest writes stands
# still over 200 ms: the behaviour asserted, not a wait), then continues it (the counter
# moves again, status running); the events STOP and RESUME came to a listening client;
# `quit` ends vmm-launch with status 0. Prints "control: PASS" and exits 0, or names the
# step that failed and exits 1.
set -u
vmm=$1 kvctl=$2 image=$3 name=control
. "$(dirname "$0")/vmm-test-lib.sh"
count() { ctl xp address=0x101000 size=8 | sed -n 's/^value: //p'; }
# Reads the counter until it passes $1, at most 5000 reads (each a round trip).
moves_past() {
  i=0
  while :; do
    c=$(count)
    [ -n "$c" ] || return 1
    [ "$c" -gt "$1" ] && return 0
    i=$((i + 1))
    [ $i -lt 5000 ] || return 1
  done
}

"$vmm" --kernel "$image" --memory 64M --vcpus 1 --control "$sock" </dev/null >"$dir/out" 2>&1 &
pid=$!
# The guest's first line says it counts (the socket is made before the guest starts).
i=0
until grep -q '^count-guest: counting at 0x101000' "$dir/out"; do
  kill -0 "$pid" 2>/dev/null || fail "vmm-launch ended before the guest counted"
  i=$((i + 1))
  [ $i -lt 300 ] || fail "no 'count-guest: counting' line within 30 s"
  sleep 0.1
done
# The events client, subscribed before the first stop (6 events: 3 STOP, 3 RESUME).
listen_events --count 6 --timeout 60
moves_past 0 || fail "the counter never moved"
round=1
while [ $round -le 3 ]; do
  ctl stop || fail "round $round: stop failed"
  ctl status | grep -qx 'status: paused' || fail "round $round: status is not paused after stop"
  ctl vcpus | grep -q ' paused ' || fail "round $round: query-vcpus shows no paused vCPU"
  a=$(count)
  sleep 0.2
  b=$(count)
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "round $round: the counter moved while paused ($a -> $b)"
  ctl cont || fail "round $round: cont failed"
  moves_past "$b" || fail "round $round: the counter did not move after cont (stood at $b)"
  ctl status | grep -qx 'status: running' || fail "round $round: status is not running after cont"
  echo "control: round $round: paused at $b, running again"
  round=$((round + 1))
done
wait "$events" || fail "the events client failed: $(cat "$dir/events.err") (it printed: $(cat "$dir/events"))"
[ "$(grep -c '"event":"STOP"' "$dir/events")" = 3 ] || fail "not 3 STOP events: $(cat "$dir/events")"
[ "$(grep -c '"event":"RESUME"' "$dir/events")" = 3 ] || fail "not 3 RESUME events: $(cat "$dir/events")"
ctl quit || fail "quit failed"
wait "$pid"
status=$?
pid=
[ $status = 0 ] || fail "vmm-launch exited $status after quit, expected 0"
echo "control: PASS"
