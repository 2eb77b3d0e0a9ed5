// PCI host bridge with configuration mechanism #1, and the reset control register, at I/O
// 0xCF8..0xCFF (insert at kBase with length kSize).
//
//   0xCF8 CONFIG_ADDRESS  32-bit accesses only: enable (bit 31), bus 23:16, device 15:11,
//                         function 10:8, register 7:2. Narrower accesses go elsewhere:
//   0xCF9 RST_CNT         byte register: a write with bit 2 (RST_CPU) set, e.g. the FADT's
//                         RESET_VALUE 0x06 or Linux's reboot=pci sequence 0x02, 0x06, calls
//                         the reset callback; reads return bits 1 and 3 as last written
//   0xCFC CONFIG_DATA     any width, at 0xCFC + (register offset & 3)
//
// Bus 0 only. Slot 0 function 0 is the host bridge itself (class 0x0600, header type 0, all
// registers read-only except the interrupt line scratch byte); other functions come from
// attach() (virtio-pci later). Absent functions, other buses and accesses with the enable
// bit clear read all-ones and drop writes, which is how Linux's enumeration finds nothing.
// Linux's type-1 probe (pci_check_type1) writes 0x80000000 to CONFIG_ADDRESS, expects to
// read it back, and then looks for a function of class "host bridge" on bus 0.
//
// Threading: CONFIG_ADDRESS, the slot table and RST_CNT are under one mutex; a config access
// is handed to the function after the mutex is released (the function locks itself), so a
// function may be slow or take its own locks without holding up the bridge. Linux
// serialises the address/data pair itself (pci_config_lock). The reset callback runs
// after the mutex is released, once per qualifying write.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "base/result.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/pci_device.h"

namespace kv {

class PciHost : public Device {
  public:
    static constexpr uint64_t kBase = 0xCF8;
    static constexpr uint64_t kSize = 8;
    static constexpr unsigned kSlots = 32, kFunctions = 8;
    // Red Hat, Inc. "QEMU PCIe host bridge": an id Linux knows and has no quirks for.
    static constexpr uint16_t kDefaultVendor = 0x1B36, kDefaultDevice = 0x0008;

    explicit PciHost(std::function<void()> on_reset, uint16_t vendor_id = kDefaultVendor,
                     uint16_t device_id = kDefaultDevice);

    // Puts `fn` at 00:slot.function. Fails when the place is taken or out of range. Call
    // before the guest enumerates (any time is safe, but the guest will not rescan).
    Status attach(unsigned slot, unsigned function, std::shared_ptr<PciDevice> fn);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // CONFIG_ADDRESS, RST_CNT and each attached function's state, by slot.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    template <class V>
    void visit_state(V& v);
    // The function CONFIG_ADDRESS selects, or null; `reg` gets the dword-aligned register.
    std::shared_ptr<PciDevice> selected_locked(uint32_t* reg) const;

    const std::function<void()> on_reset_;
    std::mutex mu_;
    uint32_t address_ = 0;
    uint8_t rst_cnt_ = 0;
    std::array<std::shared_ptr<PciDevice>, kSlots * kFunctions> slots_;
};

}  // namespace kv
