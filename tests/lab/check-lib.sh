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
