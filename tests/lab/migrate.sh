#!/usr/bin/env bash
# The control API and vCPU migration drive a Linux guest over 2 lab hosts (1 vCPU each):
# while the guest runs smp-check, clock-check and parallel-work round after round, kvctl on
# the I/O node lists both nodes, pauses and resumes the whole guest three times, then moves
# vCPU 1 to node 0 and back 10 times, showing with query-vcpus where it runs after each
# move; then it moves every vCPU onto node 0 and waits for two whole rounds (each with a
# parallel-work) that began after that; then it presses the power button.
#
# One lab run serves both (each boot of a guest over 2 lab hosts costs minutes, and a CI
# run must stay under 45): the pauses come first, so the rounds checked after the moves
# also began after the last pause.
#
# migrate.sh [LAB-BOOT-OPTION...]   (cluster.hosts2.control-migrate: --hosts 2 --vcpus 1 ...)
# Passes when: every kvctl command succeeded (KV-LAB-CONTROL-STATUS=0), query-nodes listed
# both nodes running, the guest was paused after each stop and ran after the last cont,
# each of the 21
# moves answered "moved: true" and query-vcpus then listed vCPU 1 on the node it was sent
# to, two rounds that began after the 10 back-and-forth moves and two that began after the
# last one passed and none failed (smp-check's exact count, clock-check's clocks and
# kernel log, parallel-work's checksums), the work ended by the power button (status 143)
# and every node exited 0.
set -uo pipefail
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
script=$(mktemp /tmp/kv-migrate-script.XXXXXX)
out=$(mktemp /tmp/kv-migrate-out.XXXXXX)
trap 'rm -f "$script" "$out"' EXIT
cat >"$script" <<'SCRIPT'
set -e
fail='KV-ROUND-FAILED'
wait_console 'KV-ROUND-1-PASS' 1800 "$fail"
kvctl nodes
pause_cycles 3
# After each move, query-vcpus shows where vCPU 1 runs (its line: "1  NODE  ...").
on() { kvctl vcpus | awk -v want="$1" '$1 == "1" { print "KV-VCPU1-ON-" $2; if ($2 != want) exit 1 }'; }
for i in 1 2 3 4 5 6 7 8 9 10; do
  kvctl migrate 1 0
  on 0
  kvctl migrate 1 1
  on 1
done
rounds() { grep -Eo 'KV-ROUND-[0-9]+' /run/kv-console.log | tail -n 1 | cut -d- -f3; }
# The round running now began before the last move; the next two began after it.
last=$(rounds)
wait_console "KV-ROUND-$((last + 2))-PASS" 1800 "$fail"
echo "KV-ROUNDS-AFTER-MOVES-PASSED"
# Every vCPU on node 0 (vCPU 0 is there already), then parallel-work there.
kvctl migrate 1 0
on 0
kvctl vcpus
last=$(rounds)
wait_console "KV-ROUND-$((last + 2))-PASS" 1800 "$fail"
echo "KV-ROUNDS-ON-ONE-NODE-PASSED"
kvctl powerdown
SCRIPT
# One round: smp-check (exact shared count, memory written on one vCPU and read on the
# other), clock-check (no clock goes back across CPUs, nothing in the kernel log), and
# parallel-work (every worker's checksum equal). No double quotes: the command travels on
# the kernel command line (at most about 30 words).
guest='n=0; while smp-check -k 20000 -m 2 >/tmp/o 2>&1 && clock-check -n 50 >>/tmp/o 2>&1 && parallel-work -u 8 -m 1 >>/tmp/o 2>&1; do n=$((n+1)); echo KV-ROUND-$n-PASS; done; cat /tmp/o; echo KV-ROUND-FAILED'
"$lab" boot --control-script "$script" "$@" -- "$guest" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

name=migrate
. "$(dirname "$0")/check-lib.sh"
expect_status "$status" 143 "the work ended by the power button"
check "every kvctl command succeeded" '^KV-LAB-CONTROL-STATUS=0$'
check_nodes_listed 2
check_pause_cycles 3
check "every move was made" '^ctl: moved: true$' 21
check "query-vcpus showed vCPU 1 on node 0 after each move there" '^ctl: KV-VCPU1-ON-0$' 11
check "query-vcpus showed vCPU 1 on node 1 after each move back" '^ctl: KV-VCPU1-ON-1$' 10
check "two rounds passed after the moves" '^ctl: KV-ROUNDS-AFTER-MOVES-PASSED$'
check "two rounds passed with every vCPU on node 0" '^ctl: KV-ROUNDS-ON-ONE-NODE-PASSED$'
check "the guest saw the power button" 'KV-POWER-BUTTON'
check "every node exited 0" '^lab: node exit statuses: 0 0$'
if grep -q 'KV-ROUND-FAILED' "$out"; then
  echo "migrate: FAIL: a round failed (its report is above)" >&2
  ok=0
fi
((ok)) && echo "migrate: ok"
((ok))
