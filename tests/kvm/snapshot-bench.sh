#!/bin/sh
# usage: snapshot-bench.sh VMM_LAUNCH KVCTL SMP_COUNT_GUEST_FILL
# (POSIX sh: runs in a lab host too; scripts/bench/snapshot runs it.)
#
# The fill build of the SMP count guest (2 vCPUs, 256 MiB of RAM, of which it fills 64
# MiB with non-zero data before counting) is saved with `kvctl snapshot save`, then
# restored by a new vmm-launch. Measured in one run, on the same file system:
#   save      the command's total_ns (pause, gather, write, fsync, rename, resume) and the
#             pause the guest saw (pause_ns);
#   floor     dd writing the same number of bytes with fsync (conv=fsync), and dd reading
#             the memory part back;
#   restore   what vmm-launch logs for the restore (read, verify, devices, RAM, vCPUs);
#   size      the snapshot's bytes against the guest RAM the guest touched.
# The restored guest must count on (checked). Ends with RESULT lines.
set -u
vmm=$1 kvctl=$2 image=$3 name=bench/snapshot
. "$(dirname "$0")/vmm-test-lib.sh"
now_ns() { date +%s%N; }
snap=$dir/snap
launch() {
  rm -f "$sock"
  "$vmm" --kernel "$image" --memory 256M --vcpus 2 --console "file:$dir/console" \
    --control "$sock" --log-level info "$@" </dev/null >"$dir/out" 2>&1 &
  pid=$!
}
field() { sed -n "s/^$1: //p" "$2"; }

launch
wait_console 'smp-count-guest: counting'
wait_at_least 0x101010 2 || fail "the guest did not fill its memory and start both vCPUs"
ctl snapshot save "$snap" >"$dir/save" 2>&1 || fail "snapshot save failed: $(cat "$dir/save")"
save_ns=$(field total_ns "$dir/save")
pause_ns=$(field pause_ns "$dir/save")
pages=$(field pages "$dir/save")
bytes=$(du -sb "$snap" | awk '{ print $1 }')
ctl quit >/dev/null || fail "quit failed"
wait "$pid"
pid=

mib=$(((bytes + 1048575) / 1048576))
t0=$(now_ns)
dd if=/dev/zero of="$dir/floor" bs=1M count=$mib conv=fsync 2>/dev/null || fail "dd (write floor) failed"
write_ns=$(($(now_ns) - t0))
rm -f "$dir/floor"
t0=$(now_ns)
dd if="$snap/memory-node-0" of=/dev/null bs=1M 2>/dev/null || fail "dd (read floor) failed"
read_ns=$(($(now_ns) - t0))

launch --restore "$snap"
wait_control "the restored guest"
restore_ns=$(sed -n 's/.*restored .* pages of RAM in \([0-9]*\) ns.*/\1/p' "$dir/out")
[ -n "$restore_ns" ] || fail "vmm-launch logged no restore time"
c=$(read_u64 0x101000)
wait_at_least 0x101000 $((c + 100000)) || fail "the restored guest does not count on"
ctl quit >/dev/null || fail "quit failed"
wait "$pid"
pid=

touched=$((pages * 4096))
awk -v s="$save_ns" -v p="$pause_ns" -v w="$write_ns" -v r="$restore_ns" -v f="$read_ns" \
  -v b="$bytes" -v t="$touched" 'BEGIN {
  printf "snapshot: %.1f MiB written (%d pages of 4 KiB the guest touched: %.1f MiB)\n", b / 1048576, t / 4096, t / 1048576
  printf "snapshot: save %.1f ms (guest paused %.1f ms); floor: dd of as many bytes with fsync %.1f ms\n", s / 1e6, p / 1e6, w / 1e6
  printf "snapshot: restore %.1f ms; floor: dd reading the memory part %.1f ms\n", r / 1e6, f / 1e6
  printf "RESULT snapshot_save_ms %.1f ms\n", s / 1e6
  printf "RESULT snapshot_save_ratio %.2f\n", s / w
  printf "RESULT snapshot_pause_ms %.1f ms\n", p / 1e6
  printf "RESULT snapshot_restore_ms %.1f ms\n", r / 1e6
  printf "RESULT snapshot_restore_ratio %.2f\n", r / f
  printf "RESULT snapshot_size_ratio %.3f\n", b / t
}'
