#!/bin/bash
# tests/lab/expect.sh STATUS PATTERN -- COMMAND...
# Runs COMMAND, shows its output, and passes only when it exits with STATUS and its
# output (stdout and stderr) has a line matching the extended regex PATTERN.
set -uo pipefail
if [[ $# -lt 4 || $3 != -- ]]; then
  echo "usage: tests/lab/expect.sh STATUS PATTERN -- COMMAND..." >&2
  exit 2
fi
want_status=$1 pattern=$2
shift 3
out=$(mktemp /tmp/kv-expect.XXXXXX)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
ok=1
if [[ $status != "$want_status" ]]; then
  echo "expect: FAIL: exit status $status, expected $want_status" >&2
  ok=0
fi
if ! grep -Eq -- "$pattern" "$out"; then
  echo "expect: FAIL: no output line matches '$pattern'" >&2
  ok=0
fi
((ok)) && echo "expect: ok (status $status, output matches '$pattern')"
((ok))
