#include "tests/kvm/kvm_harness.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "vmm/boot/boot_cpu.h"
#include "vmm/boot/layout.h"
#include "vmm/devices/clock.h"

// The image bytes, from kvm_guest_image.S (.incbin of the build's guest binary).
extern "C" const uint8_t kvt_guest_image_begin[];
extern "C" const uint8_t kvt_guest_image_end[];

namespace kv::kvmtest {

namespace {

// Where KVM may keep its real-mode TSS (needed on Intel for the AP's real-mode start):
// the same place vmm/machine.cc uses, in the 32-bit hole.
constexpr uint64_t kTssAddr = 0xFFFBD000;

static_assert(KVT_BSP_STACK_TOP < KVT_PARAMS_GPA && KVT_RESULTS_GPA < boot::kEbdaGpa);
static_assert(KVT_TRAMPOLINE_GPA + 0x1000 <= boot::kPml4Gpa,
              "the trampoline page must not overlap the page tables");
static_assert(KVT_PARAMS_GPA + sizeof(kvt_params) <= KVT_RESULTS_GPA);

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

}  // namespace

std::span<const uint8_t> guest_image() {
    return {kvt_guest_image_begin, size_t(kvt_guest_image_end - kvt_guest_image_begin)};
}

std::string exit_status_name(uint32_t s) {
    switch (s) {
        case KVT_EXIT_PASS:
            return "KVT_EXIT_PASS";
        case KVT_EXIT_BAD_SCENARIO:
            return "KVT_EXIT_BAD_SCENARIO";
        case KVT_EXIT_AP_TIMEOUT:
            return "KVT_EXIT_AP_TIMEOUT (the AP never became ready after INIT/SIPI)";
        case KVT_EXIT_IPI_TIMEOUT:
            return "KVT_EXIT_IPI_TIMEOUT (an IPI to the AP was not handled in time)";
        case KVT_EXIT_IPI_WRONG_TARGET:
            return "KVT_EXIT_IPI_WRONG_TARGET (the BSP received an IPI for the AP)";
        case KVT_EXIT_AP_RESTARTED:
            return "KVT_EXIT_AP_RESTARTED (a SIPI restarted a running AP)";
        case KVT_EXIT_TIMER_TIMEOUT:
            return "KVT_EXIT_TIMER_TIMEOUT (too few timer ticks in time)";
        case KVT_EXIT_TIMER_EXTRA:
            return "KVT_EXIT_TIMER_EXTRA (a one-shot timer fired again)";
        case KVT_EXIT_TIMER_COUNT:
            return "KVT_EXIT_TIMER_COUNT (a fired one-shot timer's current count is not 0)";
        case KVT_EXIT_ICR_BUSY:
            return "KVT_EXIT_ICR_BUSY (ICR delivery status stayed pending)";
        case KVT_EXIT_UNEXPECTED_VECTOR:
            return "KVT_EXIT_UNEXPECTED_VECTOR";
        default:
            if (s >= KVT_EXIT_EXCEPTION_BASE && s < KVT_EXIT_EXCEPTION_BASE + 32)
                return "guest exception " + std::to_string(s - KVT_EXIT_EXCEPTION_BASE);
            return "unknown status " + std::to_string(s);
    }
}

std::optional<uint64_t> GuestRun::mark_ns(uint32_t id) const {
    for (const auto& m : marks)
        if (m.id == id) return m.ns;
    return std::nullopt;
}

std::string GuestRun::describe() const {
    std::string s;
    switch (end) {
        case End::Exited:
            s = "guest exited with " + exit_status_name(exit_status);
            break;
        case End::Fatal:
            s = "vCPU failed: " + detail;
            break;
        case End::Timeout:
            s = "timeout: " + detail;
            break;
    }
    if (end == End::Exited && exit_status >= KVT_EXIT_EXCEPTION_BASE)
        s += " at RIP " + hex(results.exception_rip) + ", error code " +
             hex(results.exception_error);
    if (end == End::Exited && exit_status == KVT_EXIT_UNEXPECTED_VECTOR)
        s += " (vector " + hex(results.unexpected_vector) + ")";
    s += "\nserial output: \"" + serial + "\"\n";
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "results: ap_started=%u ap_ready=%u ipis_sent=%u ipi_received=[%u %u] "
                  "timer_ticks=%u timer_count_after=%u\n",
                  results.ap_started, results.ap_ready, results.ipis_sent, results.ipi_received[0],
                  results.ipi_received[1], results.timer_ticks, results.timer_count_after);
    s += buf;
    for (const auto& u : unexpected_io) s += "unexpected access: " + u + "\n";
    return s + counters;
}

