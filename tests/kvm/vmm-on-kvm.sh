#!/bin/bash
# usage: tests/kvm/vmm-on-kvm.sh NAME KVM_GUEST_TEST RUN_SCRIPT FILE... [-- ARG...]
#
# Runs a test of vmm-launch with a freestanding guest on a real KVM: `sh RUN_SCRIPT
# FILE... ARG...` (a POSIX sh script, e.g. control-run.sh or migrate-run.sh) on this machine's
# /dev/kvm when `KVM_GUEST_TEST --probe` boots the freestanding guest there, otherwise
# inside one lab host with the FILEs copied in; prints which. Never skips.
# KV_KVM_TESTS_IN_LAB=1 forces the lab host.
set -u
if (($# < 4)); then
  echo "usage: $0 NAME KVM_GUEST_TEST RUN_SCRIPT FILE... [-- ARG...]" >&2
  exit 2
fi
name=$1 probe_bin=$2 run=$3
shift 3
repo=$(cd "$(dirname "$0")/../.." && pwd)
files=() extra=()
while (($#)); do
  if [[ $1 == -- ]]; then
    shift
    extra=("$@")
    break
  fi
  [[ -f $1 ]] || { echo "$name: $1 is missing (build the vmm-launch, kvctl and test guest targets)" >&2; exit 2; }
  files+=("$(realpath -- "$1")")
  shift
done
run=$(realpath -- "$run")

if [[ ${KV_KVM_TESTS_IN_LAB:-0} == 1 ]]; then
  why="KV_KVM_TESTS_IN_LAB=1"
elif [[ ! -e /dev/kvm ]]; then
  why="this machine has no /dev/kvm"
elif probe=$("$probe_bin" --probe 2>&1); then
  echo "$name: on this machine's /dev/kvm (${probe%%$'\n'*})"
  exec sh "$run" "${files[@]}" "${extra[@]}"
else
  why="${probe%%$'\n'*}"
fi
echo "$name: inside a lab host ($why)"
args=()
# The run script and what it sources from beside it (vmm-test-lib.sh).
lib=$(dirname "$run")/vmm-test-lib.sh
[[ -f $lib ]] && args+=(--file "$lib")
for f in "${files[@]}" "$run"; do args+=(--file "$f"); done
"$repo/scripts/lab" host --timeout 600 "${args[@]}" -- sh "$run" "${files[@]}" "${extra[@]}"
