#include "vmm/devices/uart_8250.h"

#include <algorithm>
#include <iterator>
#include <string>

#include "vmm/devices/device_state.h"

namespace kv {
namespace {
constexpr size_t kTriggerLevels[4] = {1, 4, 8, 14};
// Without loopback the modem inputs are tied the way a terminal that is always there
// would drive them: carrier, data set ready and clear to send.
constexpr uint8_t kMsrIdle = Uart8250::kMsrDcd | Uart8250::kMsrDsr | Uart8250::kMsrCts;
}  // namespace

Uart8250::Uart8250(IrqLine irq, Sink sink, size_t backlog_capacity)
    : irq_(irq),
      sink_(std::move(sink)),
      backlog_capacity_(backlog_capacity ? backlog_capacity : 1) {}

bool Uart8250::irq_level() const {
    std::lock_guard lk(mu_);
    return irq_level_;
}

size_t Uart8250::pending_input() const {
    std::lock_guard lk(mu_);
    return rx_fifo_.size() + backlog_.size();
}

uint8_t Uart8250::iir_locked() const {
    const uint8_t fifo = fifo_enabled_ ? kIirFifoBits : 0;
    if ((ier_ & kIerRls) && overrun_) return fifo | kIirRls;
    if ((ier_ & kIerRda) && !rx_fifo_.empty())
        return fifo | (fifo_enabled_ && rx_fifo_.size() < rx_trigger_ ? kIirTimeout : kIirRda);
    if ((ier_ & kIerThre) && thre_pending_) return fifo | kIirThre;
    if ((ier_ & kIerMsi) && msr_delta_) return fifo | kIirMsi;
    return fifo | kIirNone;
}

bool Uart8250::line_locked() const {
    const bool gate = (mcr_ & kMcrOut2) && !(mcr_ & kMcrLoop);
    return gate && !(iir_locked() & kIirNone);
}

void Uart8250::update_irq_locked() {
    const bool level = line_locked();
    if (level != irq_level_) {
        irq_level_ = level;
        irq_.set(level);
    }
}

void Uart8250::refill_locked() {
    // In loopback the receiver is disconnected from the line: the backlog waits.
    if (mcr_ & kMcrLoop) return;
    bool moved = false;
    while (!backlog_.empty() && rx_fifo_.size() < rx_capacity_locked()) {
        rx_fifo_.push_back(backlog_.front());
        backlog_.pop_front();
        moved = true;
    }
    if (moved) space_cv_.notify_all();
}

uint8_t Uart8250::msr_status_locked() const {
    if (!(mcr_ & kMcrLoop)) return kMsrIdle;
    // Loopback wires the modem outputs back to the inputs.
    uint8_t s = 0;
    if (mcr_ & kMcrRts) s |= kMsrCts;
    if (mcr_ & kMcrDtr) s |= kMsrDsr;
    if (mcr_ & kMcrOut1) s |= kMsrRi;
    if (mcr_ & kMcrOut2) s |= kMsrDcd;
    return s;
}

void Uart8250::set_mcr_locked(uint8_t v) {
    const uint8_t before = msr_status_locked();
    mcr_ = v & 0x1F;
    const uint8_t after = msr_status_locked();
    const uint8_t changed = before ^ after;
    if (changed & kMsrCts) msr_delta_ |= kMsrDcts;
    if (changed & kMsrDsr) msr_delta_ |= kMsrDdsr;
    if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= kMsrTeri;  // trailing edge
    if (changed & kMsrDcd) msr_delta_ |= kMsrDdcd;
    refill_locked();  // leaving loopback reconnects the receiver
}

void Uart8250::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) data[i] = read_reg_locked((offset + i) & 7);
    update_irq_locked();
}

uint8_t Uart8250::read_reg_locked(uint64_t reg) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThr: {
            if (dlab) return dll_;
            if (rx_fifo_.empty()) return 0;
            uint8_t b = rx_fifo_.front();
            rx_fifo_.pop_front();
            refill_locked();
            return b;
        }
        case kIer:
            return dlab ? dlm_ : ier_;
        case kIirFcr: {
            uint8_t iir = iir_locked();
            // Reading IIR acknowledges THRE, and only when THRE is what it reports.
            if ((iir & 0x0F) == kIirThre) thre_pending_ = false;
            return iir;
        }
        case kLcr:
            return lcr_;
        case kMcr:
            return mcr_;
        case kLsr: {
            uint8_t lsr = kLsrThre | kLsrTemt;
            if (!rx_fifo_.empty()) lsr |= kLsrDr;
            if (overrun_) lsr |= kLsrOe;
            overrun_ = false;  // error bits clear on read
            return lsr;
        }
        case kMsr: {
            uint8_t msr = msr_status_locked() | msr_delta_;
            msr_delta_ = 0;
            return msr;
        }
        default:
            return scr_;
    }
}

