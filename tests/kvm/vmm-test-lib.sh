# Sourced (POSIX sh) by the run scripts of tests/kvm/vmm-on-kvm.sh (control-run.sh,
# migrate-run.sh, migrate-bench.sh, pt-run.sh), here or in a lab host, after setting `name`
# (how failures are prefixed), `kvctl` and `image`. Gives: $dir (removed at exit, with the
# vmm-launch in $pid killed if it still runs), $sock, fail, ctl, read_u64, wait_at_least,
# wait_console, wait_control, now_ns, ended, listen_events and cluster_conf.
case $image in /*) ;; *) image=$PWD/$image ;; esac # a config file names it
dir=$(mktemp -d "/tmp/kv-$(echo "$name" | tr / -).XXXXXX")
sock=$dir/kv.sock
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "$name: FAIL: $*" >&2
  if [ -f "$dir/out" ]; then
    echo "--- vmm-launch's output:" >&2
    cat "$dir/out" >&2
  fi
  exit 1
}
ctl() { "$kvctl" --socket "$sock" "$@"; }
read_u64() { ctl xp "$1" 8 | sed -n 's/^value: //p'; }
# Polls until `read_u64 ADDR` is at least N: at most 600 reads, 0.1 s apart, while
# vmm-launch runs.
wait_at_least() {
  i=0
  while :; do
    v=$(read_u64 "$1")
    [ -n "$v" ] && [ "$v" -ge "$2" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    i=$((i + 1))
    [ $i -lt 600 ] || return 1
    sleep 0.1
  done
}
# wait_console PREFIX [SECONDS]: polls, 0.1 s apart, until the control socket $sock is up
# and a line of $dir/console (cluster_conf's console) begins with PREFIX (a basic regular
# expression); fails, naming the line and the console file, if vmm-launch ends first or
# the line is not there within SECONDS (30 unless given).
wait_console() {
  i=0
  until [ -S "$sock" ] && grep -q "^$1" "$dir/console" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail "vmm-launch ended before a line '$1' was on the console ($dir/console)"
    i=$((i + 1))
    [ $i -lt $((${2:-30} * 10)) ] || fail "no line '$1' on the console ($dir/console) within ${2:-30} s"
    sleep 0.1
  done
}
# wait_control [WHAT]: polls, 0.1 s apart, until the control socket $sock answers for a
# guest (`status` succeeds: the machine is built and attached); fails, naming WHAT (the
# guest, unless given), if vmm-launch ends first or within 30 s it does not answer.
wait_control() {
  i=0
  until ctl status >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail "vmm-launch ended before ${1:-the guest} answered on $sock: $(cat "$dir/out")"
    i=$((i + 1))
    [ $i -lt 300 ] || fail "${1:-the guest} did not answer on $sock within 30 s"
    sleep 0.1
  done
}
# now_ns: CLOCK_MONOTONIC in ns (date +%s%N; busybox's date, in a lab host, has no %N,
# so there /proc/timer_list's "now at N nsecs").
now_ns() {
  t=$(date +%s%N)
  case $t in
    *N) head -n 3 /proc/timer_list | sed -n 's/^now at \([0-9]*\) nsecs$/\1/p' ;;
    *) echo "$t" ;;
  esac
}
# ended STATUS: waits for vmm-launch ($pid); fails unless it exits STATUS.
ended() {
  wait "$pid"
  status=$?
  pid=
  [ $status = "$1" ] || fail "vmm-launch exited $status, expected $1"
}
# listen_events [OPTION...]: starts `kvctl events OPTION...` in the background (its pid in
# $events, its lines in $dir/events, its stderr in $dir/events.err) and polls, 0.1 s
# apart, until it says it is subscribed; fails if it ends first or within 30 s it is not.
listen_events() {
  ctl events "$@" >"$dir/events" 2>"$dir/events.err" &
  events=$!
  i=0
  until grep -q '^kvctl: listening for events' "$dir/events.err"; do
    kill -0 "$events" 2>/dev/null || fail "kvctl events ended before it listened: $(cat "$dir/events.err")"
    i=$((i + 1))
    [ $i -lt 300 ] || fail "kvctl events was not listening within 30 s"
    sleep 0.1
  done
}
# cluster_conf "VCPUS0 VCPUS1 ..." [LINE...]: $dir/guest.conf, $image over one node of
# this host per count given (that many vCPUs each, $node_memory of RAM each, 64M unless
# set; ports from the process id, a fresh key), console to $dir/console, the control
# socket $sock, then the extra lines (e.g. [vcpu.N] sections).
cluster_conf() {
  head -c 32 /dev/urandom >"$dir/key"
  chmod 600 "$dir/key"
  port=$((20000 + ($$ % 10000) * 4))
  {
    printf '[guest]\nkernel = %s\nconsole = file:%s/console\ncontrol = %s\n' "$image" "$dir" "$sock"
    printf '[cluster]\nkey-file = %s/key\nconnect-timeout = 20s\n' "$dir"
    k=0
    for n in $1; do
      printf '[node.%s]\naddress = 127.0.0.1\nport = %s\nvcpus = %s\nmemory = %s\n' $k $port "$n" "${node_memory:-64M}"
      k=$((k + 1))
      port=$((port + 1))
    done
    shift
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$dir/guest.conf"
}
