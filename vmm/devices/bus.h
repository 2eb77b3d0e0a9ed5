// Devices sit on a bus of address ranges behind one read/write interface. The same
// interface serves a local device and (later) one forwarded to the I/O node.
// Threading: the bus layout is fixed before vCPUs start; read()/write() are called from
// any vCPU thread concurrently, so each device guards its own state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"

namespace kv {

class StateSaver;
class StateLoader;

class Device {
  public:
    virtual ~Device() = default;
    // `offset` is relative to the base the device was inserted at; data.size() is 1, 2, 4
    // or 8.
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
    // Snapshots (vmm/devices/device_state.h): the guest-visible state, saved while the
    // guest is paused and restored before any vCPU runs. A device with none (a sink)
    // keeps these.
    virtual void save_state(StateSaver& out) { (void)out; }
    virtual Status restore_state(StateLoader& in) {
        (void)in;
        return {};
    }
};

class Bus {
  public:
    // The device sees offsets starting at `dev_offset` (one device may answer several
    // disjoint ranges, e.g. the two 8259s and their ELCRs).
    Status insert(uint64_t base, uint64_t len, std::shared_ptr<Device> dev, std::string name,
                  uint64_t dev_offset = 0);
    // False when no device covers the address (reads then return all ones).
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

  private:
    struct Entry {
        uint64_t base, len, dev_offset;
        std::shared_ptr<Device> dev;
        std::string name;
    };
    const Entry* find(uint64_t addr, uint64_t len) const;
    std::map<uint64_t, Entry> entries_;  // by base
};

// Little-endian helpers for register-style devices.
inline uint64_t load_le(std::span<const uint8_t> d) {
    uint64_t v = 0;
    for (size_t i = 0; i < d.size() && i < 8; ++i) v |= uint64_t(d[i]) << (8 * i);
    return v;
}
inline void store_le(std::span<uint8_t> d, uint64_t v) {
    for (size_t i = 0; i < d.size() && i < 8; ++i) d[i] = uint8_t(v >> (8 * i));
}

}  // namespace kv
