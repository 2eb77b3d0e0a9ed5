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

# The lab host runs kvm-amd with shadow paging (npt=0). Under nested paging TCG's page
# walker probes every guest page-table page for writing at each TLB refill, so the
# identity page tables (written once, by node 0's VMM) took a write fault on every node
# at every refill and bounced between the nodes for ever: a 3-node run spent its 90 s in
# ~24,000 write faults per node, 98% of them on pages 0x9 and 0xa (the PML4 and PDPT;
# "most faulted pages" in the report), and never left the first phase. With npt=0 KVM
# walks the guest's page tables itself and the same run passes in 4 s
# (docs/testing-dsm-kvm.md, "In a lab host").
export KERRVISOR_LAB_NPT=${KERRVISOR_LAB_NPT:-off}
# A lab fault still costs about a millisecond (a TCG host), so the lab run keeps every
# scenario but with fewer rounds than the full sizes (10,000 message-passing rounds), and
# says so. The full sizes run wherever a KVM is at hand, and with threads as CPUs on
# every machine.
lab_sizes=(--rounds 50 --pingpong-rounds 100 --vmm-rounds 20 --iters 2000)
echo "dsm kvm tests: inside a lab host ($why; kvm-amd npt=${KERRVISOR_LAB_NPT/off/0}), reduced sizes: ${lab_sizes[*]}"
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
