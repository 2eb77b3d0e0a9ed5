# Building the emulated lab hosts' initramfs images. Sourced by scripts/lab after
# lab-common.sh.
#
# A lab host boots from two concatenated cpio archives (Linux unpacks them in turn):
#   1. a cached image, $KV_CACHE/lab/host-<variant>.cpio.gz: busybox, the generic
#      kernel's kvm and virtio-net modules, the host /init, and in the "qemu" variant
#      QEMU with its libraries and firmware (the reference VMM); rebuilt only when its
#      inputs change;
#   2. a small uncompressed per-run archive: /kv/run.sh, the command, the guest kernel
#      and initramfs, vmm-launch and its libraries, files given with --file.

# Host modules in load order (no modules.dep in the initramfs): kvm-amd needs kvm and
# ccp, kvm needs irqbypass; then the virtio-pci network stack.
KV_LAB_HOST_MODULES=(
  virt/lib/irqbypass
  drivers/crypto/ccp/ccp
  arch/x86/kvm/kvm
  arch/x86/kvm/kvm-amd
  drivers/virtio/virtio_ring
  drivers/virtio/virtio
  drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci_legacy_dev
  drivers/virtio/virtio_pci
  net/core/failover
  drivers/net/net_failover
  drivers/net/virtio_net
)

# kv_copy_with_libs ROOT FILE...: copies each file to the same absolute path under ROOT,
# with every shared library ldd lists for it (and the dynamic loader).
kv_copy_with_libs() {
  local root=$1 f lib
  shift
  for f in "$@"; do
    [[ -e $f ]] || kv_die "cannot copy $f into the lab host: no such file"
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    # ldd prints "name => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)".
    if [[ -x $f && ! -d $f ]] && ldd "$f" >/dev/null 2>&1; then
      while read -r lib; do
        [[ -e $root$lib ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
      done < <(ldd "$f" | grep -o '/[^ ]*' | sort -u)
    fi
  done
}

# kv_busybox_root ROOT: busybox-static with a link for every applet, /dev nodes the
# kernel needs before devtmpfs is mounted, and the usual directories.
kv_busybox_root() {
  local root=$1 busybox applet
  busybox=$(command -v busybox) || kv_die "busybox is not installed (busybox-static)"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run,lib/modules}
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list-full); do
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done
  mknod -m 600 "$root/dev/console" c 5 1
  mknod -m 666 "$root/dev/null" c 1 3
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
}

# kv_cpio ROOT: writes ROOT as a newc cpio archive on stdout, owned by root.
kv_cpio() {
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0)
}

# kv_lab_host_image VARIANT: prints the path of the cached host image (base or qemu),
# building it first when missing or when an input changed.
kv_lab_host_image() {
  local variant=$1 kdir kver out hash work root m qemu
  kdir=$(kv_kernel_dir generic)
  kver=$(cat "$kdir/version")
  out=$KV_CACHE/lab/host-$variant.cpio.gz
  qemu=$(command -v qemu-system-x86_64 || true)
  [[ $variant == qemu && -z $qemu ]] && kv_die "qemu-system-x86_64 is not installed"
  hash=$( {
    echo "kernel $kver variant $variant"
    printf '%s\n' "${KV_LAB_HOST_MODULES[@]}"
    cat "$KV_LAB_LIB/lab-image.sh" "$KV_LAB_LIB/lab-host-init.sh" "$(command -v busybox)"
    [[ $variant == qemu ]] && cat "$qemu" && dpkg-query -W qemu-system-x86 seabios 2>/dev/null
  } | sha256sum | cut -c1-16)
  if [[ -f $out && $(cat "$out.hash" 2>/dev/null) == "$hash" ]]; then
    echo "$out"
    return 0
  fi
  (
    kv_lock "lab-host-$variant"
    if [[ -f $out && $(cat "$out.hash" 2>/dev/null) == "$hash" ]]; then
      exit 0
    fi
    kv_note "building the lab host image ($variant, kernel $kver)"
    mkdir -p "$KV_CACHE/lab"
    work=$(mktemp -d "$KV_CACHE/lab/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/root
    kv_busybox_root "$root"
    install -m 755 "$KV_LAB_LIB/lab-host-init.sh" "$root/init"
    : >"$root/etc/kv-modules"
    for m in "${KV_LAB_HOST_MODULES[@]}"; do
      kv_add_module "$kdir/root" "$kver" "$m" "$root/lib/modules"
      basename "$m" >>"$root/etc/kv-modules"
    done
    if [[ $variant == qemu ]]; then
      kv_copy_with_libs "$root" "$qemu"
      mkdir -p "$root/usr/share"
      cp -rL /usr/share/qemu "$root/usr/share/"
      [[ -d /usr/share/seabios ]] || kv_die "/usr/share/seabios is missing (install seabios)"
      cp -rL /usr/share/seabios "$root/usr/share/"
      # Only what a -nodefaults boot loads is needed; skip the other architectures'
      # firmware and keymaps.
      rm -rf "$root"/usr/share/qemu/{keymaps,openbios-*,s390-*,skiboot.lid,slof.bin,hppa-*,opensbi-*,palcode-*,*.dtb,u-boot*,edk2-*,trace-events-all}
    fi
    # Pad to 512 bytes: the per-run archive appended after it must start aligned.
    kv_cpio "$root" | gzip -1 >"$work/image.gz"
    truncate -s %512 "$work/image.gz"
    mv "$work/image.gz" "$out"
    echo "$hash" >"$out.hash"
    kv_note "lab host image ready: $out ($(du -h "$out" | cut -f1))"
  ) || exit $?
  echo "$out"
}

# kv_lab_host_kernel: prints the kernel the lab hosts boot: the generic kernel's
# vmlinux (ELF with a PVH entry), unpacked once from the bzImage and cached. Debian
# compresses this kernel with xz, and decompressing it under TCG costs each host boot
# about 4 s; QEMU boots the uncompressed ELF directly.
kv_lab_host_kernel() {
  local kdir kver out bz offset tmp xz_status
  kdir=$(kv_kernel_dir generic)
  kver=$(cat "$kdir/version")
  out=$KV_CACHE/lab/vmlinux-$kver
  if [[ ! -s $out ]]; then
    mkdir -p "$KV_CACHE/lab"
    bz=$(readlink -f "$kdir/vmlinuz")
    tmp=$out.tmp.$$
    # The xz stream's magic (FD 37 7A 58 5A 00) marks the payload inside the bzImage.
    offset=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$bz" | head -1 | cut -d: -f1)
    # Only xz's status counts: it stops reading at the end of its stream, so tail (still
    # writing the bzImage's tail) dies of SIGPIPE, which under the callers' pipefail made
    # the whole pipeline fail and the unpacked kernel was never kept.
    xz_status=1
    if [[ -n $offset ]]; then
      tail -c +$((offset + 1)) "$bz" | xz -dc --single-stream >"$tmp" 2>/dev/null
      xz_status=${PIPESTATUS[1]}
    fi
    if ((xz_status == 0)) && [[ $(head -c 4 "$tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
      mv "$tmp" "$out"  # atomic: a concurrent lab sees the whole file or none
    else
      # Not an xz payload: boot the bzImage itself (slower, still correct).
      rm -f "$tmp"
      echo "$bz"
      return 0
    fi
  fi
  echo "$out"
}
