// A Linux x86 bzImage read from disk and validated for the 64-bit boot protocol.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kv::boot {

class BzImage {
  public:
    // Oldest boot protocol accepted: 2.12 introduced xloadflags and with it XLF_KERNEL_64.
    static constexpr uint16_t kMinProtocol = 0x020C;

    // Reads and validates PATH. Errors start with "kernel:" (the config key at fault):
    // cannot open/read, not a bzImage (no "HdrS"), protocol too old, no 64-bit entry,
    // truncated.
    static Result<BzImage> load(const std::string& path);
    // Same checks on bytes already in memory; `path` is only used in messages.
    static Result<BzImage> parse(std::vector<uint8_t> bytes, const std::string& path);

    // The setup header as found in the image (fields past its real length are zero).
    const setup_header& header() const { return header_; }
    // Bytes of the setup header to copy into boot_params.hdr (0x1f1 up to the end the
    // image declares: the jump at 0x200 says where the header stops).
    std::span<const uint8_t> header_bytes() const;
    // The protected-mode kernel: everything after the real-mode setup sectors.
    std::span<const uint8_t> kernel() const;
    uint16_t protocol() const { return header_.version; }

  private:
    std::vector<uint8_t> bytes_;
    setup_header header_{};
    size_t header_len_ = 0;  // bytes from offset 0x1f1
    size_t setup_len_ = 0;   // real-mode part: (setup_sects + 1) * 512
};

}  // namespace kv::boot
