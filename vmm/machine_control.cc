// Machine: the pause path (stop/cont) and what the control plane reads of the vCPUs.
#include <cinttypes>

#include "vmm/devices/acpi_pm.h"
#include "vmm/machine.h"
#include "vmm/node/node_link.h"

namespace kv {

Status Machine::pause(std::chrono::milliseconds timeout) {
    if (multi_) return Error{"pause: a guest over several nodes cannot be paused yet"};
    std::lock_guard g(pause_mu_);
    if (paused_at_tsc_) return {};
    for (auto& v : vcpus_) v->request_pause();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (auto& v : vcpus_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (!v->wait_paused(std::max(left, std::chrono::milliseconds(0)))) {
            for (auto& w : vcpus_) w->resume();
            return Error{"pause: vCPU " + std::to_string(v->index()) +
                         " did not reach an exit "
                         "boundary within " +
                         std::to_string(timeout.count()) + " ms"};
        }
    }
    // Every vCPU is out of the guest: now the clocks. The guest TSC runs on in KVM; resume()
    // takes the paused cycles out of every vCPU's TSC offset.
    device_clock_->pause();
    paused_at_tsc_ = __builtin_ia32_rdtsc();
    return {};
}

Status Machine::resume() {
    if (multi_) return Error{"resume: a guest over several nodes cannot be paused yet"};
    std::lock_guard g(pause_mu_);
    if (!paused_at_tsc_) return {};
    const uint64_t cycles = __builtin_ia32_rdtsc() - *paused_at_tsc_;
    for (auto& v : vcpus_) {
        auto off = v->fd().get_tsc_offset();
        if (!off)
            return Error{"resume: vCPU " + std::to_string(v->index()) + ": " + off.error().message};
        if (auto st = v->fd().set_tsc_offset(*off - cycles); !st)
            return Error{"resume: vCPU " + std::to_string(v->index()) + ": " + st.error().message};
    }
    device_clock_->resume();
    paused_at_tsc_.reset();
    for (auto& v : vcpus_) v->resume();
    return {};
}

bool Machine::paused() const {
    std::lock_guard g(pause_mu_);
    return paused_at_tsc_.has_value();
}

std::vector<Machine::VcpuInfo> Machine::vcpu_info() const {
    std::vector<VcpuInfo> out;
    for (const auto& v : vcpus_) {
        VcpuInfo i;
        i.index = v->index();
        i.node = self_;
        i.state = v->run_state();
        for (const auto& e : v->counters().exits) i.exits += e.load(std::memory_order_relaxed);
        i.halts = v->counters().halts.load(std::memory_order_relaxed);
        i.paused_ns = v->paused_ns();
        out.push_back(i);
    }
    return out;
}

void Machine::press_power_button() {
    if (acpi_pm_) acpi_pm_->press_power_button();
}

}  // namespace kv
