# Sourced (bash) by the lab tests that drive a guest with a control script (control.sh,
# migrate.sh), once $name (how failures are prefixed) and $out (the lab's output) are
# set. check DESCRIPTION ERE [COUNT]: at least COUNT (1) lines of $out match ERE;
# expect_status STATUS WANT WHY: the lab's exit status. Either clears $ok on failure.
ok=1
check() {
  local n
  n=$(grep -Ec -- "$2" "$out")
  if ((n < ${3:-1})); then
    echo "$name: FAIL: $1 (no${3:+ $3} line(s) matching '$2', $n found)" >&2
    ok=0
  fi
}
expect_status() {
  [[ $1 == "$2" ]] || { echo "$name: FAIL: exit status $1, expected $2 ($3)" >&2; ok=0; }
}
# check_pause_cycles N: the control script's pause_cycles N (scripts/lab) saw the guest
# paused after each stop and running after the last cont.
check_pause_cycles() {
  check "the guest was paused after each stop" '^ctl: status: paused$' "$1"
  check "the guest ran again after the last cont" '^ctl: status: running$'
}
# check_nodes_listed H: kvctl nodes listed nodes 0..H-1 running, each at its lab address.
check_nodes_listed() {
  local k
  for ((k = 0; k < $1; k++)); do
    check "query-nodes listed node $k running" "^ctl: $k +10\\.231\\.0\\.$((k + 1)):$((7700 + k)) +running"
  done
}
