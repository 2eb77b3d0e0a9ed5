# Helpers shared by guest-image/ scripts and scripts/lab. Sourced, never run.
# Everything big (kernel packages, initramfs images) lives in the cache, outside git.

KV_CACHE=${KERRVISOR_CACHE:-/var/cache/kerrvisor}

# kv_die MESSAGE [STATUS]: one-line error on stderr, then exit (default status 1).
kv_die() {
  echo "${KV_PROG:-kerrvisor}: error: $1" >&2
  exit "${2:-1}"
}

kv_note() {
  [[ -n ${KV_QUIET:-} ]] || echo "${KV_PROG:-kerrvisor}: $*" >&2
}

# kv_need_cmd CMD...: fail with a message naming the first missing command.
kv_need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 ||
      kv_die "'$c' is not installed (see scripts/lib/deps.sh)"
  done
}

# kv_check_flavour NAME: the two guest kernel flavours are Debian's cloud and generic.
kv_check_flavour() {
  case $1 in
    cloud | generic) ;;
    *) kv_die "unknown kernel flavour '$1' (expected cloud or generic)" 2 ;;
  esac
}

# kv_hash FILE...|-: a short content hash of files (and stdin when '-' is given).
kv_hash() {
  sha256sum "$@" | sha256sum | cut -c1-16
}

# kv_lock NAME: hold an exclusive lock on the cache for the rest of the calling
# (sub)shell, so concurrent test runs do not build the same image twice at once.
kv_lock() {
  mkdir -p "$KV_CACHE/locks"
  exec {KV_LOCK_FD}>"$KV_CACHE/locks/$1.lock"
  flock "$KV_LOCK_FD"
}

# kv_kernel_dir FLAVOUR: where guest-image/fetch-kernels unpacks that flavour.
kv_kernel_dir() {
  echo "$KV_CACHE/kernels/$1"
}

# kv_add_module ROOT KVER NAME DEST: copy module NAME (path relative to the kernel's
# modules dir, without extension) from an unpacked kernel package into DEST,
# decompressed (busybox insmod does not read .ko.xz / .ko.zst).
kv_add_module() {
  local root=$1 kver=$2 name=$3 dest=$4 base src
  base=$root/lib/modules/$kver/kernel/$name
  mkdir -p "$dest"
  if [[ -f $base.ko ]]; then
    cp "$base.ko" "$dest/"
  elif [[ -f $base.ko.xz ]]; then
    xz -dc "$base.ko.xz" >"$dest/$(basename "$name").ko"
  elif [[ -f $base.ko.zst ]]; then
    zstd -qdc "$base.ko.zst" >"$dest/$(basename "$name").ko"
  else
    src=$(find "$root/lib/modules/$kver" -name "$(basename "$name").ko*" | head -1)
    kv_die "module $name not found in kernel $kver${src:+ (found $src)}"
  fi
}
