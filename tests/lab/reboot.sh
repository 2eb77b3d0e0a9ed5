#!/usr/bin/env bash
# A guest reboot is handled as configured: with --on-reboot exit vmm-launch ends with
# status 0; with --on-reboot restart (the default) the guest boots again. Runs vmm-launch
# inside one lab host (scripts/lab host) so that its own options can be given.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${KERRVISOR_CACHE:-/var/cache/kerrvisor}
vmm=${KERRVISOR_VMM_LAUNCH:-$repo/build/vmm/vmm-launch}
[ -x "$vmm" ] || { echo "reboot: no vmm-launch at $vmm (build it first)"; exit 1; }
"$repo/guest-image/fetch-kernels" cloud >/dev/null && "$repo/guest-image/build-initramfs" cloud >/dev/null ||
    { echo "reboot: cannot prepare the guest image"; exit 1; }
kernel=$(readlink -f "$cache/kernels/cloud/vmlinuz")
initrd=$(readlink -f "$cache/guest/initramfs-cloud.cpio.gz")
vmm=$(readlink -f "$vmm")
run="$vmm --kernel $kernel --initrd $initrd --memory 256M --console stdio"
cmdline="console=ttyS0 quiet -- reboot -f"
# In the host: (1) on-reboot=exit must exit 0 after the reset; (2) restart must reach the
# guest's init twice (bounded wait on the output), then it is stopped.
script="$run --on-reboot exit --cmdline '$cmdline' </dev/null >/r1 2>&1; echo exit-status=\$?;
grep -c 'Restarting system' /r1 | sed 's/^/resets=/';
$run --on-reboot restart --cmdline '$cmdline' </dev/null >/r2 2>&1 & p=\$!;
for i in \$(seq 240); do [ \$(grep -c KV-INIT-REACHED /r2) -ge 2 ] && break; sleep 1; done;
kill \$p; wait \$p; grep -c KV-INIT-REACHED /r2 | sed 's/^/inits=/'; grep -c 'guest reset: restarting' /r2 | sed 's/^/restarts=/'"
out=$("$repo/scripts/lab" host --timeout 600 --file "$vmm" --file "$kernel" --file "$initrd" -- "$script" 2>&1)
echo "$out" | tail -8
echo "$out" | grep -qx 'exit-status=0' || { echo "reboot: on-reboot=exit did not exit 0"; exit 1; }
echo "$out" | grep -qx 'resets=1' || { echo "reboot: the guest did not reset"; exit 1; }
inits=$(echo "$out" | sed -n 's/^inits=//p')
[ "${inits:-0}" -ge 2 ] || { echo "reboot: on-reboot=restart did not boot the guest again"; exit 1; }
echo "$out" | grep -q '^restarts=[1-9]' || { echo "reboot: no restart message"; exit 1; }
echo "reboot: exit and restart behave as configured"
