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
# Then the same guest over 2 nodes (vmm-launch --local, 1 vCPU and 128 MiB each: the
# same RAM), saved and restored the same way: its save and restore against the single
# node's (the cost of gathering pages and vCPUs from another node).
# The restored guest must count on (checked). Ends with RESULT lines.
set -u
vmm=$1 kvctl=$2 image=$3 name=bench/snapshot
. "$(dirname "$0")/vmm-test-lib.sh"
snap=$dir/snap
nodes=1
launch() {
  rm -f "$sock"
  if [ $nodes = 1 ]; then
    "$vmm" --kernel "$image" --memory 256M --vcpus 2 --console "file:$dir/console" \
      --control "$sock" --log-level info "$@" </dev/null >"$dir/out" 2>&1 &
  else
    "$vmm" --config "$dir/guest.conf" --local --log-level info "$@" </dev/null >"$dir/out" 2>&1 &
  fi
  pid=$!
}
field() { sed -n "s/^$1: //p" "$2"; }

# save_and_restore: launches the guest, saves it to $snap, quits, restores it and
# checks it counts on; sets save_ns, pause_ns, pages, bytes and restore_ns.
save_and_restore() {
  rm -rf "$snap" "$dir/console"
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
  launch --restore "$snap"
  wait_control "the restored guest"
  restore_ns=$(sed -n 's/.*restored .* pages of RAM in \([0-9]*\) ns.*/\1/p' "$dir/out")
  [ -n "$restore_ns" ] || fail "vmm-launch logged no restore time"
  c=$(read_u64 0x101000)
  wait_at_least 0x101000 $((c + 100000)) || fail "the restored guest does not count on"
  ctl quit >/dev/null || fail "quit failed"
  wait "$pid"
  pid=
}
save_and_restore

mib=$(((bytes + 1048575) / 1048576))
t0=$(now_ns)
dd if=/dev/zero of="$dir/floor" bs=1M count=$mib conv=fsync 2>/dev/null || fail "dd (write floor) failed"
write_ns=$(($(now_ns) - t0))
rm -f "$dir/floor"
t0=$(now_ns)
dd if="$snap/memory-node-0" of=/dev/null bs=1M 2>/dev/null || fail "dd (read floor) failed"
read_ns=$(($(now_ns) - t0))

# The same guest over 2 nodes.
one_save=$save_ns one_pause=$pause_ns one_restore=$restore_ns one_pages=$pages one_bytes=$bytes
nodes=2
node_memory=128M cluster_conf "1 1"
save_and_restore
two_save=$save_ns two_pause=$pause_ns two_restore=$restore_ns two_pages=$pages
save_ns=$one_save pause_ns=$one_pause restore_ns=$one_restore pages=$one_pages bytes=$one_bytes

touched=$((pages * 4096))
awk -v s2="$two_save" -v p2="$two_pause" -v r2="$two_restore" -v n2="$two_pages" 'BEGIN {
  printf "snapshot: over 2 nodes (--local): %d pages; save %.1f ms (guest paused %.1f ms), restore %.1f ms\n", n2, s2 / 1e6, p2 / 1e6, r2 / 1e6
}'
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
awk -v s="$save_ns" -v r="$restore_ns" -v s2="$two_save" -v r2="$two_restore" 'BEGIN {
  printf "RESULT snapshot_save_2node_ms %.1f ms\n", s2 / 1e6
  printf "RESULT snapshot_save_2node_vs_1node %.2f\n", s2 / s
  printf "RESULT snapshot_restore_2node_ms %.1f ms\n", r2 / 1e6
  printf "RESULT snapshot_restore_2node_vs_1node %.2f\n", r2 / r
}'
