#include "vmm/boot/linux_loader.h"

#include <asm/bootparam.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/fd.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/layout.h"

namespace kv::boot {

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint8_t kLoaderUndefined = 0xFF;  // type_of_loader: "no assigned id"
constexpr uint16_t kVidModeNormal = 0xFFFF;
// End of the setup heap, relative to the real-mode code, minus 0x200 (boot.rst). The
// 64-bit entry never runs the real-mode setup, but the field is set as loaders must.
constexpr uint16_t kHeapEndPtr = 0xFE00;

uint64_t align_up(uint64_t v, uint64_t a) {
    return a ? (v + a - 1) / a * a : v;
}
uint64_t mib_ceil(uint64_t v) {
    return v / kMiB + (v % kMiB != 0);
}

uint64_t low_ram_end(const GuestMemory& mem) {
    for (const auto& r : mem.regions())
        if (r.base.value == 0) return r.size;
    return 0;
}

// Where the kernel may write while it decompresses and relocates itself: from its load
// address to the end of init_size counted from where it will run. A relocatable kernel
// entered at 64 bits runs at its load address aligned to kernel_alignment, but never
// below pref_address (LOAD_PHYSICAL_ADDR); a fixed one runs at pref_address.
uint64_t kernel_footprint_end(const setup_header& h, uint64_t image_size) {
    uint64_t run =
        h.relocatable_kernel
            ? std::max<uint64_t>(align_up(kKernelGpa, h.kernel_alignment), h.pref_address)
            : h.pref_address;
    // pref_address is the image's to choose: a footprint past the end of the address space
    // saturates (too big for any RAM) instead of wrapping round to a small end.
    uint64_t end = run > UINT64_MAX - h.init_size ? UINT64_MAX : run + h.init_size;
    return std::max(kKernelGpa + image_size, end);
}

Error too_small(const GuestMemory& mem, uint64_t kernel_end, uint64_t initrd_size) {
    std::string msg = "memory: " + format_size(mem.ram_size()) + " is too small for kernel (" +
                      std::to_string(mib_ceil(kernel_end)) + " MiB)";
    if (initrd_size) msg += " and initrd (" + std::to_string(mib_ceil(initrd_size)) + " MiB)";
    return Error{msg};
}

Status read_fully(int fd, uint8_t* dst, uint64_t len, const std::string& path) {
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, dst + done, len - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            return Error::from_errno("initrd: cannot read " + path, err);
        }
        if (n == 0) return Error{"initrd: " + path + " shrank while it was being read"};
        done += static_cast<uint64_t>(n);
    }
    return {};
}

}  // namespace

std::string format_size(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"", "K", "M", "G", "T"};
    unsigned u = 0;
    while (u + 1 < std::size(kUnits) && bytes != 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        ++u;
    }
    return std::to_string(bytes) + kUnits[u];
}

