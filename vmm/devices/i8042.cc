#include "vmm/devices/i8042.h"

#include <algorithm>

#include "base/log.h"

namespace kv {
namespace {
constexpr uint8_t kCmdWriteOutputPort = 0xD1;
constexpr uint8_t kCmdPulseReset = 0xFE;
constexpr uint8_t kOutputPortResetBit = 0x01;  // 0 = assert the CPU reset line
}  // namespace

void I8042::read(uint64_t, std::span<uint8_t> data) {
    // Status 0: output buffer empty, input buffer empty. Data reads 0 (nothing queued).
    std::fill(data.begin(), data.end(), 0);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    const uint8_t v = data[0];
    bool reset = false;
    {
        std::lock_guard lk(mu_);
        if (offset == kCommandOffset) {
            pending_command_ = 0;
            if (v == kCmdPulseReset) {
                reset = true;
            } else if (v == kCmdWriteOutputPort) {
                pending_command_ = v;
            } else {
                KV_DEBUG("i8042: command 0x%02x ignored", v);
            }
        } else if (offset == kDataOffset) {
            if (pending_command_ == kCmdWriteOutputPort && !(v & kOutputPortResetBit)) reset = true;
            pending_command_ = 0;
        }
    }
    // Outside the lock: the callback may stop vCPUs, one of which could be waiting here.
    if (reset && on_reset_) on_reset_();
}

}  // namespace kv
