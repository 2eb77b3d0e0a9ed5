// libFuzzer target: fuzzed kernel images into the bzImage parser (vmm/boot/bzimage.h) and,
// for those it accepts, into the Linux loader (vmm/boot/linux_loader.h), which places the
// image, a command line and (for some inputs) an initrd in 64 MiB of guest RAM by the
// image's setup header. A crash, sanitizer report, hang or broken invariant (abort) fails
// the fuzz ctest (tests/fuzz/CMakeLists.txt).
//
// What must hold: an image is accepted or refused with an error starting "kernel:" (the
// loader's also "cmdline:", "initrd:" or "memory:"); an accepted one has its header inside
// the file and the struct, and a kernel part that is the rest of the file. A loaded one
// lies where the loader says: the kernel's bytes at 1 MiB, the footprint it reports
// covering both the image and what the header asks for (init_size from where the kernel
// runs, computed here without wrapping), inside low RAM; the initrd page-aligned above
// that footprint and below both the end of low RAM and the header's initrd_addr_max.
//
// Input layout: the image itself. Bit 0 of byte 0 (in the boot sector, which neither the
// parser nor the loader reads) asks for an initrd.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "memory/guest_memory.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_loader.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr uint64_t kRam = 64 << 20;
constexpr size_t kInitrdBytes = 10000;

// The files the loader reads: the image (rewritten for every input) and an initrd.
struct Files {
    std::string dir, kernel, initrd;
    int fd = -1;
    Files() {
        const char* base = std::getenv("TMPDIR");
        std::string t = std::string(base && *base ? base : "/tmp") + "/kv-bzimage-fuzz-XXXXXX";
        std::vector<char> buf(t.begin(), t.end());
        buf.push_back(0);
        check(::mkdtemp(buf.data()) != nullptr);
        dir = buf.data();
        kernel = dir + "/bzImage";
        initrd = dir + "/initrd";
        fd = ::open(kernel.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        check(fd >= 0);
        int f = ::open(initrd.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        check(f >= 0);
        const std::string bytes(kInitrdBytes, 'i');
        check(::write(f, bytes.data(), bytes.size()) == ssize_t(bytes.size()));
        ::close(f);
    }
    ~Files() {
        ::close(fd);
        ::unlink(kernel.c_str());
        ::unlink(initrd.c_str());
        ::rmdir(dir.c_str());
    }
    void set(const uint8_t* data, size_t size) {
        check(::ftruncate(fd, 0) == 0);
        check(::pwrite(fd, data, size, 0) == ssize_t(size));
    }
};

bool starts_with(const std::string& s, const char* prefix) {
    return s.rfind(prefix, 0) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace kv;
    using namespace kv::boot;
    static Files files;
    static GuestMemory mem = [] {
        auto m = GuestMemory::create(kRam);
        check(m.ok());
        return std::move(*m);
    }();

    auto img = BzImage::parse(std::vector<uint8_t>(data, data + size), "bzImage");
    if (!img.ok()) {
        check(starts_with(img.error().message, "kernel: "));
        return 0;
    }
    const auto hdr = img->header_bytes();
    check(hdr.size() <= sizeof(setup_header) && 0x1F1 + hdr.size() <= size);
    check(std::memcmp(hdr.data(), data + 0x1F1, hdr.size()) == 0);
    const auto kernel = img->kernel();
    check(!kernel.empty() && kernel.size() < size);
    check(std::memcmp(kernel.data(), data + size - kernel.size(), kernel.size()) == 0);
    check(img->protocol() >= BzImage::kMinProtocol);

    files.set(data, size);
    LinuxBootConfig cfg;
    cfg.kernel_path = files.kernel;
    cfg.initrd_path = (data[0] & 1) ? files.initrd : "";
    cfg.cmdline = "console=ttyS0";
    auto info = load_linux(mem, cfg);
    if (!info.ok()) {
        const std::string& m = info.error().message;
        check(starts_with(m, "kernel: ") || starts_with(m, "cmdline: ") ||
              starts_with(m, "initrd: ") || starts_with(m, "memory: "));
        return 0;
    }
    const setup_header& h = img->header();
    check(info->cpu.rip == kKernelGpa + kKernel64EntryOffset);
    std::vector<uint8_t> placed(kernel.size());
    check(mem.read(Gpa(kKernelGpa), placed).ok());
    check(std::memcmp(placed.data(), kernel.data(), kernel.size()) == 0);
    // The footprint, in arithmetic that cannot wrap.
    using u128 = unsigned __int128;
    const u128 align = h.kernel_alignment;
    const u128 aligned = align ? (u128{kKernelGpa} + align - 1) / align * align : kKernelGpa;
    const u128 run =
        h.relocatable_kernel ? std::max<u128>(aligned, h.pref_address) : h.pref_address;
    const u128 need = std::max<u128>(kKernelGpa + kernel.size(), run + h.init_size);
    check(u128{info->kernel_end} >= need);
    check(info->kernel_end <= kRam);
    if (!cfg.initrd_path.empty()) {
        check(info->initrd_size == kInitrdBytes);
        check(info->initrd_gpa % kPageSize == 0 && info->initrd_gpa >= info->kernel_end);
        const u128 end = u128{info->initrd_gpa} + info->initrd_size;
        check(end <= kRam && end <= u128{h.initrd_addr_max} + 1);
    } else {
        check(info->initrd_size == 0 && info->initrd_gpa == 0);
    }
    return 0;
}
