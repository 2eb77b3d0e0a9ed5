#!/usr/bin/env bash
# The guest console is interactive: boots the guest's shell in the lab, waits for its
# prompt, types a command whose output can only come from the guest shell, then types
# poweroff; passes when the answer appears and the lab exits 0.
#
# console-input.sh [--check "COMMAND"] [LAB-BOOT-OPTION...]
#   --check  typed first, joined to the answer by &&: the answer only comes if COMMAND
#            passed (e.g. numa-check ... && smp-check ...), and its output is shown
#   LAB-BOOT-OPTION  passed to scripts/lab boot (e.g. --hosts 2 --timeout 1200); with
#            --hosts H > 1 every node must also exit 0 ("lab: node exit statuses: 0 0")
set -uo pipefail
lab=$(cd "$(dirname "$0")/../.." && pwd)/scripts/lab
check=""
if [ "${1:-}" = --check ]; then
    [ $# -ge 2 ] || { echo "console-input: --check wants a command"; exit 2; }
    check=$2
    shift 2
fi
hosts=1
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
    [ "${args[i]}" = --hosts ] && hosts=${args[i + 1]}
done
out=$(mktemp)
in=$(mktemp -u)
mkfifo "$in"
trap 'rm -f "$out" "$in"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null' EXIT
"$lab" boot --interactive --vcpus 1 --timeout 400 "$@" <"$in" >"$out" 2>&1 &
pid=$!
exec 3>"$in"
# Wait (bounded) for the shell prompt before typing: input sent before the guest's
# serial driver opens the port would be flushed by it, as on real hardware. A guest over
# several lab hosts takes minutes to boot.
for _ in $(seq 1200); do
    grep -aq '/ # ' "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
if ! grep -aq '/ # ' "$out"; then
    echo "console-input: no shell prompt from the guest"; tail -20 "$out"; exit 1
fi
printf '%secho typed-$((6*7))\n' "${check:+$check && }" >&3
# The check runs at the guest's pace; the bound is the lab's own --timeout.
while kill -0 "$pid" 2>/dev/null; do
    grep -aq '^typed-42' <(tr -d '\r' <"$out") && break
    # A check that failed prints the prompt again without the answer.
    [ -n "$check" ] && [ "$(tr -d '\r' <"$out" | grep -ac '^/ # ')" -ge 2 ] && break
    sleep 1
done
printf 'poweroff -f\n' >&3
exec 3>&-
wait "$pid"
status=$?
pid=
[ -n "$check" ] && tr -d '\r' <"$out" | grep -a -E '^[a-z]+-check: ' | grep -av ': ok '
if ! grep -aq '^typed-42' <(tr -d '\r' <"$out"); then
    echo "console-input: the guest did not answer the typed command"; tail -20 "$out"; exit 1
fi
[ "$status" = 0 ] || { echo "console-input: lab exited with $status"; tail -20 "$out"; exit 1; }
if [ "$hosts" -gt 1 ]; then
    zeros=$(printf ' 0%.0s' $(seq "$hosts"))
    grep -aq "^lab: node exit statuses:$zeros\$" "$out" ||
        { echo "console-input: not every node exited 0"; tail -20 "$out"; exit 1; }
fi
echo "console-input: typed command answered by the guest shell; poweroff ended the run (status 0)"
