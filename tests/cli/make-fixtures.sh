#!/bin/bash
# Makes the input files of the CLI tests in DIR: a text file posing as a kernel, a fake
# bzImage with a valid 64-bit setup header whose init_size is too large for 64M of RAM, a
# big (sparse) initrd, and config files with an error on a known line.
set -eu
dir=${1:?usage: make-fixtures.sh DIR}
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"

echo "this is a text file, not a kernel" >not-a-kernel.txt

# put OFFSET WIDTH VALUE: writes VALUE little-endian over WIDTH bytes at OFFSET.
put() {
    local off=$1 width=$2 val=$3 bytes="" i
    for ((i = 0; i < width; i++)); do
        bytes+=$(printf '\\x%02x' $(((val >> (8 * i)) & 0xff)))
    done
    printf "$bytes" | dd of=fake-bzImage bs=1 seek=$((off)) conv=notrunc status=none
}
# Offsets from the Linux x86 boot protocol (Documentation/arch/x86/boot.rst).
truncate -s 2M fake-bzImage
put 0x1f1 1 4           # setup_sects: 4 sectors of setup after the boot sector
put 0x1f4 4 0x10000     # syssize: 1 MiB of protected-mode code, in 16-byte paragraphs
put 0x1fe 2 0xaa55      # boot_flag
put 0x200 1 0xeb        # jump over the header ...
put 0x201 1 0x6a        # ... which therefore ends at 0x26c
put 0x202 4 0x53726448  # "HdrS"
put 0x206 2 0x020f      # boot protocol 2.15
put 0x211 1 0x01        # loadflags: LOADED_HIGH
put 0x22c 4 0x7fffffff  # initrd_addr_max
put 0x230 4 0x200000    # kernel_alignment
put 0x234 1 1           # relocatable_kernel
put 0x236 2 0x01        # xloadflags: XLF_KERNEL_64
put 0x238 4 2047        # cmdline_size
put 0x258 8 0x1000000   # pref_address
put 0x260 4 0x6000000   # init_size: 96 MiB, more than 64M of RAM can hold

truncate -s 48M big-initrd.img

printf '# a config with a typo on line 3\nkernel = fake-bzImage\nmemroy = 1G\n' >unknown-key.conf
printf 'kernel = fake-bzImage\nmemory 1G\n' >syntax-error.conf
printf '# line 1\n\nkernel = fake-bzImage\nmemory = 12X\n' >bad-memory.conf

# Cluster configs (two nodes on 127.0.0.1) and key files; key-file paths are relative to
# the config's folder.
head -c 32 /dev/urandom >cluster.key
chmod 600 cluster.key
head -c 32 /dev/urandom >open.key
chmod 644 open.key
head -c 8 /dev/urandom >short.key
chmod 600 short.key
cluster() { # KEYFILE [EXTRA-TOP-LEVEL-LINE]
    printf '%s\nkernel = fake-bzImage\n[cluster]\nkey-file = %s\n' "${2:-# cluster}" "$1"
    printf '[node.0]\naddress = 127.0.0.1\nport = 7700\nvcpus = 1\nmemory = 128M\n'
    printf '[node.1]\naddress = 127.0.0.1\nport = 7701\nvcpus = 1\nmemory = 128M\n'
}
cluster cluster.key >cluster.conf
cluster open.key >cluster-open-key.conf
cluster short.key >cluster-short-key.conf
cluster cluster.key "vcpus = 2" >cluster-top-vcpus.conf
printf 'kernel = fake-bzImage\n[cluster]\nkey-file = cluster.key\n[node.0]\naddress = a\nport = 1\n[node.2]\naddress = b\nport = 1\n' >cluster-gap.conf
printf 'kernel = fake-bzImage\n[cluster]\nkey-file = cluster.key\n[node.0]\naddress = a\nvcpus = 1\n' >cluster-no-port.conf
