#include "vmm/boot/bzimage.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/fd.h"

namespace kv::boot {

namespace {

// Offsets fixed by the boot protocol (Documentation/arch/x86/boot.rst).
constexpr size_t kHdrOffset = 0x1F1;        // struct setup_header inside the image
constexpr size_t kMagicOffset = 0x202;      // "HdrS"
constexpr size_t kJumpEndOffset = 0x201;    // signed byte: header ends at 0x202 + it
constexpr uint32_t kHdrMagic = 0x53726448;  // "HdrS" little-endian

std::string hex_protocol(uint16_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%u.%02u", v >> 8, v & 0xFF);
    return buf;
}

}  // namespace

Result<BzImage> BzImage::load(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        int err = errno;
        return Error::from_errno("kernel: cannot open " + path, err);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        int err = errno;
        return Error::from_errno("kernel: cannot stat " + path, err);
    }
    if (!S_ISREG(st.st_mode)) return Error{"kernel: " + path + " is not a regular file"};
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            return Error::from_errno("kernel: cannot read " + path, err);
        }
        if (n == 0) break;  // the file shrank under us: parse() reports it as truncated
        done += static_cast<size_t>(n);
    }
    bytes.resize(done);
    return parse(std::move(bytes), path);
}

Result<BzImage> BzImage::parse(std::vector<uint8_t> bytes, const std::string& path) {
    uint32_t magic = 0;
    if (bytes.size() >= kMagicOffset + sizeof magic)
        std::memcpy(&magic, bytes.data() + kMagicOffset, sizeof magic);
    if (magic != kHdrMagic) return Error{"kernel: " + path + " is not a bzImage"};

    BzImage img;
    // The header's own length is encoded in the short jump at 0x200; never read past the
    // struct we know nor past the file.
    size_t declared = kJumpEndOffset + 1 + bytes[kJumpEndOffset] - kHdrOffset;
    img.header_len_ = std::min({declared, sizeof(setup_header), bytes.size() - kHdrOffset});
    std::memcpy(&img.header_, bytes.data() + kHdrOffset, img.header_len_);
    const setup_header& h = img.header_;

    if (h.version < kMinProtocol)
        return Error{"kernel: " + path + " uses boot protocol " + hex_protocol(h.version) +
                     "; 2.12 or later is needed"};
    if (!(h.xloadflags & XLF_KERNEL_64))
        return Error{"kernel: " + path + " has no 64-bit entry point (XLF_KERNEL_64 clear)"};

    // setup_sects == 0 means 4 for historical reasons; +1 for the boot sector itself.
    size_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
    img.setup_len_ = (setup_sects + 1) * 512;
    // syssize counts the protected-mode code in 16-byte paragraphs.
    uint64_t need = img.setup_len_ + uint64_t{h.syssize} * 16;
    if (bytes.size() < need || bytes.size() <= img.setup_len_)
        return Error{"kernel: " + path + " is truncated (" + std::to_string(bytes.size()) +
                     " bytes, its header needs " + std::to_string(need) + ")"};
    img.bytes_ = std::move(bytes);
    return img;
}

std::span<const uint8_t> BzImage::header_bytes() const {
    return std::span(bytes_).subspan(kHdrOffset, header_len_);
}

std::span<const uint8_t> BzImage::kernel() const {
    return std::span(bytes_).subspan(setup_len_);
}

}  // namespace kv::boot
