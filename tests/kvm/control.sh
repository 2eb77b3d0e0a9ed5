#!/bin/bash
# usage: tests/kvm/control.sh KVM_GUEST_TEST VMM_LAUNCH KVCTL COUNT_GUEST
#
# The control socket on a real KVM: vmm-launch boots the count guest (count-guest.S, a
# bzImage that counts in memory with no exit), and kvctl stops and continues it through
# the socket while the counter it writes stands still and moves again
# (tests/kvm/control-run.sh). Runs on this machine's /dev/kvm when
# `KVM_GUEST_TEST --probe` boots the freestanding guest there, otherwise inside one lab
# host; prints which. Never skips. KV_KVM_TESTS_IN_LAB=1 forces the lab host.
set -u
if (($# != 4)); then
  echo "usage: $0 KVM_GUEST_TEST VMM_LAUNCH KVCTL COUNT_GUEST" >&2
  exit 2
fi
probe_bin=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
run=$repo/tests/kvm/control-run.sh
files=()
for f in "$2" "$3" "$4"; do
  [[ -f $f ]] || { echo "control test: $f is missing (build the vmm-launch, kvctl and count guest targets)" >&2; exit 2; }
  files+=("$(realpath -- "$f")")
done

if [[ ${KV_KVM_TESTS_IN_LAB:-0} == 1 ]]; then
  why="KV_KVM_TESTS_IN_LAB=1"
elif [[ ! -e /dev/kvm ]]; then
  why="this machine has no /dev/kvm"
elif probe=$("$probe_bin" --probe 2>&1); then
  echo "control test: on this machine's /dev/kvm (${probe%%$'\n'*})"
  exec sh "$run" "${files[@]}"
else
  why="${probe%%$'\n'*}"
fi
echo "control test: inside a lab host ($why)"
args=()
for f in "${files[@]}" "$run"; do args+=(--file "$f"); done
"$repo/scripts/lab" host --timeout 600 "${args[@]}" -- sh "$run" "${files[@]}"
