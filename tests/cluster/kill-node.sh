#!/usr/bin/env bash
# tests/cluster/kill-node.sh LAB-ARGS...: boots a multi-node guest with the lab's
# --kill-node K@S and passes when the lab reports that the guest ended without a status
# (125), node 0's error names the killed node ("node K lost"), and it stopped within 10 s
# of the kill (KV-LAB-STOP-AFTER-KILL, measured inside host 0).
set -uo pipefail
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$lab" "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
kill_arg=$(printf '%s\n' "$@" | grep -A1 -x -- --kill-node | tail -n1)
k=${kill_arg%@*}
ok=1
[[ $status == 125 ]] || { echo "kill-node: FAIL: lab exit status $status, expected 125" >&2; ok=0; }
grep -aq "node $k lost" "$out" || { echo "kill-node: FAIL: no error naming node $k ('node $k lost')" >&2; ok=0; }
after=$(grep -a -o 'KV-LAB-STOP-AFTER-KILL=[0-9]*s' "$out" | tail -n1 | tr -dc 0-9)
if [[ -z $after ]]; then
  echo "kill-node: FAIL: node 0 did not report when it stopped after the kill" >&2; ok=0
elif ((after >= 10)); then
  echo "kill-node: FAIL: the guest stopped ${after} s after node $k was killed (limit 10 s)" >&2; ok=0
fi
((ok)) || exit 1
echo "kill-node: PASS: node $k killed; node 0 stopped after ${after} s naming it"
