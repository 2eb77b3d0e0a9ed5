#include "vmm/devices/pci_host.h"

#include <algorithm>
#include <string>

#include "vmm/devices/device_state.h"

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

// 00:00.0: the bridge itself. Read-only apart from the interrupt-line scratch register,
// so its header is all its state.
class PciHostBridgeFunction : public HeaderPciFunction {
  public:
    PciHostBridgeFunction(uint16_t vendor, uint16_t device) {
        cfg_.set16(PciConfigSpace::kVendorId, vendor);
        cfg_.set16(PciConfigSpace::kDeviceId, device);
        cfg_.set8(PciConfigSpace::kClassCode + 2, 0x06);  // bridge
        cfg_.set8(PciConfigSpace::kClassCode + 1, 0x00);  // host bridge
        cfg_.set8(PciConfigSpace::kHeaderType, 0x00);     // type 0, single function
        cfg_.set_writable(PciConfigSpace::kInterruptLine, 1);
    }
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

namespace {
// The field of the function at 00:slot.fn: "slot3_fn0".
std::string function_field(size_t i) {
    return "slot" + std::to_string(i / PciHost::kFunctions) + "_fn" +
           std::to_string(i % PciHost::kFunctions);
}
void function_state(PciDevice& fn, StateSaver& out) {
    fn.save_state(out);
}
void function_state(PciDevice& fn, StateLoader& in) {
    if (auto st = fn.restore_state(in); !st) in.fail(st.error().message);
}
}  // namespace

// Every attached function has a field by its place, so a snapshot of a guest with other
// functions is refused (missing, or unknown field). As in read() and write(), functions are
// called with mu_ released.
template <class V>
void PciHost::visit_state(V& v) {
    decltype(slots_) slots;
    {
        std::lock_guard lk(mu_);
        v("address", address_);
        v("rst_cnt", rst_cnt_);
        slots = slots_;
    }
    for (size_t i = 0; i < slots.size(); ++i)
        if (slots[i]) v.object(function_field(i), [&](auto& w) { function_state(*slots[i], w); });
}

void PciHost::save_state(StateSaver& out) {
    visit_state(out);
}

Status PciHost::restore_state(StateLoader& in) {
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    std::lock_guard lk(mu_);
    if (address_ & ~kAddressMask)
        return Error{in.where() + ".address: reserved bits (30:24, 1:0) set"};
    if (rst_cnt_ & ~kRstCntStored)
        return Error{in.where() + ".rst_cnt: bits other than SYS_RST and FULL_RST set"};
    // Nothing derived to recompute: the bridge raises no interrupt, and a function's
    // restore_state() brings its own state (e.g. BAR mappings) up to date.
    return {};
}

}  // namespace kv
