#!/bin/bash
# Multi-node coherence tests with threads as CPUs (tests/coherence/CMakeLists.txt).
#
#   run_dsm.sh loopback N kv-dsm-node   N node processes on 127.0.0.1
#   run_dsm.sh netns N kv-dsm-node      N "hosts": one network namespace each, joined by
#                                       veth pairs to a bridge in a hub namespace (all
#                                       created here and removed on exit; needs root)
#   run_dsm.sh kill N kv-dsm-node       node N-1 is killed with SIGKILL mid-run: the others
#                                       must exit non-zero within 10 s naming node N-1
#   run_dsm.sh garbage N kv-dsm-node    node N-1 sends an out-of-protocol page: the others
#                                       must exit non-zero within 10 s naming node N-1
#   run_dsm.sh silent N kv-dsm-node     netns as above; mid-run every packet to and from
#                                       node N-1 is dropped (a tc blackhole qdisc on both
#                                       ends of its veth: no reset, no FIN, as when its
#                                       cable is pulled): the others must exit non-zero
#                                       within 10 s naming node N-1, and node N-1 must
#                                       exit too (it sees every other node go silent)
# Scenario sizes can be overridden: DSM_THREADS, DSM_ITERS, DSM_ROUNDS.
set -u
mode=$1 n=$2 bin=$3
threads=${DSM_THREADS:-2} iters=${DSM_ITERS:-20000} rounds=${DSM_ROUNDS:-10000}
tag=kv$$
work=$(mktemp -d /tmp/kv-dsm.XXXXXX)
pids=()
. "$(dirname "$0")/netns.sh"  # kv_netns_up / kv_netns_down, shared with tests/dsmkvm

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    kv_netns_down
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$work"/node*.log; do echo "== $f"; cat "$f"; done; exit 1; }

# A free TCP port range on the loopback (bind-tested, n ports).
pick_ports() {
    python3 - "$n" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

addr=()
prefix=()
if [ "$mode" = netns ] || [ "$mode" = silent ]; then
    kv_netns_up "$tag" "$n" || fail "network namespaces"
    IFS=, read -r -a ns_names <<<"$KV_NETNS_NAMES"
    IFS=, read -r -a ns_addrs <<<"$KV_NETNS_ADDRS"
    for ((k = 0; k < n; k++)); do
        addr+=("${ns_addrs[$k]}:7700")
        prefix+=("ip netns exec ${ns_names[$k]}")
    done
else
    ports=($(pick_ports))
    for ((k = 0; k < n; k++)); do
        addr+=("127.0.0.1:${ports[$k]}")
        prefix+=("")
    done
fi
peers=$(IFS=,; echo "${addr[*]}")

scenario=all extra=()
case $mode in
    kill | silent) scenario=spin ;;
    garbage) scenario=spin extra=(--misbehave) ;;
esac

for ((k = 0; k < n; k++)); do
    ${prefix[$k]} timeout -s KILL 240 "$bin" --node "$k" --peers "$peers" --scenario "$scenario" \
        --threads "$threads" --iters "$iters" --rounds "$rounds" "${extra[@]}" \
        >"$work/node$k.log" 2>&1 &
    pids+=($!)
done

case $mode in
loopback | netns)
    rc=0
    for ((k = 0; k < n; k++)); do
        wait "${pids[$k]}"; r=$?
        [ "$r" = 0 ] || { echo "node $k exited with $r"; rc=1; }
    done
    [ $rc = 0 ] || fail "$mode with $n nodes"
    for ((k = 0; k < n; k++)); do echo "== node $k"; cat "$work/node$k.log"; done
    grep -q "counter $((iters * threads * n)) " "$work/node0.log" || fail "counter line"
    echo "PASS: $mode, $n nodes"
    ;;
kill | garbage | silent)
    victim=$((n - 1))
    # Bounded wait until the fault can happen: for kill, every node is in the scenario
    # (past the first barrier); for garbage, the victim is sending it (it spins only once
    # every node passed that barrier, and the others may be stopped before they print).
    for ((i = 0; i < 300; i++)); do
        if [ "$mode" != garbage ]; then
            c=$(cat "$work"/node*.log | grep -c spinning)
            [ "$c" = "$n" ] && break
        else
            grep -q 'sending garbage' "$work/node$victim.log" && break
        fi
        sleep 0.1   # polling a log file written by another process: no other signal
    done
    if [ "$mode" != garbage ]; then
        [ "$c" = "$n" ] || fail "nodes did not start"
    else
        grep -q 'sending garbage' "$work/node$victim.log" || fail "node $victim never sent its garbage"
    fi
    # SIGKILL the node process itself (the child of its `timeout` wrapper).
    [ "$mode" = kill ] && kill -9 $(pgrep -P "${pids[$victim]}")
    if [ "$mode" = silent ]; then
        # Both ends of the victim's veth drop everything they would send: the hub's end
        # what the bridge forwards to the victim, the victim's end all it sends.
        tc -n "${ns_names[$victim]}" qdisc add dev "${tag}a$victim" root blackhole &&
            tc -n "${tag}h" qdisc add dev "${tag}b$victim" root blackhole ||
            fail "tc blackhole qdisc on node $victim's veth (CONFIG_NET_SCHED)"
        echo "node $victim's veth drops all traffic from now on"
    fi
    start=$(date +%s.%N)
    for ((k = 0; k < n; k++)); do
        [ $k = $victim ] && continue
        # The node must be gone within 10 s of the kill (or of the garbage).
        for ((i = 0; i < 100; i++)); do
            kill -0 "${pids[$k]}" 2>/dev/null || break
            sleep 0.1   # polling another process's exit with a deadline
        done
        kill -0 "${pids[$k]}" 2>/dev/null && fail "node $k still running 10 s after the fault"
        wait "${pids[$k]}"; r=$?
        [ "$r" != 0 ] || fail "node $k exited 0 after the fault"
        grep -q "node $victim" "$work/node$k.log" || fail "node $k's error does not name node $victim"
        echo "node $k stopped with status $r: $(grep -m1 'kv-dsm-node:' "$work/node$k.log")"
    done
    echo "stopped in $(echo "$(date +%s.%N) - $start" | bc) s"
    if [ "$mode" = silent ]; then
        # The silenced node hears nobody either: it must stop by itself, naming a peer.
        for ((i = 0; i < 100; i++)); do
            kill -0 "${pids[$victim]}" 2>/dev/null || break
            sleep 0.1   # polling another process's exit with a deadline
        done
        kill -0 "${pids[$victim]}" 2>/dev/null && fail "node $victim still running 10 s after the others stopped"
        wait "${pids[$victim]}"; r=$?
        [ "$r" != 0 ] || fail "node $victim exited 0 after its traffic was dropped"
        echo "node $victim stopped with status $r: $(grep -m1 'kv-dsm-node:' "$work/node$victim.log")"
    fi
    echo "PASS: $mode, $n nodes"
    ;;
esac
