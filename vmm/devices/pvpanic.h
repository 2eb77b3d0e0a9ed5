// The pvpanic device (ISA port 0x505, ACPI _HID "QEMU0001"): Linux's pvpanic driver writes
// PANICKED here from its panic notifier, so a guest kernel panic ends vmm-launch with a
// "guest crashed" status instead of leaving a halted guest behind.
#pragma once

#include <functional>

#include "vmm/devices/bus.h"

namespace kv {

class PvPanic : public Device {
  public:
    static constexpr uint64_t kPort = 0x505;
    static constexpr uint8_t kPanicked = 1u << 0;
    static constexpr uint8_t kCrashLoaded = 1u << 1;

    explicit PvPanic(std::function<void(uint8_t event)> on_event)
        : on_event_(std::move(on_event)) {}

    // Reads report the events we understand, as the driver expects.
    void read(uint64_t, std::span<uint8_t> data) override {
        store_le(data, kPanicked | kCrashLoaded);
    }
    void write(uint64_t, std::span<const uint8_t> data) override {
        uint8_t ev = data.empty() ? 0 : data[0];
        if (ev & (kPanicked | kCrashLoaded)) on_event_(ev);
    }

  private:
    std::function<void(uint8_t)> on_event_;
};

}  // namespace kv