Result<LinuxBootInfo> load_linux(const GuestMemory& mem, const LinuxBootConfig& cfg) {
    auto image = BzImage::load(cfg.kernel_path);
    if (!image) return image.error();
    const setup_header& hdr = image->header();

    // cmdline_size excludes the terminating NUL; our buffer includes it.
    uint64_t cmdline_max = std::min<uint64_t>(hdr.cmdline_size, kCmdlineMax - 1);
    if (cfg.cmdline.size() > cmdline_max)
        return Error{"cmdline: " + std::to_string(cfg.cmdline.size()) +
                     " bytes is longer than the kernel's limit of " + std::to_string(cmdline_max)};

    Fd initrd_fd;
    uint64_t initrd_size = 0;
    if (!cfg.initrd_path.empty()) {
        initrd_fd = Fd(::open(cfg.initrd_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!initrd_fd.valid()) {
            int err = errno;
            return Error::from_errno("initrd: cannot open " + cfg.initrd_path, err);
        }
        struct stat st {};
        if (::fstat(initrd_fd.get(), &st) != 0) {
            int err = errno;
            return Error::from_errno("initrd: cannot stat " + cfg.initrd_path, err);
        }
        if (!S_ISREG(st.st_mode))
            return Error{"initrd: " + cfg.initrd_path + " is not a regular file"};
        initrd_size = static_cast<uint64_t>(st.st_size);
    }

    // Placement: the kernel's footprint first, the initrd as high as it may go above it.
    uint64_t kernel_end = kernel_footprint_end(hdr, image->kernel().size());
    uint64_t low_end = low_ram_end(mem);
    uint64_t initrd_gpa = 0;
    if (kernel_end > low_end) return too_small(mem, kernel_end, initrd_size);
    if (initrd_size) {
        // initrd_addr_max is the highest address the initrd's last byte may occupy.
        uint64_t top = std::min<uint64_t>(uint64_t{hdr.initrd_addr_max} + 1, low_end);
        if (initrd_size > top || ((top - initrd_size) & ~(kPageSize - 1)) < kernel_end)
            return too_small(mem, kernel_end, initrd_size);
        initrd_gpa = (top - initrd_size) & ~(kPageSize - 1);
        uint8_t* dst = mem.host_ptr(Gpa(initrd_gpa), initrd_size);
        if (!dst) return too_small(mem, kernel_end, initrd_size);
        KV_TRY(read_fully(initrd_fd.get(), dst, initrd_size, cfg.initrd_path));
    }

    KV_TRY(mem.write(Gpa(kKernelGpa), image->kernel()));

    std::vector<uint8_t> cmdline(cfg.cmdline.begin(), cfg.cmdline.end());
    cmdline.push_back(0);
    KV_TRY(mem.write(Gpa(kCmdlineGpa), cmdline));

    // The zero page starts clean with the image's own setup header copied in (boot.rst:
    // loaders must not pass on anything else of the image's first sectors).
    boot_params bp{};
    auto hdr_bytes = image->header_bytes();
    std::memcpy(&bp.hdr, hdr_bytes.data(), hdr_bytes.size());
    bp.hdr.type_of_loader = kLoaderUndefined;
    bp.hdr.loadflags = static_cast<uint8_t>((bp.hdr.loadflags | CAN_USE_HEAP | LOADED_HIGH) &
                                            ~(QUIET_FLAG | KEEP_SEGMENTS));
    bp.hdr.heap_end_ptr = kHeapEndPtr;
    bp.hdr.vid_mode = kVidModeNormal;
    bp.hdr.code32_start = static_cast<uint32_t>(kKernelGpa);
    bp.hdr.cmd_line_ptr = static_cast<uint32_t>(kCmdlineGpa);
    bp.ext_cmd_line_ptr = static_cast<uint32_t>(kCmdlineGpa >> 32);
    bp.hdr.ramdisk_image = static_cast<uint32_t>(initrd_gpa);
    bp.ext_ramdisk_image = static_cast<uint32_t>(initrd_gpa >> 32);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(initrd_size);
    bp.ext_ramdisk_size = static_cast<uint32_t>(initrd_size >> 32);
    bp.hdr.hardware_subarch = X86_SUBARCH_PC;
    bp.hdr.hardware_subarch_data = 0;
    bp.hdr.setup_data = 0;
    bp.acpi_rsdp_addr = cfg.rsdp_gpa;

    auto e820 = build_e820(mem);
    if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE)
        return Error{"memory: " + std::to_string(e820.size()) + " e820 entries do not fit"};
    std::copy(e820.begin(), e820.end(), bp.e820_table);
    bp.e820_entries = static_cast<uint8_t>(e820.size());
    KV_TRY(mem.write_obj(Gpa(kBootParamsGpa), bp));

    KV_TRY(write_boot_gdt(mem));
    KV_TRY(write_identity_page_tables(mem));

    LinuxBootInfo info;
    info.cpu.rip = kKernelGpa + kKernel64EntryOffset;
    info.cpu.rsi = kBootParamsGpa;
    info.cpu.rsp = kBootStackGpa;
    info.kernel_end = kernel_end;
    info.initrd_gpa = initrd_gpa;
    info.initrd_size = initrd_size;
    return info;
}

}  // namespace kv::boot
