#include "vmm/devices/i8042.h"

#include <algorithm>
#include <string>

#include "base/log.h"
#include "vmm/devices/device_state.h"

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

// The status and data registers always read 0 and there is no interrupt: the pending
// command is all the state there is.
template <class V>
void I8042::visit_state(V& v) {
    v("pending_command", pending_command_);
}

void I8042::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status I8042::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    if (pending_command_ != 0 && pending_command_ != kCmdWriteOutputPort)
        return Error{in.where() + ".pending_command: " + std::to_string(pending_command_) +
                     " is not a command that waits for data (0 or 0xD1)"};
    return {};
}

}  // namespace kv
