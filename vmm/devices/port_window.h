// A view of another device at a fixed offset. Some legacy devices own ports that are not
// contiguous (the PIT's 0x40-0x43 and 0x61, the i8042's 0x60 and 0x64), while a Device sees
// only offsets from the base it was inserted at. The device decodes one logical range
// (e.g. 0x60..0x64) and the integrator inserts a window for each physical piece:
//   bus.insert(0x64, 1, std::make_shared<PortWindow>(i8042, 4), "i8042-cmd");
// Stateless: the target does its own locking.
#pragma once

#include <memory>

#include "vmm/devices/bus.h"

namespace kv {

class PortWindow : public Device {
  public:
    PortWindow(std::shared_ptr<Device> target, uint64_t offset)
        : target_(std::move(target)), offset_(offset) {}
    void read(uint64_t offset, std::span<uint8_t> data) override {
        target_->read(offset_ + offset, data);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        target_->write(offset_ + offset, data);
    }

  private:
    std::shared_ptr<Device> target_;
    uint64_t offset_;
};

}  // namespace kv
