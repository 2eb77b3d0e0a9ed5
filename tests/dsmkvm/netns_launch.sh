#!/bin/sh
# usage: tests/dsmkvm/netns_launch.sh [--insmod MODULE.ko]... KV_DSM_KVM_NODE --launch N ARGS...
#
# The multi-node KVM tests over network namespaces (docs/testing-dsm-kvm.md): makes N
# namespaces joined by veth pairs to a bridge (tests/coherence/netns.sh, the helper the
# thread variant uses too), runs the launcher with node K's listener and process in
# namespace K (--netns, --hosts), and removes the namespaces on every exit (trap). Exits
# with the launcher's status, or 2 when the namespaces cannot be made.
#
# POSIX sh: it runs on this machine (via tests/dsmkvm/run.sh --netns) and inside a lab
# host (busybox sh), where run.sh passes iproute2's ip as KV_IP and the bridge and veth
# modules of the host kernel as --insmod (loaded in the order given; already loaded is
# fine).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../coherence/netns.sh"

while [ $# -gt 0 ] && [ "$1" = --insmod ]; do
    insmod "$2" 2>/dev/null || grep -q "^$(basename "$2" .ko) " /proc/modules ||
        { echo "dsm kvm netns: insmod $2 failed"; exit 2; }
    shift 2
done
[ $# -ge 3 ] || { echo "usage: $0 [--insmod M]... KV_DSM_KVM_NODE --launch N ARGS..." >&2; exit 2; }
bin=$1
shift
n=
prev=
for a in "$@"; do
    [ "$prev" = --launch ] && n=$a
    prev=$a
done
[ -n "$n" ] || { echo "dsm kvm netns: no --launch N among the arguments" >&2; exit 2; }

trap kv_netns_down EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
kv_netns_up "kvk$$" "$n" || exit 2
echo "dsm kvm netns: $n namespaces ($KV_NETNS_NAMES), addresses $KV_NETNS_ADDRS"
"$bin" "$@" --netns "$KV_NETNS_PATHS" --hosts "$KV_NETNS_ADDRS"
status=$?
kv_netns_down
left=$("${KV_IP:-ip}" netns list 2>/dev/null | grep -c "^kvk$$")
[ "$left" = 0 ] || { echo "dsm kvm netns: $left namespaces left behind"; exit 1; }
exit $status
