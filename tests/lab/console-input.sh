#!/usr/bin/env bash
# The guest console is interactive: boots the guest's shell in the lab, waits for its
# prompt, types a command whose output can only come from the guest shell, then types
# poweroff; passes when the answer appears and the lab exits 0.
set -uo pipefail
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
out=$(mktemp)
in=$(mktemp -u)
mkfifo "$in"
trap 'rm -f "$out" "$in"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null' EXIT
"$lab" boot --interactive --vcpus 1 --timeout 400 "$@" <"$in" >"$out" 2>&1 &
pid=$!
exec 3>"$in"
# Wait (bounded) for the shell prompt before typing: input sent before the guest's
# serial driver opens the port would be flushed by it, as on real hardware.
for _ in $(seq 400); do
    grep -aq '/ # ' "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
if ! grep -aq '/ # ' "$out"; then
    echo "console-input: no shell prompt from the guest"; tail -20 "$out"; exit 1
fi
printf 'echo typed-$((6*7))\n' >&3
for _ in $(seq 60); do
    grep -aq '^typed-42' <(tr -d '\r' <"$out") && break
    sleep 1
done
printf 'poweroff -f\n' >&3
exec 3>&-
wait "$pid"
status=$?
pid=
if ! grep -aq '^typed-42' <(tr -d '\r' <"$out"); then
    echo "console-input: the guest did not answer the typed command"; tail -20 "$out"; exit 1
fi
[ "$status" = 0 ] || { echo "console-input: lab exited with $status"; tail -20 "$out"; exit 1; }
echo "console-input: typed command answered by the guest shell; poweroff ended the run (status 0)"