Result<std::unique_ptr<TestVm>> TestVm::create(uint32_t num_vcpus, const char* kvm_path) {
    std::unique_ptr<TestVm> vm(new TestVm());
    KV_TRY(vm->build(num_vcpus, kvm_path));
    return vm;
}

TestVm::~TestVm() {
    stop_all();
}

Status TestVm::build(uint32_t n, const char* kvm_path) {
    auto kvm = Kvm::open(kvm_path);
    if (!kvm) return kvm.error();
    kvm_.emplace(std::move(kvm).value());
    auto mem = GuestMemory::create(kMemorySize);
    if (!mem) return mem.error();
    mem_.emplace(std::move(mem).value());
    auto vm = kvm_->create_vm();
    if (!vm) return vm.error();
    vm_ = std::move(vm).value();
    // Refused off Intel, where KVM does not need it.
    (void)vm_.set_tss_addr(kTssAddr);
    for (const auto& r : mem_->regions())
        KV_TRY(vm_.set_user_memory_region(r.slot, r.base.value, r.size, r.mapping.data()));
    auto supported = kvm_->supported_cpuid();
    if (!supported) return supported.error();

    router_ = std::make_unique<IpiRouter>(n);
    for (uint32_t i = 0; i < n; ++i) {
        VcpuEnv env;
        env.io = this;
        env.router = router_.get();
        env.fatal = [this](uint32_t vcpu, bool, const std::string& why) { on_fatal(vcpu, why); };
        // No PIC and no IOAPIC: nothing may ask for them.
        env.pic_acknowledge = [this]() -> uint8_t {
            unexpected("PIC acknowledge (ExtINT) with no PIC");
            return 0xFF;
        };
        env.eoi_level = [this](uint8_t vec) {
            unexpected("level-triggered EOI of vector " + std::to_string(vec));
        };
        auto v = Vcpu::create(vm_, i, n, *supported, std::move(env));
        if (!v) return Error{"vCPU " + std::to_string(i) + ": " + v.error().message};
        router_->attach_local(i, v->get());
        vcpus_.push_back(std::move(v).value());
    }
    return {};
}

Status TestVm::load(const kvt_params& params) {
    auto image = guest_image();
    if (image.empty()) return Error{"the embedded guest image is empty"};
    KV_TRY(mem_->write(Gpa(KVT_IMAGE_GPA), image));
    KV_TRY(mem_->write_obj(Gpa(KVT_PARAMS_GPA), params));
    KV_TRY(mem_->write_obj(Gpa(KVT_RESULTS_GPA), kvt_results{}));
    KV_TRY(boot::write_boot_gdt(*mem_));
    KV_TRY(boot::write_identity_page_tables(*mem_));

    Vcpu& bsp = *vcpus_[0];
    kvm_regs regs{};
    kvm_sregs sregs{};
    KV_TRY(bsp.fd().get_regs(regs));
    KV_TRY(bsp.fd().get_sregs(sregs));
    boot::BootCpuState{KVT_IMAGE_GPA, 0, KVT_BSP_STACK_TOP}.apply(regs, sregs);
    return bsp.set_boot_state(regs, sregs);
}

