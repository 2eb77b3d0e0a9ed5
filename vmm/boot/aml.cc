#include "vmm/boot/aml.h"

namespace kv::boot::aml {

namespace {

// Opcodes and prefixes (ACPI 6.x, 20.2).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0A;
constexpr uint8_t kWordPrefix = 0x0B;
constexpr uint8_t kDWordPrefix = 0x0C;
constexpr uint8_t kStringPrefix = 0x0D;
constexpr uint8_t kQWordPrefix = 0x0E;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5B;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kDualNamePrefix = 0x2E;
constexpr uint8_t kMultiNamePrefix = 0x2F;

// Small resource descriptor tags (6.4.2): type/length byte.
constexpr uint8_t kIrqTag = 0x22;      // IRQ descriptor, 2 bytes (no flags byte)
constexpr uint8_t kIoTag = 0x47;       // I/O port descriptor, 7 bytes
constexpr uint8_t kEndTag = 0x79;      // end tag, 1 byte (checksum)
constexpr uint8_t kIoDecode16 = 0x01;  // the device decodes all 16 address bits
// Large descriptors (6.4.3): Word and DWord Address Space.
constexpr uint8_t kDWordAddressTag = 0x87;
constexpr uint8_t kWordAddressTag = 0x88;
constexpr uint8_t kSpaceMemory = 0, kSpaceIo = 1, kSpaceBus = 2;
// General flags: producer (bit 0 clear), positive decode (bit 1 clear), min and max fixed.
constexpr uint8_t kProducerFixed = (1 << 3) | (1 << 2);
constexpr uint8_t kIoEntireRange = 0x3;        // _RNG: ISA and non-ISA ranges
constexpr uint8_t kMemReadWriteNoCache = 0x1;  // _RW = 1, _MEM = non-cacheable

void append(Bytes& out, const Bytes& in) {
    out.insert(out.end(), in.begin(), in.end());
}

void le(Bytes& out, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Op [ExtOp] PkgLength Body, the common shape of every container.
Bytes container(std::initializer_list<uint8_t> op, const Bytes& body) {
    Bytes out(op);
    append(out, pkg_length(body.size()));
    append(out, body);
    return out;
}

}  // namespace

Bytes pkg_length(size_t body_len) {
    // One byte holds 6 bits of length; 2-4 bytes hold 4 + 8*(n-1) bits, with the count of
    // following bytes in bits 7:6 of the lead byte. The length includes these bytes.
    if (body_len + 1 < (1u << 6)) return {static_cast<uint8_t>(body_len + 1)};
    for (unsigned n = 2; n <= 4; ++n) {
        size_t total = body_len + n;
        if (total < (size_t{1} << (4 + 8 * (n - 1)))) {
            Bytes out{static_cast<uint8_t>(((n - 1) << 6) | (total & 0xF))};
            le(out, total >> 4, static_cast<int>(n - 1));
            return out;
        }
    }
    return {};  // > 256 MiB of AML: not something this VMM generates
}

Bytes name_string(std::string_view path) {
    Bytes out;
    if (!path.empty() && path[0] == '\\') {
        out.push_back(kRootChar);
        path.remove_prefix(1);
    }
    std::vector<std::string_view> segs;
    while (!path.empty()) {
        size_t dot = path.find('.');
        segs.push_back(path.substr(0, dot));
        path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    }
    if (segs.size() == 2) out.push_back(kDualNamePrefix);
    if (segs.size() > 2) {
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segs.size()));
    }
    if (segs.empty()) out.push_back(0);  // NullName: the root itself
    for (auto s : segs)
        for (size_t i = 0; i < 4; ++i)
            out.push_back(static_cast<uint8_t>(i < s.size() ? s[i] : '_'));
    return out;
}

Bytes integer(uint64_t v) {
    if (v == 0) return {kZeroOp};
    if (v == 1) return {kOneOp};
    Bytes out;
    if (v <= 0xFF) {
        out.push_back(kBytePrefix);
        le(out, v, 1);
    } else if (v <= 0xFFFF) {
        out.push_back(kWordPrefix);
        le(out, v, 2);
    } else if (v <= 0xFFFFFFFF) {
        out.push_back(kDWordPrefix);
        le(out, v, 4);
    } else {
        out.push_back(kQWordPrefix);
        le(out, v, 8);
    }
    return out;
}

