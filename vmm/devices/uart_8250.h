// 16550A UART (8250 family) as Linux's 8250 driver drives COM1: I/O 0x3F8..0x3FF, IRQ 4.
//
// Registers (offset; DLAB = LCR bit 7):
//   0  RBR (read) / THR (write); DLL when DLAB=1     4  MCR: DTR RTS OUT1 OUT2 LOOP
//   1  IER: RDA, THRE, RLS, MSR; DLM when DLAB=1     5  LSR
//   2  IIR (read) / FCR (write)                      6  MSR
//   3  LCR                                           7  SCR (scratch)
//
// Transmission is instantaneous: a THR write hands the byte to the sink at once, so THR and
// the transmitter are always empty (LSR THRE and TEMT always set), and the divisor and line
// settings are stored but change nothing.
//
// Interrupts, highest priority first, as IIR reports them:
//   receiver line status (LSR overrun; only loopback can overrun, see below)
//   received data: RDA when the RX FIFO holds at least the FCR trigger level, otherwise
//     "character timeout" at once (there is no line time to wait for); Linux treats both
//     the same and reads RBR while LSR.DR is set
//   THR empty: pending after every THR write (the byte leaves at once) and when IER.THRE
//     goes from 0 to 1 (Linux's start_tx and its start-up THRE/TXEN tests rely on this);
//     cleared by writing THR or by an IIR read that reports it
//   modem status: MSR delta bits (they change only in loopback)
// The line (IrqLine::set) is high while an enabled interrupt is pending and MCR.OUT2 is set
// outside loopback (a PC gates the UART's interrupt with OUT2, which Linux sets when it
// opens the port). The ISA IOAPIC pin is edge-triggered: Linux's handler reads IIR until it
// says "no interrupt", which drops the line, so every new condition gives a new rising edge.
//
// Input: push_input() queues bytes in a backlog (capacity set at construction, 4 KiB by
// default) from which the 16-byte RX FIFO (1 byte with FIFOs off) is refilled as the guest
// reads. When the backlog is full the pusher BLOCKS until the guest makes room or the
// pusher's stop_token is triggered: typed input is never dropped by the device. The only
// bytes that disappear are ones the guest discards itself (FCR "clear RX FIFO", FIFO
// enable toggled). In loopback, THR bytes go to the RX FIFO (overrun sets LSR.OE when it is
// full) and the backlog waits until loopback ends.
//
// Threading: vCPU threads (read/write) and one or more input threads (push_input) share the
// state under mu_. The IRQ level is driven under mu_ so level changes reach the interrupt
// controller in order (the IrqChip must not call back into devices). The sink runs without
// mu_ but under out_mu_, taken before mu_ is released, so output keeps the guest's order
// and a slow sink does not stall input; the sink must not call back into the UART.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <stop_token>

#include "vmm/devices/bus.h"
#include "vmm/devices/irq.h"

namespace kv {

class Uart8250 : public Device {
  public:
    using Sink = std::function<void(std::span<const uint8_t>)>;

    static constexpr uint64_t kCom1Base = 0x3F8;
    static constexpr uint64_t kSize = 8;
    static constexpr uint32_t kCom1Irq = 4;
    static constexpr size_t kFifoDepth = 16;
    static constexpr size_t kDefaultBacklog = 4096;

    // Register offsets.
    static constexpr uint64_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5,
                              kMsr = 6, kScr = 7;
    // IER bits.
    static constexpr uint8_t kIerRda = 0x01, kIerThre = 0x02, kIerRls = 0x04, kIerMsi = 0x08;
    // IIR values (without the FIFO bits 7:6).
    static constexpr uint8_t kIirNone = 0x01, kIirMsi = 0x00, kIirThre = 0x02, kIirRda = 0x04,
                             kIirRls = 0x06, kIirTimeout = 0x0C, kIirFifoBits = 0xC0;
    // FCR bits.
    static constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02, kFcrClearTx = 0x04;
    // LCR / MCR bits.
    static constexpr uint8_t kLcrDlab = 0x80;
    static constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08,
                             kMcrLoop = 0x10;
    // LSR bits.
    static constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrThre = 0x20, kLsrTemt = 0x40;
    // MSR bits.
    static constexpr uint8_t kMsrDcts = 0x01, kMsrDdsr = 0x02, kMsrTeri = 0x04, kMsrDdcd = 0x08,
                             kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

    Uart8250(IrqLine irq, Sink sink, size_t backlog_capacity = kDefaultBacklog);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // Registers, RX FIFO and input backlog; the IRQ line is driven again on restore.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

    // Queues `bytes` for the guest, blocking while the backlog is full. Returns how many
    // bytes were queued: all of them, unless `stop` was triggered while waiting. Do not
    // destroy the UART while a push_input call may be blocked: stop the pusher first.
    size_t push_input(std::span<const uint8_t> bytes, std::stop_token stop = {});

    // The level last driven on the IRQ line.
    bool irq_level() const;
    // Input bytes not yet read by the guest (RX FIFO plus backlog).
    size_t pending_input() const;

  private:
    template <class V>
    void visit_state(V& v);
    uint8_t read_reg_locked(uint64_t reg);
    // Returns true when `out` got a byte for the sink.
    bool write_reg_locked(uint64_t reg, uint8_t v, uint8_t* out);
    uint8_t iir_locked() const;
    uint8_t msr_status_locked() const;
    void set_mcr_locked(uint8_t v);
    size_t rx_capacity_locked() const { return fifo_enabled_ ? kFifoDepth : 1; }
    void refill_locked();
    // The level the line should have: an enabled interrupt pending, gated by OUT2.
    bool line_locked() const;
    void update_irq_locked();

    const IrqLine irq_;
    const Sink sink_;
    const size_t backlog_capacity_;

    std::mutex out_mu_;  // orders sink calls; taken while holding mu_, then mu_ is dropped
    mutable std::mutex mu_;
    std::condition_variable_any space_cv_;  // backlog space for push_input
    std::deque<uint8_t> rx_fifo_;
    std::deque<uint8_t> backlog_;
    uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 0x0C, dlm_ = 0;  // 9600 baud
    bool fifo_enabled_ = false;
    size_t rx_trigger_ = 1;
    bool overrun_ = false;       // LSR.OE until LSR is read
    bool thre_pending_ = false;  // THRE interrupt condition
    uint8_t msr_delta_ = 0;      // MSR bits 3:0 until MSR is read
    bool irq_level_ = false;
};

}  // namespace kv
