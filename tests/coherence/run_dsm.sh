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
# Scenario sizes can be overridden: DSM_THREADS, DSM_ITERS, DSM_ROUNDS.
set -u
mode=$1 n=$2 bin=$3
threads=${DSM_THREADS:-2} iters=${DSM_ITERS:-20000} rounds=${DSM_ROUNDS:-10000}
tag=kv$$
work=$(mktemp -d /tmp/kv-dsm.XXXXXX)
pids=()
ns_made=()

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    for ns in "${ns_made[@]}"; do ip netns del "$ns" 2>/dev/null; done
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
if [ "$mode" = netns ]; then
    hub=${tag}h
    ip netns add "$hub" || fail "ip netns add"
    ns_made+=("$hub")
    ip -n "$hub" link add br0 type bridge && ip -n "$hub" link set br0 up || fail "bridge"
    for ((k = 0; k < n; k++)); do
        ns=${tag}n$k
        ip netns add "$ns" || fail "ip netns add $ns"
        ns_made+=("$ns")
        ip link add "${tag}a$k" netns "$ns" type veth peer name "${tag}b$k" netns "$hub" ||
            fail "veth $k"
        ip -n "$ns" addr add "10.199.0.$((k + 1))/24" dev "${tag}a$k"
        ip -n "$ns" link set "${tag}a$k" up
        ip -n "$ns" link set lo up
        ip -n "$hub" link set "${tag}b$k" master br0
        ip -n "$hub" link set "${tag}b$k" up
        addr+=("10.199.0.$((k + 1)):7700")
        prefix+=("ip netns exec $ns")
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
    kill) scenario=spin ;;
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
kill | garbage)
    victim=$((n - 1))
    # Bounded wait until the fault can happen: for kill, every node is in the scenario
    # (past the first barrier); for garbage, the victim has sent it (it spins only once
    # every node passed that barrier, and the others may be stopped before they print).
    for ((i = 0; i < 300; i++)); do
        if [ "$mode" = kill ]; then
            c=$(cat "$work"/node*.log | grep -c spinning)
            [ "$c" = "$n" ] && break
        else
            grep -q 'sent garbage' "$work/node$victim.log" && break
        fi
        sleep 0.1   # polling a log file written by another process: no other signal
    done
    if [ "$mode" = kill ]; then
        [ "$c" = "$n" ] || fail "nodes did not start"
    else
        grep -q 'sent garbage' "$work/node$victim.log" || fail "node $victim never sent its garbage"
    fi
    # SIGKILL the node process itself (the child of its `timeout` wrapper).
    [ "$mode" = kill ] && kill -9 $(pgrep -P "${pids[$victim]}")
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
    echo "PASS: $mode, $n nodes"
    ;;
esac
