#!/usr/bin/env bash
# Boots the guest in the lab with the kernel log shown and fails if the log has an ACPI
# error, a BUG, a WARNING splat, an oops, or a clock the guest gave up on.
#   guest-log-clean.sh LAB_ARGS...      (e.g. boot --kernel cloud --vcpus 2 -- true)
set -uo pipefail
lab=$(dirname "$0")/../../scripts/lab
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$lab" "$1" --verbose "${@:2}" >"$out" 2>&1
status=$?
bad='ACPI Error|ACPI BIOS Error|ACPI Warning|BUG:|WARNING: CPU|Call Trace|Oops|Kernel panic|Marking TSC unstable|TSC unstable|clocksource watchdog|timekeeping watchdog|Unhandled|XSAVE consistency'
if grep -E "$bad" "$out" | grep -v '^qemu[0-9]*|' >/dev/null; then
    echo "guest-log-clean: the guest's log has problems:"
    grep -n -E "$bad" "$out" | grep -v '^[0-9]*:qemu[0-9]*|' | head -20
    exit 1
fi
if [ "$status" != 0 ]; then
    echo "guest-log-clean: the lab exited with status $status; its last lines:"
    tail -20 "$out"
    exit 1
fi
echo "guest-log-clean: the kernel log is clean ($(grep -c '^\[' "$out") lines checked)"
