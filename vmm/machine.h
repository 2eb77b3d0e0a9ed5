// One guest on this node: KVM VM, guest RAM, vCPUs, interrupt controllers and devices,
// assembled in one readable place (create()) and run until the guest stops (run()).
#pragma once

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/guest_memory.h"
#include "vcpu/ipi_router.h"
#include "vcpu/kvm.h"
#include "vcpu/vcpu.h"
#include "vmm/config/config.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/irq.h"

namespace kv {

class Ioapic;
class Pic8259;
class Pit8254;
class Uart8250;
class Console;

// Why run() returned.
enum class StopReason {
    PowerOff,  // ACPI S5
    Reset,     // reset register, keyboard controller
    Crashed,   // triple fault, guest panic
    Failed,    // the VMM could not go on (KVM error)
    UserQuit,  // Ctrl-A x on the console
};

struct StopEvent {
    StopReason reason = StopReason::PowerOff;
    std::string detail;
};

class Machine : public IoHandler, public IrqChip {
  public:
    // Errors from bad input (kernel, initrd, memory, vcpus) start with the key at fault.
    static Result<std::unique_ptr<Machine>> create(const config::VmConfig& cfg);
    ~Machine() override;

    StopEvent run();
    void print_stats(FILE* out) const;

    // IoHandler (vCPU threads)
    bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) override;
    bool mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) override;
    // IrqChip: ISA IRQ numbers below 16 go to both the PIC and the IOAPIC (IRQ 0 on pin 2).
    void set_irq(uint32_t irq, bool level) override;

    // Any thread: the guest is over.
    void request_stop(StopReason reason, std::string detail);

  private:
    Machine() = default;
    Status build(const config::VmConfig& cfg);
    Status setup_devices(const config::VmConfig& cfg);
    Status create_vm_and_vcpus(uint32_t n);

    config::VmConfig cfg_;
    std::optional<Kvm> kvm_;
    VmFd vm_;
    std::optional<GuestMemory> mem_;
    std::unique_ptr<IpiRouter> router_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    Bus pio_bus_, mmio_bus_;
    std::shared_ptr<Ioapic> ioapic_;
    std::shared_ptr<Pic8259> pic_;
    std::shared_ptr<Pit8254> pit_;
    std::shared_ptr<Uart8250> uart_;
    std::unique_ptr<Console> console_;
    Fd console_file_;

    std::mutex stop_mu_;
    std::condition_variable stop_cv_;
    std::optional<StopEvent> stop_;
};

}  // namespace kv
