#!/usr/bin/env bash
# The control API drives a running guest in the lab: kvctl on host 0 pauses and resumes
# the guest three times while clock-check runs in a loop in the guest (each round checks
# that no CPU's clock went back against another's and that the kernel logged no clock
# trouble), lists its nodes, vCPUs and memory, then presses the ACPI power button, after
# which the guest shuts down (its init ends the work and powers off).
#
# control.sh [LAB-BOOT-OPTION...]   e.g. --vcpus 2, or --hosts 2 --vcpus 1 --timeout 1200
# Passes when: every kvctl command succeeded (KV-LAB-CONTROL-STATUS=0), the guest was
# reported paused after each stop, two clock-check rounds that started after the last
# cont passed and none failed, the guest saw the power button, the work ended by it
# (status 143, SIGTERM), and with --hosts H > 1 every node exited 0 and query-nodes
# listed all H nodes running.
set -uo pipefail
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
hosts=1
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [ "${args[i]}" = --hosts ] && hosts=${args[i + 1]}
done
script=$(mktemp /tmp/kv-control-script.XXXXXX)
out=$(mktemp /tmp/kv-control-out.XXXXXX)
trap 'rm -f "$script" "$out"' EXIT
cat >"$script" <<'SCRIPT'
set -e
fail='KV-CLOCK-FAILED'
wait_console 'KV-CLOCK-ROUND-1-PASS' 1200 "$fail"
kvctl nodes
pause_cycles 3
# The round running now began before the last cont; the next two began after it.
last=$(grep -Eo 'KV-CLOCK-ROUND-[0-9]+' /run/kv-console.log | tail -n 1 | cut -d- -f4)
wait_console "KV-CLOCK-ROUND-$((last + 2))-PASS" 1200 "$fail"
echo "KV-CLOCK-ROUNDS-AFTER-CONT-PASSED"
kvctl memory
kvctl --json stats >/dev/null
kvctl powerdown
SCRIPT
# clock-check round after round until the power button ends it; a failing round ends the
# loop with its report (no double quotes: the command travels on the kernel command line).
guest='n=0; while clock-check -n 100 >/tmp/cc 2>&1; do n=$((n+1)); echo KV-CLOCK-ROUND-$n-PASS; done; cat /tmp/cc; echo KV-CLOCK-FAILED'
"$lab" boot --control-script "$script" "$@" -- "$guest" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

name=control
. "$(dirname "$0")/check-lib.sh"
expect_status "$status" 143 "the work ended by the power button"
check "every kvctl command succeeded" '^KV-LAB-CONTROL-STATUS=0$'
check_pause_cycles 3
check "clock-check passed after the pauses" '^ctl: KV-CLOCK-ROUNDS-AFTER-CONT-PASSED$'
check "the guest saw the power button" 'KV-POWER-BUTTON'
if grep -q 'KV-CLOCK-FAILED' "$out"; then
  echo "control: FAIL: a clock-check round failed (its report is above)" >&2
  ok=0
fi
if ((hosts > 1)); then
  zeros=$(printf ' 0%.0s' $(seq "$hosts"))
  check "every node exited 0" "^lab: node exit statuses:$zeros\$"
  check_nodes_listed "$hosts"
fi
((ok)) && echo "control: ok"
((ok))
