#!/bin/sh
# usage: snapshot-run.sh VMM_LAUNCH KVCTL SMP_COUNT_GUEST   (POSIX sh: runs in a lab host too)
#
# Checkpoint/restart of a freestanding SMP guest (smp-count-guest.S, 2 vCPUs on one node),
# full and incremental:
# while both vCPUs add to one shared counter, `kvctl snapshot save DIR --stop` writes a
# snapshot and leaves the guest paused; vmm-launch quits. A new vmm-launch --restore DIR
# goes on from there: the counter reads what it stood at and moves on, no vCPU starts
# again (the started count stays 2) and the guest prints nothing again (it did not boot).
# The restored guest is saved again while it runs on (it goes on counting), then
# incrementally from that (--incremental-from, --stop): fewer pages than the full one; one
# from the first snapshot, no longer the last, is refused; the guest restored from the
# chain counts on from the incremental save. The power button
# then stops both vCPUs and the count is exact (the shared counter equals the sum of what
# each vCPU added, across both restores: memory and registers came back together). A restore into another guest (other memory) and a
# snapshot with a damaged part are refused with a message naming what is wrong and a
# non-zero exit; so is a save into a missing directory, which leaves the guest running.
# Prints "snapshot: PASS" and exits 0, or names the step that failed.
set -u
vmm=$1 kvctl=$2 image=$3 name=snapshot
. "$(dirname "$0")/vmm-test-lib.sh"
snap=$dir/snap
launch() {
  rm -f "$sock"
  "$vmm" --kernel "$image" --memory 64M --vcpus 2 --console "file:$dir/console" \
    --control "$sock" "$@" </dev/null >"$dir/out" 2>&1 &
  pid=$!
}

launch
wait_console 'smp-count-guest: counting'
wait_at_least 0x101010 2 || fail "not both vCPUs started counting"
wait_at_least 0x101000 100000 || fail "the counter did not reach 100000"
# A save that cannot be written fails, naming the directory, and leaves the guest running.
if ctl snapshot save "$dir/no/such/dir/snap" --stop >"$dir/failed" 2>&1; then fail "a save into a missing directory worked"; fi
grep -q "$dir/no/such/dir" "$dir/failed" || fail "the failed save does not name the directory: $(cat "$dir/failed")"
ctl status | grep -qx 'status: running' || fail "a failed save with --stop left the guest paused"
ctl snapshot save "$snap" --stop >"$dir/save" 2>&1 || fail "snapshot save failed: $(cat "$dir/save")"
grep -qx 'status: paused' "$dir/save" || fail "the guest is not left paused: $(cat "$dir/save")"
ctl status | grep -qx 'status: paused' || fail "status is not paused after snapshot save --stop"
saved=$(read_u64 0x101000)
[ -f "$snap/manifest.json" ] || fail "no manifest.json in the snapshot"
echo "snapshot: saved at counter $saved: $(tr '\n' ' ' <"$dir/save")"
ctl quit >/dev/null || fail "quit failed"
ended 0
lines=$(wc -l <"$dir/console")

launch --restore "$snap"
wait_control "the restored guest" # it prints nothing
first=$(read_u64 0x101000)
[ -n "$first" ] && [ "$first" -ge "$saved" ] || fail "the restored counter reads $first, below the saved $saved"
wait_at_least 0x101000 $((saved + 100000)) || fail "the restored counter does not move on from $saved"
[ "$(read_u64 0x101010)" = 2 ] || fail "the started count is $(read_u64 0x101010) after the restore, not 2 (did it boot again?)"
[ "$(wc -l <"$dir/console")" = "$lines" ] || fail "the restored guest printed again (it booted): $(tail -n 2 "$dir/console")"
# A full snapshot of the restored guest while it runs on (no --stop: it goes on
# counting), then an incremental one from it with --stop: only the pages written since
# (its counter and the vCPUs' own pages), far fewer than the full one. One from the first
# snapshot, no longer the last, is refused.
ctl snapshot save "$dir/live" >"$dir/lsave" 2>&1 || fail "the save of the running guest failed: $(cat "$dir/lsave")"
grep -qx 'status: running' "$dir/lsave" || fail "the guest does not run on after the save: $(cat "$dir/lsave")"
c=$(read_u64 0x101000)
wait_at_least 0x101000 $((c + 100000)) || fail "the guest does not count on after the save"
full=$(sed -n 's/^pages: //p' "$dir/lsave")
if ctl snapshot save "$dir/bad" --incremental-from "$snap" >"$dir/refused" 2>&1; then
  fail "an incremental snapshot from a parent older than the last one was taken"
fi
grep -q "is not the last snapshot" "$dir/refused" || fail "the refusal does not say why: $(cat "$dir/refused")"
ctl snapshot save "$dir/incr" --incremental-from "$dir/live" --stop >"$dir/isave" 2>&1 || fail "the incremental save failed: $(cat "$dir/isave")"
incr=$(sed -n 's/^pages: //p' "$dir/isave")
echo "snapshot: incremental: $incr pages written since the parent, the full snapshot had $full"
[ -n "$incr" ] && [ "$incr" -ge 1 ] && [ "$incr" -lt "$full" ] || fail "the incremental snapshot has $incr pages, the full one $full"
grep -q '"parent": "../live"' "$dir/incr/manifest.json" || fail "the incremental snapshot does not name its parent ../live"
isaved=$(read_u64 0x101000)
ctl quit >/dev/null || fail "quit failed"
ended 0

# Restored from the chain ($dir/live, then $dir/incr): it goes on from the incremental one.
launch --restore "$dir/incr"
wait_control "the guest restored from the chain"
second=$(read_u64 0x101000)
[ -n "$second" ] && [ "$second" -ge "$isaved" ] || fail "restored from the chain, the counter reads $second, below $isaved (the incremental save's)"
wait_at_least 0x101000 $((isaved + 100000)) || fail "the guest restored from the chain does not count on"
ctl powerdown >/dev/null || fail "powerdown failed"
wait_at_least 0x101008 2 || fail "not both vCPUs stopped counting after the power button"
total=$(read_u64 0x101000)
sum=$(($(read_u64 0x110000) + $(read_u64 0x111000)))
echo "snapshot: restored at $first, then from the chain at $second; counter $total, the vCPUs' own counts add up to $sum"
[ "$total" = "$sum" ] || fail "the shared counter ($total) is not the sum of the vCPUs' additions ($sum)"
ctl quit >/dev/null || fail "quit failed"
ended 0

# Refusals: another guest; a damaged part. Each names what is wrong; nothing runs.
"$vmm" --kernel "$image" --memory 128M --vcpus 2 --console none --restore "$snap" \
  </dev/null >"$dir/refused" 2>&1 && fail "a snapshot of a 64M guest was restored into a 128M one"
grep -q "another guest" "$dir/refused" || fail "the refusal does not say why: $(cat "$dir/refused")"
part=$snap/memory-node-0
printf 'X' | dd of="$part" bs=1 seek=$(($(wc -c <"$part") / 2)) conv=notrunc 2>/dev/null
"$vmm" --kernel "$image" --memory 64M --vcpus 2 --console none --restore "$snap" \
  </dev/null >"$dir/refused" 2>&1 && fail "a snapshot with a damaged part was restored"
grep -q "memory-node-0: checksum mismatch" "$dir/refused" || fail "the refusal does not name the part: $(cat "$dir/refused")"
echo "snapshot: PASS"
