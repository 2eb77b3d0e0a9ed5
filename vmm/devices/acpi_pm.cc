#include "vmm/devices/acpi_pm.h"

#include "base/log.h"
#include "vmm/devices/device_state.h"

namespace kv {
namespace {
// PM1_STS bits that are events (can raise an SCI when enabled); BM_STS and WAK_STS are
// status only.
constexpr uint16_t kPm1EventBits =
    AcpiPm::kTmrSts | AcpiPm::kGblSts | AcpiPm::kPwrBtnSts | AcpiPm::kSlpBtnSts | AcpiPm::kRtcSts;
constexpr uint16_t kGblRls = 1u << 2;  // PM1_CNT, write-only
constexpr uint64_t kTmrEnd = AcpiPm::kPmTmrOffset + 4;
constexpr uint64_t kGpeStsEnd = AcpiPm::kGpe0Offset + 4;
constexpr uint64_t kGpeEnEnd = AcpiPm::kGpe0Offset + 8;

uint8_t byte_of(uint32_t v, uint64_t i) {
    return uint8_t(v >> (8 * i));
}
}  // namespace

AcpiPm::AcpiPm(IrqLine sci, std::function<void()> on_power_off, MonotonicClock clock,
               std::optional<uint64_t> origin_ns)
    : sci_(sci),
      on_power_off_(std::move(on_power_off)),
      clock_(std::move(clock)),
      origin_ns_(origin_ns ? *origin_ns : clock_()) {}

uint64_t AcpiPm::ticks_now() const {
    return ns_to_ticks(clock_() - origin_ns_, kTimerHz);
}

uint32_t AcpiPm::timer_value() const {
    return timer_at(clock_() - origin_ns_);
}

void AcpiPm::update_tmr_sts_locked() {
    uint64_t epoch = ticks_now() >> 23;
    if (epoch != tmr_epoch_) {
        tmr_epoch_ = epoch;
        pm1_sts_ |= kTmrSts;
    }
}

void AcpiPm::update_sci_locked() {
    bool level = (pm1_sts_ & pm1_en_ & kPm1EventBits) != 0 || (gpe_sts_ & gpe_en_) != 0;
    if (level != sci_level_) {
        sci_level_ = level;
        sci_.set(level);
    }
}

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
    // One counter snapshot for the whole access: a 32-bit read must not mix two values.
    const uint32_t tmr = timer_value();
    std::lock_guard lk(mu_);
    if (offset < kPm1EvtOffset + 2) update_tmr_sts_locked();
    for (size_t i = 0; i < data.size(); ++i) data[i] = read_byte_locked(offset + i, tmr);
}

uint8_t AcpiPm::read_byte_locked(uint64_t off, uint32_t tmr) {
    if (off < 2) return byte_of(pm1_sts_, off);
    if (off < 4) return byte_of(pm1_en_, off - 2);
    if (off < 6) return byte_of(pm1_cnt_ | kSciEn, off - 4);  // SLP_EN is never stored
    if (off >= kPmTmrOffset && off < kTmrEnd) return byte_of(tmr, off - kPmTmrOffset);
    if (off >= kGpe0Offset && off < kGpeStsEnd) return byte_of(gpe_sts_, off - kGpe0Offset);
    if (off >= kGpeStsEnd && off < kGpeEnEnd) return byte_of(gpe_en_, off - kGpeStsEnd);
    return 0xFF;
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
    bool power_off = false;
    {
        std::lock_guard lk(mu_);
        if (offset < kPm1EvtOffset + 2) update_tmr_sts_locked();
        for (size_t i = 0; i < data.size(); ++i)
            power_off |= write_byte_locked(offset + i, data[i]);
        update_sci_locked();
    }
    // Outside the lock: the callback typically stops every vCPU, this one included.
    if (power_off && on_power_off_) on_power_off_();
}

bool AcpiPm::write_byte_locked(uint64_t off, uint8_t v) {
    const unsigned shift = 8 * unsigned(off & 1);
    if (off < 2) {
        pm1_sts_ &= uint16_t(~(uint16_t(v) << shift));  // write 1 to clear
    } else if (off < 4) {
        pm1_en_ = uint16_t((pm1_en_ & ~(0xFFu << shift)) | (uint16_t(v) << shift));
    } else if (off < 6) {
        uint16_t cnt = uint16_t((pm1_cnt_ & ~(0xFFu << shift)) | (uint16_t(v) << shift));
        // SLP_EN and the write-only GBL_RLS (bit 2) are actions, not state.
        pm1_cnt_ = uint16_t((cnt & ~kSlpEn & ~kGblRls) | kSciEn);
        if (off == 5 && (cnt & kSlpEn)) {
            unsigned typ = (cnt & kSlpTypMask) >> kSlpTypShift;
            if (typ == kSlpTypS5) return true;
            KV_WARN("acpi-pm: sleep type %u requested; only S5 (power off) is supported", typ);
        }
    } else if (off >= kGpe0Offset && off < kGpeStsEnd) {
        gpe_sts_ &= ~(uint32_t(v) << (8 * (off - kGpe0Offset)));
    } else if (off >= kGpeStsEnd && off < kGpeEnEnd) {
        const unsigned s = 8 * unsigned(off - kGpeStsEnd);
        gpe_en_ = (gpe_en_ & ~(0xFFu << s)) | (uint32_t(v) << s);
    }
    // PM_TMR is read-only; the gaps ignore writes.
    return false;
}

void AcpiPm::press_power_button() {
    std::lock_guard lk(mu_);
    pm1_sts_ |= kPwrBtnSts;
    update_sci_locked();
}

void AcpiPm::set_gpe(unsigned n) {
    if (n >= 32) return;
    std::lock_guard lk(mu_);
    gpe_sts_ |= 1u << n;
    update_sci_locked();
}

// sci_level_ is not saved: it follows from the registers and is driven again on restore.
template <class V>
void AcpiPm::visit_state(V& v) {
    v("pm1_sts", pm1_sts_);
    v("pm1_en", pm1_en_);
    v("pm1_cnt", pm1_cnt_);
    v("gpe0_sts", gpe_sts_);
    v("gpe0_en", gpe_en_);
    v("tmr_epoch", tmr_epoch_);
    // The PM timer the guest uses as a clocksource goes on from where it stood.
    v("origin_ns", origin_ns_);
}

void AcpiPm::save_state(StateSaver& out) {
    std::lock_guard lk(mu_);
    visit_state(out);
}

Status AcpiPm::restore_state(StateLoader& in) {
    std::lock_guard lk(mu_);
    visit_state(in);
    if (auto st = in.finish(); !st) return st;
    if (!(pm1_cnt_ & kSciEn) || (pm1_cnt_ & (kSlpEn | kGblRls)))
        return Error{in.where() + ".pm1_cnt: SCI_EN clear or a write-only bit (SLP_EN, " +
                     "GBL_RLS) set"};
    // Drive SCI from PM1 and GPE0 status & enable whatever this device's line did before,
    // so the interrupt controller's pin agrees with the restored registers. TMR_STS needs
    // nothing: it is still worked out lazily from tmr_epoch on the next PM1_STS access.
    sci_level_ = (pm1_sts_ & pm1_en_ & kPm1EventBits) != 0 || (gpe_sts_ & gpe_en_) != 0;
    sci_.set(sci_level_);
    return {};
}

}  // namespace kv
