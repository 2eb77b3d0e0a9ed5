#!/bin/bash
# usage: tests/kvm/run.sh TEST_BINARY GTEST_FILTER
#
# Runs the KVM tier's test binary where a KVM can run it: on this machine's /dev/kvm
# when `TEST_BINARY --probe` boots the freestanding guest there, otherwise inside one lab
# host (scripts/lab host), which has a real kvm-amd. Prints one line saying which, and
# exits with the tests' status. Never skips.
# KV_KVM_TESTS_IN_LAB=1 forces the lab host (to test that path on a machine with KVM).
set -u
if (($# != 2)); then
  echo "usage: $0 TEST_BINARY GTEST_FILTER" >&2
  exit 2
fi
bin=$(realpath -- "$1") filter=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
[[ -x $bin ]] || { echo "kvm tests: $bin is not an executable (build kvm_guest_test)" >&2; exit 2; }

if [[ ${KV_KVM_TESTS_IN_LAB:-0} == 1 ]]; then
  why="KV_KVM_TESTS_IN_LAB=1"
elif [[ ! -e /dev/kvm ]]; then
  why="this machine has no /dev/kvm"
elif probe=$("$bin" --probe 2>&1); then
  echo "kvm tests: on this machine's /dev/kvm (${probe%%$'\n'*})"
  exec "$bin" --gtest_filter="$filter"
else
  why="${probe%%$'\n'*}"
fi

echo "kvm tests: inside a lab host ($why)"
start=$SECONDS
"$repo/scripts/lab" host --timeout 600 --file "$bin" -- "$bin" --gtest_filter="$filter"
status=$?
echo "kvm tests: lab host finished with status $status after $((SECONDS - start)) s"
exit $status
