// Little-endian byte assembly for firmware tables (ACPI, AML).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace kv::boot {

class ByteWriter {
  public:
    void u8(uint8_t v) { bytes_.push_back(v); }
    void u16(uint16_t v) { le(v, 2); }
    void u32(uint32_t v) { le(v, 4); }
    void u64(uint64_t v) { le(v, 8); }
    void bytes(std::span<const uint8_t> b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
    // Exactly `width` bytes of `s`, padded with `pad` (ACPI ids are fixed-width).
    void fixed(std::string_view s, size_t width, char pad = ' ') {
        for (size_t i = 0; i < width; ++i)
            bytes_.push_back(static_cast<uint8_t>(i < s.size() ? s[i] : pad));
    }
    void zeros(size_t n) { bytes_.insert(bytes_.end(), n, 0); }
    void put_u32_at(size_t off, uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes_[off + i] = static_cast<uint8_t>(v >> (8 * i));
    }

    size_t size() const { return bytes_.size(); }
    std::vector<uint8_t>& data() { return bytes_; }

  private:
    void le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
    std::vector<uint8_t> bytes_;
};

}  // namespace kv::boot
