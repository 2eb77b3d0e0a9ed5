# Network namespaces as separate "hosts" for the multi-node tests. POSIX sh, sourced by
# tests/coherence/run_dsm.sh (threads as CPUs, bash) and tests/dsmkvm/netns_launch.sh
# (vCPUs, dash here or busybox sh inside a lab host). Needs root and iproute2's `ip`
# ($KV_IP, default ip) with veth and bridge support in the kernel.
#
#   kv_netns_up TAG N   makes a hub namespace TAGh holding a bridge, and N namespaces
#                       TAGn0 .. TAGn(N-1), each joined to the bridge by a veth pair; in
#                       namespace K the veth end is 10.199.0.(K+1)/24 and lo is up. Sets
#                       KV_NETNS_NAMES (the N names), KV_NETNS_PATHS (their /run/netns
#                       files) and KV_NETNS_ADDRS (the N addresses), comma-separated.
#                       On failure prints one line naming the step and returns 1 (what
#                       was made is still removed by kv_netns_down).
#   kv_netns_down       removes every namespace kv_netns_up made (the veth pairs and the
#                       bridge go with them). Safe to call twice; call it from a trap.

KV_NETNS_MADE=
KV_NETNS_NAMES=
KV_NETNS_PATHS=
KV_NETNS_ADDRS=

kv_netns_up() {
    _tag=$1 _n=$2 _ip=${KV_IP:-ip}
    # iproute2 keeps the namespace files there; a lab host's busybox root has no /run/netns.
    mkdir -p /run/netns
    _hub=${_tag}h
    "$_ip" netns add "$_hub" || { echo "netns: ip netns add $_hub failed"; return 1; }
    KV_NETNS_MADE="$_hub"
    "$_ip" -n "$_hub" link add br0 type bridge && "$_ip" -n "$_hub" link set br0 up ||
        { echo "netns: bridge in $_hub failed"; return 1; }
    _k=0
    while [ "$_k" -lt "$_n" ]; do
        _ns=${_tag}n$_k
        _addr=10.199.0.$((_k + 1))
        "$_ip" netns add "$_ns" || { echo "netns: ip netns add $_ns failed"; return 1; }
        KV_NETNS_MADE="$KV_NETNS_MADE $_ns"
        "$_ip" link add "${_tag}a$_k" netns "$_ns" type veth peer name "${_tag}b$_k" netns "$_hub" ||
            { echo "netns: veth pair for $_ns failed"; return 1; }
        "$_ip" -n "$_ns" addr add "$_addr/24" dev "${_tag}a$_k" &&
            "$_ip" -n "$_ns" link set "${_tag}a$_k" up &&
            "$_ip" -n "$_ns" link set lo up &&
            "$_ip" -n "$_hub" link set "${_tag}b$_k" master br0 &&
            "$_ip" -n "$_hub" link set "${_tag}b$_k" up ||
            { echo "netns: configuring $_ns failed"; return 1; }
        KV_NETNS_NAMES="$KV_NETNS_NAMES${KV_NETNS_NAMES:+,}$_ns"
        KV_NETNS_PATHS="$KV_NETNS_PATHS${KV_NETNS_PATHS:+,}/run/netns/$_ns"
        KV_NETNS_ADDRS="$KV_NETNS_ADDRS${KV_NETNS_ADDRS:+,}$_addr"
        _k=$((_k + 1))
    done
    return 0
}

kv_netns_down() {
    for _ns in $KV_NETNS_MADE; do "${KV_IP:-ip}" netns del "$_ns" 2>/dev/null; done
    KV_NETNS_MADE=
}
