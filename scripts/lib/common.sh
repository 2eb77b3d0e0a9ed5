# Shared by scripts/demo, scripts/test and the benchmarks. Source it; do not run it.
# shellcheck shell=bash

KV_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KV_BUILD_DIR=${KERRVISOR_BUILD_DIR:-$KV_REPO/build}
KV_CACHE=${KERRVISOR_CACHE:-/var/cache/kerrvisor}

# shellcheck source=scripts/lib/deps.sh
. "$KV_REPO/scripts/lib/deps.sh"

kv_say() { printf '%s\n' "$*" >&2; }
kv_die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Installs the Debian packages that are missing (apt-get update first, as a fresh machine
# needs). Packages already present cost one dpkg query.
kv_install_deps() {
    local missing=()
    local p
    for p in "${KV_APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || kv_die "missing packages (${missing[*]}); run as root to install them"
        kv_say "installing: ${missing[*]}"
        apt-get update -q >/dev/null || kv_die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >/dev/null || kv_die "apt-get install ${missing[*]} failed"
    fi
}

kv_build() {
    cmake -S "$KV_REPO" -B "$KV_BUILD_DIR" >/dev/null || kv_die "cmake configure failed"
    make -C "$KV_BUILD_DIR" -j"$(nproc)" --no-print-directory "$@" >/dev/null ||
        { make -C "$KV_BUILD_DIR" --no-print-directory "$@" 2>&1 | tail -30 >&2; kv_die "build failed"; }
}

# True when this machine's /dev/kvm can run an unmodified Linux guest: a KVM with
# hardware virtualisation (vmx or svm), not the paravirtual kvm_pvm variant.
kv_kvm_boots_linux() {
    [ -c /dev/kvm ] || return 1
    [ -d /sys/module/kvm_pvm ] && return 1
    grep -qwE 'vmx|svm' /proc/cpuinfo
}
