#!/bin/bash
# Runs a command and checks its exit status and what it printed.
#
#   expect-exit.sh STATUS [--stdout TEXT]... [--stderr TEXT]... -- COMMAND [ARG...]
#
# Passes when COMMAND exits with STATUS and every TEXT (a fixed string, not a regex) occurs
# in the stream named before it. On failure, says what differed and shows both streams.
set -u

usage() { echo "usage: expect-exit.sh STATUS [--stdout TEXT]... [--stderr TEXT]... -- COMMAND [ARG...]" >&2; exit 64; }

[ $# -ge 1 ] || usage
want_status=$1
shift
streams=()
patterns=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        --stdout | --stderr)
            [ $# -ge 2 ] || usage
            streams+=("${1#--}")
            patterns+=("$2")
            shift 2
            ;;
        *) usage ;;
    esac
done
[ $# -ge 2 ] && [ "$1" = "--" ] || usage
shift

if [ ! -x "$1" ]; then
    echo "FAIL: $1 is missing or not executable: it has not been built" >&2
    exit 1
fi

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
timeout 60 "$@" </dev/null >"$out" 2>"$err"
status=$?

fail=0
if [ "$status" != "$want_status" ]; then
    echo "FAIL: exit status $status, expected $want_status" >&2
    fail=1
fi
for i in "${!patterns[@]}"; do
    file=$out
    [ "${streams[$i]}" = stderr ] && file=$err
    if ! grep -qF -- "${patterns[$i]}" "$file"; then
        echo "FAIL: ${streams[$i]} does not contain: ${patterns[$i]}" >&2
        fail=1
    fi
done

echo "command: $*"
echo "exit status: $status"
echo "--- stdout ---"
head -c 4000 "$out"
echo "--- stderr ---"
head -c 4000 "$err"
exit $fail
