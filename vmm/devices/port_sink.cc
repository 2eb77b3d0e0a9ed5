#include "vmm/devices/port_sink.h"

#include <algorithm>

namespace kv {

void PortSink::read(uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), read_value_);
}

void PortSink::write(uint64_t, std::span<const uint8_t> data) {
    if (!data.empty()) last_.store(data[0], std::memory_order_relaxed);
}

}  // namespace kv