void Uart8250::write(uint64_t offset, std::span<const uint8_t> data) {
    std::unique_lock lk(mu_);
    uint8_t out[8];
    size_t n = 0;
    for (size_t i = 0; i < data.size() && i < sizeof out; ++i)
        if (write_reg_locked((offset + i) & 7, data[i], &out[n])) ++n;
    update_irq_locked();
    if (n == 0 || !sink_) return;
    // Hand-over: out_mu_ is taken before mu_ is released, so sink calls happen in the order
    // the THR writes did, while input and other registers are not held up by the sink.
    std::unique_lock out_lk(out_mu_);
    lk.unlock();
    sink_(std::span<const uint8_t>(out, n));
}

bool Uart8250::write_reg_locked(uint64_t reg, uint8_t v, uint8_t* out) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThr:
            if (dlab) {
                dll_ = v;
                return false;
            }
            // The byte leaves at once, so THR is empty again right away.
            thre_pending_ = true;
            if (mcr_ & kMcrLoop) {
                if (rx_fifo_.size() < rx_capacity_locked())
                    rx_fifo_.push_back(v);
                else
                    overrun_ = true;
                return false;
            }
            *out = v;
            return true;
        case kIer: {
            if (dlab) {
                dlm_ = v;
                return false;
            }
            const uint8_t old = ier_;
            ier_ = v & 0x0F;
            // Enabling the THRE interrupt while THR is empty (always) raises it.
            if (!(old & kIerThre) && (ier_ & kIerThre)) thre_pending_ = true;
            return false;
        }
        case kIirFcr: {
            const bool enable = v & kFcrEnable;
            // Toggling the FIFO enable clears both FIFOs, as on the chip.
            if (enable != fifo_enabled_) rx_fifo_.clear();
            fifo_enabled_ = enable;
            if (enable) {
                if (v & kFcrClearRx) rx_fifo_.clear();
                rx_trigger_ = kTriggerLevels[v >> 6];
            } else {
                rx_trigger_ = 1;
            }
            // kFcrClearTx: the transmitter is always empty.
            refill_locked();
            return false;
        }
        case kLcr:
            lcr_ = v;
            return false;
        case kMcr:
            set_mcr_locked(v);
            return false;
        case kLsr:
        case kMsr:
            return false;  // read-only (factory test writes are ignored)
        default:
            scr_ = v;
            return false;
    }
}

size_t Uart8250::push_input(std::span<const uint8_t> bytes, std::stop_token stop) {
    std::unique_lock lk(mu_);
    size_t done = 0;
    while (done < bytes.size()) {
        if (!space_cv_.wait(lk, stop, [&] { return backlog_.size() < backlog_capacity_; }))
            break;  // stop requested while the guest was not reading
        while (done < bytes.size() && backlog_.size() < backlog_capacity_)
            backlog_.push_back(bytes[done++]);
        refill_locked();
        update_irq_locked();
    }
    return done;
}

// The chip's registers and RX FIFO, and the input backlog: bytes push_input() accepted
// (the pusher was told they were queued) that the guest has not read yet. They are saved
// so that input typed before the snapshot reaches the restored guest, as the device never
// drops input. Not saved: irq_level_, which follows from the rest (recomputed below); the
// sink and the backlog capacity, which are the host's. THR and the transmitter are always
// empty, so no output is in flight here (what the console has yet to write out is the
// host's, not the guest's).
template <class V>
void Uart8250::visit_state(V& v) {
    v("ier", ier_);
    v("lcr", lcr_);
    v("mcr", mcr_);
    v("scr", scr_);
    v("dll", dll_);
    v("dlm", dlm_);
    v("fifo_enabled", fifo_enabled_);
    v("rx_trigger", rx_trigger_);
    v("overrun", overrun_);
    v("thre_pending", thre_pending_);
    v("msr_delta", msr_delta_);
    v("rx_fifo", rx_fifo_);
    v("backlog", backlog_);
}

void Uart8250::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status Uart8250::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    const std::string& w = in.where();
    if (ier_ & ~0x0F) return Error{w + ".ier: bits 7:4 are not writable"};
    if (mcr_ & ~0x1F) return Error{w + ".mcr: bits 7:5 are not writable"};
    if (msr_delta_ & ~0x0F) return Error{w + ".msr_delta: only bits 3:0 are deltas"};
    const bool level_ok = std::find(std::begin(kTriggerLevels), std::end(kTriggerLevels),
                                    rx_trigger_) != std::end(kTriggerLevels);
    if (!level_ok || (!fifo_enabled_ && rx_trigger_ != 1))
        return Error{w + ".rx_trigger: " + std::to_string(rx_trigger_) +
                     " is not a trigger level (1, 4, 8 or 14; 1 with FIFOs off)"};
    if (rx_fifo_.size() > rx_capacity_locked())
        return Error{w + ".rx_fifo: " + std::to_string(rx_fifo_.size()) +
                     " bytes, the receiver holds at most " + std::to_string(rx_capacity_locked())};
    // A saved state has a full FIFO or an empty backlog (outside loopback); anything else is
    // moved as the chip would. A pusher waiting for space looks again.
    refill_locked();
    space_cv_.notify_all();
    // Drive the line from the restored registers. The interrupt controllers save their pin
    // levels too; setting it unconditionally makes both agree whichever is restored first.
    irq_level_ = line_locked();
    irq_.set(irq_level_);
    return {};
}

}  // namespace kv
