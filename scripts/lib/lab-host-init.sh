#!/bin/sh
# /init of an emulated lab host (busybox sh; copied into the host initramfs by
# scripts/lib/lab-image.sh). Loads kvm-amd and the virtio-net driver, gives the host its
# lab address, then runs /kv/run.sh, the per-run script the lab appends as a second
# cpio archive.
#
# Two serial ports: ttyS0 is the console (the work's output: the guest console or the
# command's output); ttyS1 is the lab's status channel, read by scripts/lab:
#   KV-HOST-READY                 setup done, the work starts
#   KV-HOST-ERROR <message>       setup failed
#   KV-HOST-STATUS=<n>            the work ended with status n
#   KV-HOST-KMSG <line>           the host kernel's log
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /var/tmp
mount -t devpts devpts /dev/pts
# /tmp stays the initramfs' own directory (already in RAM): a tmpfs over it would hide
# the files `scripts/lab host --file /tmp/...` put there.
mkdir -p /tmp && chmod 1777 /tmp
mount -t tmpfs tmpfs /run
dmesg -n 1

status_line() { echo "$*" >/dev/ttyS1; }
fail() {
  status_line "KV-HOST-ERROR $*"
  echo "lab host: error: $*" >&2
  poweroff -f
}
stty -F /dev/ttyS1 raw -echo 2>/dev/null
# The host kernel's own messages go to the status channel (prefixed), not the console:
# the lab shows them when a host fails.
# /dev/kmsg records are "level,seq,usec,flags;text" (continuation lines start with a
# space); cat reads whole records, as /dev/kmsg requires.
cat /dev/kmsg 2>/dev/null | while IFS= read -r rec; do
  case $rec in
    " "*) ;;
    *) echo "KV-HOST-KMSG ${rec#*;}" ;;
  esac
done >/dev/ttyS1 &

# The modules in dependency order (there is no modules.dep): see /etc/kv-modules.
# insmod does not read the kernel command line as modprobe does, so a
# "module.param=value" there (e.g. kvm_amd.npt=0, set by scripts/lab) is passed on here.
module_params() {
  name=$(basename "$1" | tr - _)
  for arg in $(cat /proc/cmdline); do
    case $arg in
      "$name".*=*) printf '%s ' "${arg#"$name".}" ;;
    esac
  done
}
while read -r m; do
  [ -n "$m" ] || continue
  # shellcheck disable=SC2046 # one word per parameter
  insmod "/lib/modules/$m.ko" $(module_params "$m") || fail "insmod $m failed"
done </etc/kv-modules
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm-amd (does the emulated CPU have svm?)"

# kv_node=K kv_hosts=H on the kernel command line (set by scripts/lab).
KV_NODE=0
KV_HOSTS=1
for arg in $(cat /proc/cmdline); do
  case $arg in
    kv_node=*) KV_NODE=${arg#kv_node=} ;;
    kv_hosts=*) KV_HOSTS=${arg#kv_hosts=} ;;
  esac
done
export KV_NODE KV_HOSTS
hostname "lab$KV_NODE"
ip link set lo up
if [ "$KV_HOSTS" -gt 1 ]; then
  [ -e /sys/class/net/eth0 ] || fail "no eth0 on a multi-host lab host"
  ip addr add "10.231.0.$((KV_NODE + 1))/24" dev eth0 || fail "cannot set the address of eth0"
  ip link set eth0 up || fail "cannot bring eth0 up"
fi

[ -f /kv/run.sh ] || fail "no /kv/run.sh: the per-run archive is missing"
status_line KV-HOST-READY
sh /kv/run.sh
status=$?
status_line "KV-HOST-STATUS=$status"
sync
poweroff -f
