// i8042 keyboard controller stub at ports 0x60 (data) and 0x64 (status/command).
//
// The FADT says the machine has no 8042 and the DSDT lists no PS/2 device, so Linux never
// probes it. It is here for one thing: Linux's reboot fallback (and some boot loaders)
// reset the machine through the controller, either with command 0xFE (pulse the reset
// line) or by writing the output port (command 0xD1, then a data byte with bit 0 clear).
// Both call the reset callback. Before writing, Linux polls the status register until
// "input buffer full" (bit 1) is clear: the status always reads 0 (no data, buffer empty).
//
// The device decodes the logical range 0x60..0x64; insert it at 0x60 with dev_offset
// kDataOffset and at 0x64 with dev_offset kCommandOffset, one byte each (0x61 belongs to
// the PIT), or use PortWindow.
// Threading: reads/writes from any vCPU; the pending-command byte is under a mutex; the
// reset callback runs on the writing vCPU thread after the mutex is released.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "vmm/devices/bus.h"

namespace kv {

class I8042 : public Device {
  public:
    static constexpr uint64_t kDataOffset = 0;     // port 0x60
    static constexpr uint64_t kCommandOffset = 4;  // port 0x64

    explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // The pending command byte: a 0xD1 saved waits for its data byte after the restore.
    void save_state(StateSaver& out) override;
    Status restore_state(StateLoader& in) override;

  private:
    template <class V>
    void visit_state(V& v);
    const std::function<void()> on_reset_;
    std::mutex mu_;
    uint8_t pending_command_ = 0;  // a command waiting for its data byte (0 = none)
};

}  // namespace kv
