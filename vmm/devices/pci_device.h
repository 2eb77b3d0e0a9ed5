// What the PCI host bridge needs from a function on its bus, and a config-space helper that
// functions (the host bridge now, virtio-pci later) build their header with.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <utility>

#include "base/result.h"
#include "vmm/devices/device_state.h"

namespace kv {

class StateSaver;
class StateLoader;

// One PCI function's configuration space. Called by the host bridge from vCPU threads,
// possibly concurrently: implementations guard their own state.
class PciDevice {
  public:
    virtual ~PciDevice() = default;
    // `offset` is the register offset (0..255 through mechanism #1); data.size() is 1, 2 or
    // 4 and the access never crosses a dword boundary.
    virtual void config_read(uint32_t offset, std::span<uint8_t> data) = 0;
    virtual void config_write(uint32_t offset, std::span<const uint8_t> data) = 0;
    // Snapshots (vmm/devices/device_state.h), as Device's: a function with no state of its
    // own keeps these (PciConfigSpace has the helpers for one whose state is its header).
    virtual void save_state(StateSaver& out) { (void)out; }
    virtual Status restore_state(StateLoader& in) {
        (void)in;
        return {};
    }
};

// 256 bytes of type-0 configuration space with a per-bit write mask: bits outside the mask
// are read-only, so BAR sizing (write all-ones, read back) falls out of the mask alone.
// Not thread-safe by itself: the owning device locks around it.
class PciConfigSpace {
  public:
    static constexpr uint32_t kSize = 256;
    // Standard header offsets.
    static constexpr uint32_t kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06,
                              kRevision = 0x08, kClassCode = 0x09, kHeaderType = 0x0E,
                              kSubsystemVendorId = 0x2C, kSubsystemId = 0x2E, kInterruptLine = 0x3C,
                              kInterruptPin = 0x3D;

    PciConfigSpace() {
        bytes_.fill(0);
        wmask_.fill(0);
    }

    void read(uint32_t offset, std::span<uint8_t> data) const {
        for (size_t i = 0; i < data.size(); ++i)
            data[i] = offset + i < kSize ? bytes_[offset + i] : 0xFF;
    }
    void write(uint32_t offset, std::span<const uint8_t> data) {
        for (size_t i = 0; i < data.size() && offset + i < kSize; ++i) {
            uint8_t m = wmask_[offset + i];
            bytes_[offset + i] = uint8_t((bytes_[offset + i] & ~m) | (data[i] & m));
        }
    }

    // Set-up (by the device, before the guest runs): value and writability.
    void set8(uint32_t off, uint8_t v) { bytes_[off] = v; }
    void set16(uint32_t off, uint16_t v) {
        set8(off, uint8_t(v));
        set8(off + 1, uint8_t(v >> 8));
    }
    void set32(uint32_t off, uint32_t v) {
        set16(off, uint16_t(v));
        set16(off + 2, uint16_t(v >> 16));
    }
    void set_writable(uint32_t off, uint32_t len, uint8_t mask = 0xFF) {
        for (uint32_t i = 0; i < len && off + i < kSize; ++i) wmask_[off + i] = mask;
    }
    uint8_t get8(uint32_t off) const { return bytes_[off]; }

    // Snapshots: all 256 bytes as the guest reads them (command, BARs, interrupt line and
    // whatever the device set); the write mask is the device's make-up, not state. Restore
    // into a copy, then check it with same_identity() before putting it in place.
    template <class V>
    void visit_state(V& v) {
        v("config", bytes_);
    }
    // An error naming `where` when the bytes that say which function this is (vendor,
    // device, revision, class, header type, subsystem) differ from `built`'s: a snapshot
    // of another function.
    Status same_identity(const PciConfigSpace& built, const std::string& where) const {
        static constexpr std::array<std::pair<uint32_t, uint32_t>, 4> kIdentity{
            {{kVendorId, 4}, {kRevision, 4}, {kHeaderType, 1}, {kSubsystemVendorId, 4}}};
        for (auto [off, len] : kIdentity)
            for (uint32_t i = off; i < off + len; ++i)
                if (bytes_[i] != built.bytes_[i])
                    return Error{where + ".config[" + std::to_string(i) + "]: identity byte " +
                                 std::to_string(bytes_[i]) + " differs from this function's " +
                                 std::to_string(built.bytes_[i]) + " (another function)"};
        return {};
    }

  private:
    std::array<uint8_t, kSize> bytes_;
    std::array<uint8_t, kSize> wmask_;
};

// A function whose whole state is its configuration header (the host bridge; later
// virtio-pci's header half): config accesses under its own lock, and snapshots of the
// header whose identity bytes must match the function restored into. A subclass fills
// cfg_ (IDs, write masks) in its constructor.
class HeaderPciFunction : public PciDevice {
  public:
    void config_read(uint32_t offset, std::span<uint8_t> data) override {
        std::lock_guard lk(mu_);
        cfg_.read(offset, data);
    }
    void config_write(uint32_t offset, std::span<const uint8_t> data) override {
        std::lock_guard lk(mu_);
        cfg_.write(offset, data);
    }
    void save_state(StateSaver& out) override {
        std::lock_guard lk(mu_);
        cfg_.visit_state(out);
    }
    Status restore_state(StateLoader& in) override {
        std::lock_guard lk(mu_);
        PciConfigSpace loaded = cfg_;
        loaded.visit_state(in);
        if (auto st = in.finish(); !st) return st;
        if (auto st = loaded.same_identity(cfg_, in.where()); !st) return st;
        cfg_ = loaded;
        return {};
    }

  protected:
    std::mutex mu_;
    PciConfigSpace cfg_;  // under mu_ once the function is on a host
};

}  // namespace kv
