#include "vmm/devices/pci_host.h"

#include <algorithm>

namespace kv {
namespace {
constexpr uint32_t kEnable = 1u << 31;
// Reserved bits 30:24 and 1:0 read back as zero.
constexpr uint32_t kAddressMask = kEnable | 0x00FFFFFCu;
constexpr uint64_t kRstCntOffset = 1;
constexpr uint8_t kRstCpu = 1u << 2;
constexpr uint8_t kRstCntStored = 0x0A;  // SYS_RST (bit 1) and FULL_RST (bit 3)
constexpr uint64_t kDataOffset = 4;
}  // namespace

// 00:00.0: the bridge itself. Read-only apart from the interrupt-line scratch register.
class PciHostBridgeFunction : public PciDevice {
  public:
    PciHostBridgeFunction(uint16_t vendor, uint16_t device) {
        cfg_.set16(PciConfigSpace::kVendorId, vendor);
        cfg_.set16(PciConfigSpace::kDeviceId, device);
        cfg_.set8(PciConfigSpace::kClassCode + 2, 0x06);  // bridge
        cfg_.set8(PciConfigSpace::kClassCode + 1, 0x00);  // host bridge
        cfg_.set8(PciConfigSpace::kHeaderType, 0x00);     // type 0, single function
        cfg_.set_writable(PciConfigSpace::kInterruptLine, 1);
    }
    void config_read(uint32_t offset, std::span<uint8_t> data) override {
        std::lock_guard lk(mu_);
        cfg_.read(offset, data);
    }
    void config_write(uint32_t offset, std::span<const uint8_t> data) override {
        std::lock_guard lk(mu_);
        cfg_.write(offset, data);
    }

  private:
    std::mutex mu_;
    PciConfigSpace cfg_;
};

PciHost::PciHost(std::function<void()> on_reset, uint16_t vendor_id, uint16_t device_id)
    : on_reset_(std::move(on_reset)) {
    slots_[0] = std::make_shared<PciHostBridgeFunction>(vendor_id, device_id);
}

Status PciHost::attach(unsigned slot, unsigned function, std::shared_ptr<PciDevice> fn) {
    if (slot >= kSlots || function >= kFunctions)
        return Error{"pci: no slot " + std::to_string(slot) + "." + std::to_string(function)};
    std::lock_guard lk(mu_);
    auto& place = slots_[slot * kFunctions + function];
    if (place)
        return Error{"pci: slot " + std::to_string(slot) + "." + std::to_string(function) +
                     " is taken"};
    place = std::move(fn);
    return {};
}

std::shared_ptr<PciDevice> PciHost::selected_locked(uint32_t* reg) const {
    if (!(address_ & kEnable)) return nullptr;
    const unsigned bus = (address_ >> 16) & 0xFF;
    const unsigned devfn = (address_ >> 8) & 0xFF;
    *reg = address_ & 0xFC;
    if (bus != 0) return nullptr;
    return slots_[devfn];
}

void PciHost::read(uint64_t offset, std::span<uint8_t> data) {
    std::shared_ptr<PciDevice> fn;
    uint32_t reg = 0;
    {
        std::lock_guard lk(mu_);
        if (offset == 0 && data.size() == 4) {
            store_le(data, address_);
            return;
        }
        if (offset == kRstCntOffset && data.size() == 1) {
            data[0] = rst_cnt_;
            return;
        }
        if (offset >= kDataOffset) fn = selected_locked(&reg);
    }
    if (!fn || offset + data.size() > kSize) {
        std::fill(data.begin(), data.end(), 0xFF);
        return;
    }
    fn->config_read(reg + uint32_t(offset - kDataOffset), data);
}

void PciHost::write(uint64_t offset, std::span<const uint8_t> data) {
    std::shared_ptr<PciDevice> fn;
    uint32_t reg = 0;
    bool reset = false;
    {
        std::lock_guard lk(mu_);
        if (offset == 0 && data.size() == 4) {
            address_ = uint32_t(load_le(data)) & kAddressMask;
            return;
        }
        if (offset == kRstCntOffset && data.size() == 1) {
            rst_cnt_ = data[0] & kRstCntStored;
            reset = (data[0] & kRstCpu) != 0;
        } else if (offset >= kDataOffset) {
            fn = selected_locked(&reg);
        }
    }
    // Outside the lock: the reset callback stops vCPUs, this one included.
    if (reset && on_reset_) on_reset_();
    if (fn && offset + data.size() <= kSize)
        fn->config_write(reg + uint32_t(offset - kDataOffset), data);
}

}  // namespace kv
