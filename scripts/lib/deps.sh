# Debian packages Kerrvisor needs to build, test and run its lab. Sourced by scripts/.
KV_APT_PACKAGES=(
  build-essential cmake g++ clang libclang-rt-14-dev clang-format
  libboost-program-options-dev libgtest-dev libgmock-dev
  linux-libc-dev libibverbs-dev nlohmann-json3-dev
  qemu-system-x86 qemu-utils seabios ipxe-qemu
  busybox-static cpio gzip xz-utils zstd kmod file
  iproute2 spin
  acpica-tools
  libssl-dev
  libedit-dev
)
