#!/bin/bash
# usage: tests/dsmkvm/run.sh [--netns] KV_DSM_KVM_NODE ARGS...  (e.g. --launch 3 --per-node 1)
#
# Runs `KV_DSM_KVM_NODE ARGS...` (the launcher: all node processes over 127.0.0.1) where a
# KVM can run the freestanding guest: on this machine's /dev/kvm when
# `KV_DSM_KVM_NODE --probe` boots the guest there, otherwise inside one lab host
# (scripts/lab host), where every node process runs on that host's kvm-amd. Prints one
# line saying which and exits with the launcher's status. Never skips.
# KV_KVM_TESTS_IN_LAB=1 forces the lab host (to test that path on a machine with KVM).
#
# --netns: every node process in its own network namespace, joined by veth pairs to a
# bridge (tests/dsmkvm/netns_launch.sh makes and removes them; in a lab host they are
# made inside the host, which gets iproute2's ip and the kernel's bridge and veth modules).
set -u
netns=0
if [[ ${1:-} == --netns ]]; then
  netns=1
  shift
fi
if (($# < 2)); then
  echo "usage: $0 [--netns] KV_DSM_KVM_NODE ARGS..." >&2
  exit 2
fi
bin=$(realpath -- "$1")
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
wrap=()
((netns)) && wrap=(sh "$repo/tests/dsmkvm/netns_launch.sh")
[[ -x $bin ]] || { echo "dsm kvm tests: $bin is not an executable (build kv-dsm-kvm-node)" >&2; exit 2; }

if [[ ${KV_KVM_TESTS_IN_LAB:-0} == 1 ]]; then
  why="KV_KVM_TESTS_IN_LAB=1"
elif [[ ! -e /dev/kvm ]]; then
  why="this machine has no /dev/kvm"
elif probe=$("$bin" --probe 2>&1); then
  echo "dsm kvm tests: on this machine's /dev/kvm (${probe%%$'\n'*})"
  start=$SECONDS
  "${wrap[@]}" "$bin" "$@"
  status=$?
  echo "dsm kvm tests: finished with status $status after $((SECONDS - start)) s"
  exit $status
else
  why="${probe%%$'\n'*}"
fi

# In a lab host a remote fault costs ~8 ms (TCG under nested paging, against ~50 us on a
# real KVM), so the full sizes (10,000 message-passing rounds) would take hours there:
# the lab run keeps every scenario but with few rounds, and says so. The full sizes run
# wherever a KVM is at hand, and with threads as CPUs on every machine.
lab_sizes=(--rounds 20 --pingpong-rounds 20 --vmm-rounds 5 --iters 1000)
echo "dsm kvm tests: inside a lab host ($why), reduced sizes: ${lab_sizes[*]}"
files=(--file "$bin")
if ((netns)); then
  # The host's busybox ip has no netns; its kernel (the generic one) has bridge and veth
  # as modules, which the host image does not load.
  ip=$(command -v ip) || { echo "dsm kvm tests: iproute2's ip is not installed" >&2; exit 2; }
  "$repo/guest-image/fetch-kernels" generic >/dev/null || exit 2
  kroot=${KERRVISOR_CACHE:-/var/cache/kerrvisor}/kernels/generic/root/lib/modules
  insmods=()
  for m in net/llc/llc net/802/stp net/bridge/bridge drivers/net/veth; do
    ko=$(ls "$kroot"/*/kernel/$m.ko 2>/dev/null | head -1)
    [[ -n $ko ]] || { echo "dsm kvm tests: no $m.ko under $kroot" >&2; exit 2; }
    files+=(--file "$ko")
    insmods+=(--insmod "$ko")
  done
  ip=$(realpath "$ip")
  files+=(--file "$ip" --file "$repo/tests/dsmkvm/netns_launch.sh" --file "$repo/tests/coherence/netns.sh")
  wrap=(KV_IP=$ip sh "$repo/tests/dsmkvm/netns_launch.sh" "${insmods[@]}")
fi
start=$SECONDS
"$repo/scripts/lab" host --timeout 800 "${files[@]}" -- "${wrap[@]}" "$bin" "$@" "${lab_sizes[@]}"
status=$?
echo "dsm kvm tests: lab host finished with status $status after $((SECONDS - start)) s"
exit $status
