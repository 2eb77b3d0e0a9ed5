// The harness of the KVM test tier: a minimal machine around the real vCPU code (KVM VM,
// guest RAM, Vcpus with their emulated LAPICs, the IPI router) that runs the freestanding
// test guest (guest-image/freestanding/, docs/testing-kvm.md) and captures what it
// reports: serial bytes, an exit status, timestamped marks, the results block in guest
// memory, and the vCPU and router counters.
//
// Threading: vCPU threads call pio()/mmio() and the fatal callback; the test thread
// waits in run() until the guest writes its exit port, a vCPU fails, or the timeout
// passes, then stops and joins every vCPU before it reads guest memory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "guest-image/freestanding/protocol.h"
#include "memory/guest_memory.h"
#include "vcpu/ipi_router.h"
#include "vcpu/kvm.h"
#include "vcpu/vcpu.h"

namespace kv::kvmtest {

// The guest image built from guest-image/freestanding/ and linked into the test binary.
std::span<const uint8_t> guest_image();

// "KVT_EXIT_IPI_TIMEOUT" and so on, for messages.
std::string exit_status_name(uint32_t status);

struct Mark {
    uint32_t id;
    uint64_t ns;  // CLOCK_MONOTONIC when the vCPU's port write reached the harness
};

struct GuestRun {
    enum class End { Exited, Fatal, Timeout };
    End end = End::Timeout;
    uint32_t exit_status = 0;  // valid when end == Exited
    std::string detail;        // why it ended, for Fatal and Timeout
    std::string serial;
    std::vector<Mark> marks;
    std::vector<std::string> unexpected_io;  // accesses the harness does not answer
    kvt_results results{};
    std::string counters;  // vCPU and router counters as vmm-launch --stats prints them

    bool passed() const { return end == End::Exited && exit_status == KVT_EXIT_PASS; }
    std::optional<uint64_t> mark_ns(uint32_t id) const;
    // Everything above in a few lines: for assertion messages.
    std::string describe() const;
};

class TestVm : private IoHandler {
  public:
    static constexpr uint64_t kMemorySize = 16ull << 20;

    // A VM with `num_vcpus` vCPUs (vCPU 0 is the BSP), all attached to one router.
    static Result<std::unique_ptr<TestVm>> create(uint32_t num_vcpus,
                                                  const char* kvm_path = "/dev/kvm");
    ~TestVm() override;
    TestVm(const TestVm&) = delete;
    TestVm& operator=(const TestVm&) = delete;

    // Loads the guest with `params`, starts vCPU 0 as the BSP and the others as APs
    // waiting for INIT/SIPI, waits for the end of the run, stops every vCPU. Once only.
    // `during`, if given, runs on the calling thread once every vCPU is started and before
    // the wait for the end: a test drives the running guest from there (pause, resume,
    // read and write guest memory) and returns when it is done.
    Result<GuestRun> run(const kvt_params& params, std::chrono::milliseconds timeout,
                         const std::function<void(TestVm&)>& during = {});

    Vcpu& vcpu_mut(uint32_t i) { return *vcpus_.at(i); }
    // Guest memory while the guest runs (one node, no coherence: a plain mapping).
    GuestMemory& memory() { return *mem_; }

    const IpiRouter& router() const { return *router_; }
    const Vcpu& vcpu(uint32_t i) const { return *vcpus_.at(i); }
    const Kvm& kvm() const { return *kvm_; }

  private:
    TestVm() = default;
    Status build(uint32_t num_vcpus, const char* kvm_path);
    Status load(const kvt_params& params);
    void stop_all();
    std::string counters_text() const;

    bool pio(uint16_t port, std::span<uint8_t> data, bool is_write) override;
    bool mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) override;
    void unexpected(std::string what);
    void on_fatal(uint32_t vcpu, const std::string& why);

    // Declaration order is destruction order in reverse: vCPU threads stop (Vcpu's
    // destructor joins) before the router, the VM and guest memory go away.
    std::optional<Kvm> kvm_;
    VmFd vm_;
    std::optional<GuestMemory> mem_;
    std::unique_ptr<IpiRouter> router_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    bool ran_ = false;

    std::mutex mu_;  // guards everything below; vCPU threads write it
    std::condition_variable cv_;
    std::optional<uint32_t> exit_status_;
    std::optional<std::string> fatal_;
    std::string serial_;
    std::vector<Mark> marks_;
    std::vector<std::string> unexpected_io_;
};

// Can this machine's KVM run the freestanding guest in long mode? Runs the serial
// scenario on one vCPU; returns a one-line description of what worked, or why not.
Result<std::string> probe(const char* kvm_path = "/dev/kvm");

}  // namespace kv::kvmtest