Result<GuestRun> TestVm::run(const kvt_params& params, std::chrono::milliseconds timeout,
                             const std::function<void(TestVm&)>& during) {
    if (ran_) return Error{"TestVm::run: a TestVm runs once"};
    ran_ = true;
    KV_TRY(load(params));
    for (size_t i = 0; i < vcpus_.size(); ++i) vcpus_[i]->start(i == 0);
    if (during) during(*this);

    GuestRun out;
    {
        std::unique_lock lk(mu_);
        bool ended = cv_.wait_for(lk, timeout, [&] { return exit_status_ || fatal_; });
        if (fatal_) {
            out.end = GuestRun::End::Fatal;
            out.detail = *fatal_;
        } else if (exit_status_) {
            out.end = GuestRun::End::Exited;
            out.exit_status = *exit_status_;
        } else {
            (void)ended;
            out.end = GuestRun::End::Timeout;
            out.detail = "no write to the exit port (" + hex(KVT_PORT_EXIT) + ") within " +
                         std::to_string(timeout.count()) + " ms";
        }
    }
    stop_all();
    // Every vCPU thread is joined: the guest's memory and the lists are ours now.
    std::lock_guard lk(mu_);
    out.serial = serial_;
    out.marks = marks_;
    out.unexpected_io = unexpected_io_;
    KV_TRY(mem_->read_obj(Gpa(KVT_RESULTS_GPA), out.results));
    out.counters = counters_text();
    return out;
}

void TestVm::stop_all() {
    for (auto& v : vcpus_) v->request_stop();
    for (auto& v : vcpus_) v->join();
}

std::string TestVm::counters_text() const {
    char* buf = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) return "(counters unavailable: open_memstream failed)\n";
    for (const auto& v : vcpus_) v->print_counters(f);
    router_->print_counters(f);
    std::fclose(f);
    std::string s(buf, len);
    std::free(buf);
    return s;
}

void TestVm::unexpected(std::string what) {
    std::lock_guard lk(mu_);
    if (unexpected_io_.size() < 32) unexpected_io_.push_back(std::move(what));
}

void TestVm::on_fatal(uint32_t vcpu, const std::string& why) {
    std::lock_guard lk(mu_);
    if (!fatal_) fatal_ = "vCPU " + std::to_string(vcpu) + ": " + why;
    cv_.notify_all();
}

bool TestVm::pio(uint16_t port, std::span<uint8_t> data, bool is_write) {
    auto value = [&] {
        uint32_t v = 0;
        std::memcpy(&v, data.data(), std::min<size_t>(data.size(), sizeof v));
        return v;
    };
    if (port == KVT_PORT_SERIAL && is_write && data.size() == 1) {
        std::lock_guard lk(mu_);
        serial_.push_back(char(data[0]));
        return true;
    }
    if (port == KVT_PORT_EXIT && is_write && data.size() == 4) {
        std::lock_guard lk(mu_);
        if (!exit_status_) exit_status_ = value();
        cv_.notify_all();
        return true;
    }
    if (port == KVT_PORT_MARK && is_write && data.size() == 4) {
        uint64_t now = monotonic_ns();
        std::lock_guard lk(mu_);
        marks_.push_back(Mark{value(), now});
        return true;
    }
    if (port == KVT_PORT_CLOCK && !is_write && data.size() == 4) {
        uint32_t us = uint32_t(monotonic_ns() / 1000);
        std::memcpy(data.data(), &us, sizeof us);
        return true;
    }
    unexpected(std::string(is_write ? "write" : "read") + " of " + std::to_string(data.size()) +
               " bytes at port " + hex(port));
    return false;
}

bool TestVm::mmio(uint64_t addr, std::span<uint8_t> data, bool is_write) {
    unexpected(std::string(is_write ? "write" : "read") + " of " + std::to_string(data.size()) +
               " bytes at MMIO " + hex(addr));
    return false;
}

Result<std::string> probe(const char* kvm_path) {
    auto vm = TestVm::create(1, kvm_path);
    if (!vm) return vm.error();
    kvt_params params{};
    params.scenario = KVT_SCENARIO_SERIAL;
    auto run = (*vm)->run(params, std::chrono::seconds(10));
    if (!run) return run.error();
    if (!run->passed() || run->serial.find("EFER.LMA=1") == std::string::npos)
        return Error{"the serial scenario did not pass: " + run->describe()};
    return std::string(kvm_path) + " runs a long-mode freestanding guest";
}

}  // namespace kv::kvmtest
