// Ports that Linux touches harmlessly on a PC and that have nothing behind them here:
// 0x80 (POST code / outb_p delay), 0xED (alternative delay port), and whatever else the
// integrator finds in a boot log. Writes are accepted and dropped; reads return a fixed
// byte: 0xFF is what an undecoded ISA port returns, 0x00 suits a few ports whose firmware
// would leave zero there. The last byte written is kept for debugging (POST codes).
// Threading: no state besides an atomic, safe from any vCPU thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "vmm/devices/bus.h"

namespace kv {

class PortSink : public Device {
  public:
    explicit PortSink(uint8_t read_value = 0xFF) : read_value_(read_value) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // The low byte of the last write (e.g. the last POST code on port 0x80).
    uint8_t last_written() const { return last_.load(std::memory_order_relaxed); }

  private:
    const uint8_t read_value_;
    std::atomic<uint8_t> last_{0};
};

}  // namespace kv