Bytes string(std::string_view s) {
    Bytes out;
    out.reserve(s.size() + 2);
    out.push_back(kStringPrefix);
    for (char c : s) out.push_back(static_cast<uint8_t>(c));
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id) {
    // Three letters in 5 bits each ('A' = 1), then four hex digits, stored big-endian.
    auto hex = [](char c) -> uint32_t {
        return c <= '9' ? static_cast<uint32_t>(c - '0') : static_cast<uint32_t>(c - 'A' + 10);
    };
    uint32_t vendor =
        ((id[0] - 0x40u) & 0x1F) << 10 | ((id[1] - 0x40u) & 0x1F) << 5 | ((id[2] - 0x40u) & 0x1F);
    uint32_t product = hex(id[3]) << 12 | hex(id[4]) << 8 | hex(id[5]) << 4 | hex(id[6]);
    uint32_t be = vendor << 16 | product;
    uint32_t v = (be >> 24) | ((be >> 8) & 0xFF00) | ((be << 8) & 0xFF0000) | (be << 24);
    Bytes out{kDWordPrefix};
    le(out, v, 4);
    return out;
}

Bytes name(std::string_view nm, const Bytes& object) {
    Bytes out{kNameOp};
    append(out, name_string(nm));
    append(out, object);
    return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    for (const auto& t : terms) append(body, t);
    return container({kScopeOp}, body);
}

Bytes device(std::string_view nm, const std::vector<Bytes>& terms) {
    Bytes body = name_string(nm);
    for (const auto& t : terms) append(body, t);
    return container({kExtOpPrefix, kDeviceOp}, body);
}

Bytes package(const std::vector<Bytes>& elements) {
    Bytes body{static_cast<uint8_t>(elements.size())};
    for (const auto& e : elements) append(body, e);
    return container({kPackageOp}, body);
}

Bytes buffer(const Bytes& data) {
    Bytes body = integer(data.size());
    append(body, data);
    return container({kBufferOp}, body);
}

ResourceTemplate& ResourceTemplate::io(uint16_t min, uint16_t max, uint8_t align, uint8_t len) {
    descriptors_.push_back(kIoTag);
    descriptors_.push_back(kIoDecode16);
    le(descriptors_, min, 2);
    le(descriptors_, max, 2);
    descriptors_.push_back(align);
    descriptors_.push_back(len);
    return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(uint8_t irq) {
    descriptors_.push_back(kIrqTag);
    le(descriptors_, 1u << irq, 2);  // IRQ mask, bit n = IRQ n
    return *this;
}

namespace {

// An address-space descriptor with fields of `width` bytes (granularity 0, translation 0).
void address_space(Bytes& out, uint8_t tag, int width, uint8_t space, uint8_t type_flags,
                   uint64_t min, uint64_t max) {
    out.push_back(tag);
    le(out, 3 + 5 * width, 2);  // bytes after the length field
    out.push_back(space);
    out.push_back(kProducerFixed);
    out.push_back(type_flags);
    le(out, 0, width);  // granularity
    le(out, min, width);
    le(out, max, width);
    le(out, 0, width);  // translation offset
    le(out, max - min + 1, width);
}

}  // namespace

ResourceTemplate& ResourceTemplate::word_bus_number(uint16_t min, uint16_t max) {
    address_space(descriptors_, kWordAddressTag, 2, kSpaceBus, 0, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::word_io(uint16_t min, uint16_t max) {
    address_space(descriptors_, kWordAddressTag, 2, kSpaceIo, kIoEntireRange, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::dword_memory(uint32_t min, uint32_t max) {
    address_space(descriptors_, kDWordAddressTag, 4, kSpaceMemory, kMemReadWriteNoCache, min, max);
    return *this;
}

Bytes ResourceTemplate::build() const {
    Bytes data = descriptors_;
    data.push_back(kEndTag);
    data.push_back(0);  // checksum 0: "treat as correct" (6.4.2.9)
    return buffer(data);
}

}  // namespace kv::boot::aml
