/* The freestanding test guest: IDT, LAPIC access and the scenarios the KVM tests run
 * (docs/testing-kvm.md). Built with -ffreestanding -nostdlib -mgeneral-regs-only; runs
 * in long mode on the harness's identity map, one image for every scenario. */
#include <stdint.h>

#include "protocol.h"

#define PARAMS ((volatile struct kvt_params*)KVT_PARAMS_GPA)
#define RESULTS ((volatile struct kvt_results*)KVT_RESULTS_GPA)

/* xAPIC registers (offsets from 0xFEE00000). */
#define LAPIC_BASE 0xFEE00000UL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xB0
#define LAPIC_LDR 0xD0
#define LAPIC_DFR 0xE0
#define LAPIC_SVR 0xF0
#define LAPIC_ISR 0x100
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3E0

#define SVR_ENABLE (1u << 8)
#define LVT_MASKED (1u << 16)
#define LVT_TIMER_PERIODIC (1u << 17)
#define ICR_PENDING (1u << 12)
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_LOGICAL (1u << 11)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define ICR_ALL_EXCLUDING_SELF (3u << 18)

#define SEL_CODE64 0x10
#define MSR_EFER 0xC0000080
#define EFER_LMA (1u << 10)

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
};

struct __attribute__((packed)) table_pointer {
    uint16_t limit;
    uint64_t base;
};

struct interrupt_frame;

extern uint64_t kvt_gdt[8];
extern const uint64_t kvt_exception_stubs[32];
extern const uint8_t kvt_trampoline_start[], kvt_trampoline_end[];
extern uint32_t kvt_trampoline_cr3;
void kvt_reload_segments(void);

static struct idt_gate idt[256] __attribute__((aligned(16)));
static uint8_t tss[2][104] __attribute__((aligned(16)));

/* ---- Port I/O, LAPIC, time ---- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint64_t rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* sti's interrupt shadow covers the hlt: an interrupt that is already pending is taken
 * after the hlt, never lost between the check and the hlt. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

static inline uint32_t lapic_read(uint32_t off) {
    return *(volatile uint32_t*)(LAPIC_BASE + off);
}
static inline void lapic_write(uint32_t off, uint32_t v) {
    *(volatile uint32_t*)(LAPIC_BASE + off) = v;
}
static inline uint32_t apic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

static inline uint32_t clock_us(void) { return inl(KVT_PORT_CLOCK); }
static inline void mark(uint32_t id) { outl(KVT_PORT_MARK, id); }

static void print(const char* s) {
    while (*s) outb(KVT_PORT_SERIAL, (uint8_t)*s++);
}

static void print_u32(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    print(buf + i);
}

static void __attribute__((noreturn)) finish(uint32_t status) {
    outl(KVT_PORT_EXIT, status);
    for (;;) __asm__ volatile("cli; hlt");
}

/* Spins until *p >= want, bounded by KVT_GUEST_WAIT_US of host time. Reads the host
 * clock (a port exit) only every 1024 spins. */
static int wait_at_least(volatile uint32_t* p, uint32_t want) {
    uint32_t start = clock_us();
    for (uint32_t spins = 0; *p < want; ++spins) {
        if ((spins & 1023) == 0 && clock_us() - start > KVT_GUEST_WAIT_US) return 0;
        cpu_relax();
    }
    return 1;
}

/* ---- Descriptor tables and handlers ---- */

static void set_gate(unsigned vector, uint64_t handler) {
    struct idt_gate* g = &idt[vector];
    g->offset_low = (uint16_t)handler;
    g->selector = SEL_CODE64;
    g->ist = 0;
    g->type_attr = 0x8E; /* present, DPL 0, 64-bit interrupt gate */
    g->offset_mid = (uint16_t)(handler >> 16);
    g->offset_high = (uint32_t)(handler >> 32);
    g->reserved = 0;
}

static uint64_t tss_low(uint64_t base, uint32_t type) {
    uint64_t limit = sizeof tss[0] - 1;
    return (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | ((uint64_t)(type | 0x80) << 40) |
           (((base >> 24) & 0xFF) << 56);
}

static void build_gdt(void) {
    kvt_gdt[2] = 0x00AF9B000000FFFFull; /* 0x10: 64-bit code, execute/read, accessed */
    kvt_gdt[3] = 0x00CF93000000FFFFull; /* 0x18: data, read/write, accessed */
    /* 0x20: the BSP's TSS, marked busy as the harness's TR already is; 0x30: the AP's,
     * available until its ltr. */
    kvt_gdt[4] = tss_low((uint64_t)tss[0], 0xB);
    kvt_gdt[5] = (uint64_t)tss[0] >> 32;
    kvt_gdt[6] = tss_low((uint64_t)tss[1], 0x9);
    kvt_gdt[7] = (uint64_t)tss[1] >> 32;
}

static void load_tables(void) {
    struct table_pointer gdtr = {(uint16_t)(sizeof(uint64_t) * 8 - 1), (uint64_t)kvt_gdt};
    struct table_pointer idtr = {(uint16_t)(sizeof idt - 1), (uint64_t)idt};
    __asm__ volatile("lgdt %0" ::"m"(gdtr));
    kvt_reload_segments();
    __asm__ volatile("lidt %0" ::"m"(idtr));
}

/* Called from exception_common with the stub's frame: vector, error code, RIP, ... */
void __attribute__((noreturn, used)) kvt_exception(const uint64_t* frame) {
    RESULTS->exception_vector = (uint32_t)frame[0];
    RESULTS->exception_error = frame[1];
    RESULTS->exception_rip = frame[2];
    finish(KVT_EXIT_EXCEPTION_BASE + (uint32_t)frame[0]);
}

__attribute__((interrupt)) static void ipi_handler(struct interrupt_frame* f) {
    (void)f;
    __atomic_add_fetch(&RESULTS->ipi_received[apic_id() & 3], 1, __ATOMIC_SEQ_CST);
    lapic_write(LAPIC_EOI, 0);
}

__attribute__((interrupt)) static void timer_handler(struct interrupt_frame* f) {
    (void)f;
    __atomic_add_fetch(&RESULTS->timer_ticks, 1, __ATOMIC_SEQ_CST);
    lapic_write(LAPIC_EOI, 0);
}

/* The spurious vector takes no EOI. */
__attribute__((interrupt)) static void spurious_handler(struct interrupt_frame* f) { (void)f; }

/* Any other vector: name the one in service (highest ISR bit) and end the run. */
__attribute__((interrupt)) static void unexpected_handler(struct interrupt_frame* f) {
    (void)f;
    uint32_t vector = 0;
    for (int i = 7; i >= 0; --i) {
        uint32_t bits = lapic_read(LAPIC_ISR + 0x10 * (uint32_t)i);
        if (bits) {
            vector = (uint32_t)i * 32 + 31 - (uint32_t)__builtin_clz(bits);
            break;
        }
    }
    RESULTS->unexpected_vector = vector;
    finish(KVT_EXIT_UNEXPECTED_VECTOR);
}

static void build_idt(void) {
    for (unsigned v = 0; v < 32; ++v) set_gate(v, kvt_exception_stubs[v]);
    for (unsigned v = 32; v < 256; ++v) set_gate(v, (uint64_t)unexpected_handler);
    set_gate(KVT_VECTOR_IPI, (uint64_t)ipi_handler);
    set_gate(KVT_VECTOR_TIMER, (uint64_t)timer_handler);
    set_gate(KVT_VECTOR_SPURIOUS, (uint64_t)spurious_handler);
}

static void lapic_enable(void) { lapic_write(LAPIC_SVR, SVR_ENABLE | KVT_VECTOR_SPURIOUS); }

/* Flat logical model; each CPU owns bit (APIC ID) of the logical destination. */
static void lapic_set_logical_id(void) {
    lapic_write(LAPIC_DFR, 0xFFFFFFFFu);
    lapic_write(LAPIC_LDR, (1u << apic_id()) << 24);
}

/* ---- Scenarios ---- */

static void scenario_serial(void) {
    uint32_t lma = (rdmsr(MSR_EFER) & EFER_LMA) ? 1 : 0;
    print("kvt: hello from APIC ");
    print_u32(apic_id());
    print(", EFER.LMA=");
    print_u32(lma);
    print("\n");
    finish(KVT_EXIT_PASS);
}

static int send_ipi(uint32_t dest, uint32_t low) {
    uint32_t start = clock_us();
    while (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING)
        if (clock_us() - start > KVT_GUEST_WAIT_US) return 0;
    lapic_write(LAPIC_ICR_HIGH, dest << 24);
    lapic_write(LAPIC_ICR_LOW, low);
    return 1;
}

/* One fixed IPI of KVT_VECTOR_IPI to the AP with APIC ID 1, then wait until its handler
 * ran: IRR holds one bit per vector, so waiting keeps every IPI countable. */
static void ipi_to_ap(uint32_t dest, uint32_t low) {
    uint32_t before = RESULTS->ipi_received[1];
    if (!send_ipi(dest, low | ICR_ASSERT | KVT_VECTOR_IPI)) finish(KVT_EXIT_ICR_BUSY);
    __atomic_add_fetch(&RESULTS->ipis_sent, 1, __ATOMIC_SEQ_CST);
    if (!wait_at_least(&RESULTS->ipi_received[1], before + 1)) finish(KVT_EXIT_IPI_TIMEOUT);
}

static void scenario_ipi(void) {
    lapic_enable();
    lapic_set_logical_id();

    /* The trampoline, with this CPU's page tables, at the SIPI vector's page. */
    uint8_t* dst = (uint8_t*)KVT_TRAMPOLINE_GPA;
    for (const uint8_t* p = kvt_trampoline_start; p < kvt_trampoline_end; ++p) *dst++ = *p;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    *(volatile uint32_t*)(KVT_TRAMPOLINE_GPA +
                          ((uint8_t*)&kvt_trampoline_cr3 - kvt_trampoline_start)) = (uint32_t)cr3;

    /* INIT, then two SIPIs as the MP start-up sequence has them; the second must not
     * restart the AP once it runs. */
    if (!send_ipi(1, ICR_INIT | ICR_ASSERT | ICR_LEVEL)) finish(KVT_EXIT_ICR_BUSY);
    if (!send_ipi(1, ICR_STARTUP | ICR_ASSERT | KVT_SIPI_VECTOR)) finish(KVT_EXIT_ICR_BUSY);
    if (!send_ipi(1, ICR_STARTUP | ICR_ASSERT | KVT_SIPI_VECTOR)) finish(KVT_EXIT_ICR_BUSY);
    if (!wait_at_least(&RESULTS->ap_ready, 1)) finish(KVT_EXIT_AP_TIMEOUT);
    print("kvt: AP ready\n");

    /* Interrupts on here too: an IPI wrongly delivered to the BSP gets counted. */
    sti();
    for (uint32_t i = 0; i < PARAMS->ipi_fixed_count; ++i) ipi_to_ap(1, 0);
    ipi_to_ap(0, ICR_ALL_EXCLUDING_SELF);
    ipi_to_ap(1u << 1, ICR_LOGICAL); /* logical: the AP's LDR bit */
    print("kvt: IPIs received by the AP: ");
    print_u32(RESULTS->ipi_received[1]);
    print("\n");
    cli();
    if (RESULTS->ipi_received[0] != 0) finish(KVT_EXIT_IPI_WRONG_TARGET);
    if (RESULTS->ap_started != 1) finish(KVT_EXIT_AP_RESTARTED);
    finish(KVT_EXIT_PASS);
}

static void timer_start(uint32_t lvt_mode) {
    lapic_enable();
    lapic_write(LAPIC_TIMER_DIVIDE, PARAMS->timer_divide);
    lapic_write(LAPIC_LVT_TIMER, lvt_mode | KVT_VECTOR_TIMER);
    mark(KVT_MARK_TIMER_START);
    lapic_write(LAPIC_TIMER_INITIAL, PARAMS->timer_initial);
}

/* Halts until `ticks` timer interrupts were handled (interrupts off between checks). */
static int wait_ticks(uint32_t ticks) {
    uint32_t start = clock_us();
    while (RESULTS->timer_ticks < ticks) {
        if (clock_us() - start > KVT_GUEST_WAIT_US) return 0;
        sti_hlt();
        cli();
    }
    return 1;
}

static void scenario_timer_periodic(void) {
    timer_start(LVT_TIMER_PERIODIC);
    if (!wait_ticks(PARAMS->timer_ticks)) finish(KVT_EXIT_TIMER_TIMEOUT);
    mark(KVT_MARK_TIMER_DONE);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | KVT_VECTOR_TIMER);
    finish(KVT_EXIT_PASS);
}

static void scenario_timer_oneshot(void) {
    timer_start(0);
    if (!wait_ticks(1)) finish(KVT_EXIT_TIMER_TIMEOUT);
    mark(KVT_MARK_TIMER_DONE);
    RESULTS->timer_count_after = lapic_read(LAPIC_TIMER_CURRENT);
    if (RESULTS->timer_count_after != 0) finish(KVT_EXIT_TIMER_COUNT);
    if (PARAMS->oneshot_rewrite_lvt) lapic_write(LAPIC_LVT_TIMER, KVT_VECTOR_TIMER);
    /* Watch, interrupts on, for a tick that must not come. */
    sti();
    uint32_t start = clock_us();
    while (clock_us() - start < PARAMS->oneshot_quiet_us) cpu_relax();
    cli();
    if (RESULTS->timer_ticks != 1) finish(KVT_EXIT_TIMER_EXTRA);
    finish(KVT_EXIT_PASS);
}

/* Counts as fast as it can until the harness says stop: a pause of the vCPU shows as a
 * count that stands still, a resume as one that moves again. */
static void scenario_count(void) {
    volatile struct kvt_params* params = PARAMS;
    volatile uint64_t* count = &RESULTS->count;
    while (!params->count_stop) *count = *count + 1;
    finish(KVT_EXIT_PASS);
}

void __attribute__((noreturn, used)) kvt_bsp_main(void) {
    build_gdt();
    build_idt();
    load_tables();
    switch (PARAMS->scenario) {
        case KVT_SCENARIO_SERIAL:
            scenario_serial();
            break;
        case KVT_SCENARIO_IPI:
            scenario_ipi();
            break;
        case KVT_SCENARIO_TIMER_PERIODIC:
            scenario_timer_periodic();
            break;
        case KVT_SCENARIO_TIMER_ONESHOT:
            scenario_timer_oneshot();
            break;
        case KVT_SCENARIO_COUNT:
            scenario_count();
            break;
    }
    finish(KVT_EXIT_BAD_SCENARIO);
}

/* An AP after the trampoline: the BSP's GDT and IDT, its own TSS, an enabled LAPIC, then
 * halted with interrupts on, counting IPIs. */
void __attribute__((noreturn, used)) kvt_ap_main(void) {
    __atomic_add_fetch(&RESULTS->ap_started, 1, __ATOMIC_SEQ_CST);
    load_tables();
    __asm__ volatile("ltr %w0" ::"r"(0x30));
    lapic_enable();
    lapic_set_logical_id();
    __atomic_add_fetch(&RESULTS->ap_ready, 1, __ATOMIC_SEQ_CST);
    for (;;) sti_hlt();
}

/* ---- Multi-node runs (protocol.h, "Multi-node runs"; docs/testing-dsm-kvm.md) ---- */

#define DSM ((volatile const struct kvt_dsm_params*)KVT_DSM_PARAMS_GPA)

/* Set by vCPU 0 once the GDT and IDT are built; the others load them only then. */
static volatile uint32_t dsm_tables_ready;

struct dsm_cpu {
    uint32_t index, node, local, total;
    uint64_t barrier_gen;
    uint32_t mismatches; /* of the current phase */
    uint32_t failed;     /* any phase */
};

static volatile uint64_t* dsm_word(uint32_t home, uint32_t j) {
    return (volatile uint64_t*)(uintptr_t)(DSM->slice_end[home] - (uint64_t)(j + 1) * 4096);
}

/* Spins until *p >= want; 0 past DSM->wait_us. After a few pauses each spin is a port
 * exit on which the VMM lets other host threads run: a node's fault and receive threads
 * (which bring the awaited page) may need this host core. */
static int dsm_wait_ge(volatile uint64_t* p, uint64_t want, uint64_t* seen) {
    uint32_t start = clock_us();
    uint64_t v;
    for (uint32_t spins = 0; (v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) < want; ++spins) {
        if (spins < 64)
            cpu_relax();
        else
            outl(KVT_PORT_YIELD, spins);
        if ((spins & 255) == 255 && clock_us() - start > DSM->wait_us) return 0;
    }
    if (seen) *seen = v;
    return 1;
}

static void dsm_wait_or_fail(volatile uint64_t* p, uint64_t want, uint64_t* seen) {
    if (!dsm_wait_ge(p, want, seen)) finish(KVT_EXIT_DSM_TIMEOUT);
}

static void dsm_barrier(struct dsm_cpu* c) {
    volatile uint64_t* b = dsm_word(0, KVT_DSM_WORD_BARRIER);
    c->barrier_gen++;
    __atomic_add_fetch(b, 1, __ATOMIC_SEQ_CST);
    dsm_wait_or_fail(b, c->barrier_gen * c->total, 0);
}

static void dsm_check(struct dsm_cpu* c, int ok) {
    if (!ok) c->mismatches++;
}

static void dsm_begin(struct dsm_cpu* c, uint32_t phase) {
    dsm_barrier(c);
    mark(KVT_DSM_MARK_BEGIN(phase));
    c->mismatches = 0;
}

static void dsm_end(struct dsm_cpu* c, uint32_t phase) {
    dsm_barrier(c);
    outl(KVT_PORT_DSM_MISMATCHES, c->mismatches);
    if (c->mismatches) c->failed = 1;
    mark(KVT_DSM_MARK_END(phase));
}

static void dsm_counter(struct dsm_cpu* c) {
    volatile uint64_t* counter = dsm_word(DSM->nodes - 1, KVT_DSM_WORD_COUNTER);
    dsm_begin(c, KVT_DSM_PHASE_COUNTER);
    uint32_t iters = DSM->iters;
    for (uint32_t i = 0; i < iters; ++i) __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
    dsm_barrier(c);
    dsm_check(c, __atomic_load_n(counter, __ATOMIC_SEQ_CST) == (uint64_t)iters * c->total);
    dsm_end(c, KVT_DSM_PHASE_COUNTER);
}

/* vCPU 0 writes data (home node 1) then the flag (home node 0) with the round number;
 * every vCPU of another node waits for the flag, checks the data and acknowledges on its
 * own word; vCPU 0 waits for every acknowledgement before the next round. */
static void dsm_mp(struct dsm_cpu* c) {
    uint32_t nodes = DSM->nodes, per_node = DSM->per_node, rounds = DSM->rounds;
    volatile uint64_t* data = dsm_word(1 % nodes, KVT_DSM_WORD_MP);
    volatile uint64_t* flag = dsm_word(0, KVT_DSM_WORD_MP);
    dsm_begin(c, KVT_DSM_PHASE_MP);
    if (c->index == 0) {
        for (uint64_t r = 1; r <= rounds; ++r) {
            __atomic_store_n(data, r, __ATOMIC_RELAXED);
            __atomic_store_n(flag, r, __ATOMIC_RELEASE);
            for (uint32_t v = per_node; v < c->total; ++v)
                dsm_wait_or_fail(dsm_word(v / per_node, KVT_DSM_WORD_MP_ACK + v % per_node), r, 0);
        }
    } else if (c->node != 0) {
        volatile uint64_t* ack = dsm_word(c->node, KVT_DSM_WORD_MP_ACK + c->local);
        for (uint64_t r = 1; r <= rounds; ++r) {
            uint64_t f = 0;
            dsm_wait_or_fail(flag, r, &f);
            uint64_t d = __atomic_load_n(data, __ATOMIC_RELAXED);
            dsm_check(c, f == r && d == r);
            __atomic_store_n(ack, r, __ATOMIC_RELEASE);
        }
    }
    dsm_end(c, KVT_DSM_PHASE_MP);
}

/* vCPU 0 (node 0) and vCPU per_node (node 1) take turns incrementing one word: each sees
 * exactly the value the other wrote. */
static void dsm_pingpong(struct dsm_cpu* c) {
    uint32_t rounds = DSM->pingpong_rounds;
    volatile uint64_t* v = dsm_word(DSM->nodes - 1, KVT_DSM_WORD_PINGPONG);
    dsm_begin(c, KVT_DSM_PHASE_PINGPONG);
    if (c->index == 0 || c->index == DSM->per_node) {
        uint64_t role = c->index == 0 ? 0 : 1;
        for (uint64_t r = 0; r < rounds; ++r) {
            uint64_t mine = 2 * r + role, seen = 0;
            dsm_wait_or_fail(v, mine, &seen);
            dsm_check(c, seen == mine);
            __atomic_store_n(v, mine + 1, __ATOMIC_RELEASE);
        }
    }
    dsm_barrier(c);
    if (c->index == 0) dsm_check(c, __atomic_load_n(v, __ATOMIC_ACQUIRE) == 2 * (uint64_t)rounds);
    dsm_end(c, KVT_DSM_PHASE_PINGPONG);
}

/* Every vCPU reads one page (home: the last node); the last vCPU then writes it. The
 * VMMs check their copies at the two marks (shared, then dropped everywhere but at the
 * writer's node); afterwards every vCPU reads the new value. */
static void dsm_inval(struct dsm_cpu* c) {
    volatile uint64_t* x = dsm_word(DSM->nodes - 1, KVT_DSM_WORD_INVAL);
    dsm_begin(c, KVT_DSM_PHASE_INVAL);
    dsm_check(c, __atomic_load_n(x, __ATOMIC_ACQUIRE) == 0);
    dsm_barrier(c);
    mark(KVT_DSM_MARK_INVAL_READ);
    dsm_barrier(c);
    if (c->index == c->total - 1) __atomic_fetch_add(x, 1, __ATOMIC_SEQ_CST);
    dsm_barrier(c);
    mark(KVT_DSM_MARK_INVAL_WRITTEN);
    dsm_barrier(c);
    dsm_check(c, __atomic_load_n(x, __ATOMIC_ACQUIRE) == 1);
    dsm_end(c, KVT_DSM_PHASE_INVAL);
}

/* The first vCPU of node 1 stores a value and publishes it through a port; node 0's VMM
 * reads it from guest RAM and acknowledges by storing the round in a word homed at 0. */
static void dsm_vmm(struct dsm_cpu* c) {
    volatile uint64_t* value = dsm_word(DSM->nodes - 1, KVT_DSM_WORD_VMM);
    volatile uint64_t* ack = dsm_word(0, KVT_DSM_WORD_VMM);
    dsm_begin(c, KVT_DSM_PHASE_VMM);
    if (c->index == DSM->per_node) {
        for (uint32_t r = 1; r <= DSM->vmm_rounds; ++r) {
            __atomic_store_n(value, KVT_DSM_VMM_VALUE(r), __ATOMIC_RELEASE);
            outl(KVT_PORT_DSM_PUBLISH, r);
            dsm_wait_or_fail(ack, r, 0);
        }
    }
    dsm_end(c, KVT_DSM_PHASE_VMM);
}

void __attribute__((noreturn, used)) kvt_dsm_main(uint64_t index) {
    struct dsm_cpu c = {0};
    c.index = (uint32_t)index;
    c.node = c.index / DSM->per_node;
    c.local = c.index % DSM->per_node;
    c.total = DSM->nodes * DSM->per_node;
    if (c.index == 0) {
        build_gdt();
        build_idt();
        __atomic_store_n(&dsm_tables_ready, 1, __ATOMIC_RELEASE);
    } else {
        uint32_t start = clock_us();
        while (!__atomic_load_n(&dsm_tables_ready, __ATOMIC_ACQUIRE)) {
            outl(KVT_PORT_YIELD, 1024);
            if (clock_us() - start > DSM->wait_us) finish(KVT_EXIT_DSM_TIMEOUT);
        }
    }
    load_tables();
    dsm_counter(&c);
    dsm_mp(&c);
    dsm_pingpong(&c);
    dsm_inval(&c);
    dsm_vmm(&c);
    dsm_barrier(&c);
    finish(c.failed ? KVT_EXIT_DSM_MISMATCH : KVT_EXIT_PASS);
}

/* ---- vCPU benchmark (protocol.h, "vCPU benchmark"; tests/dsmkvm/dsm_kvm_bench.cc) ---- */

static inline uint64_t tsc_fenced(void) {
    uint32_t lo, hi;
    __asm__ volatile("mfence; lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static void bench_result(uint64_t cycles, uint64_t value) {
    outl(KVT_PORT_BENCH_RESULT, (uint32_t)cycles);
    outl(KVT_PORT_BENCH_RESULT, (uint32_t)(cycles >> 32));
    outl(KVT_PORT_BENCH_RESULT, (uint32_t)value);
    outl(KVT_PORT_BENCH_RESULT, (uint32_t)(value >> 32));
}

static inline volatile uint64_t* bench_word(void) {
    return (volatile uint64_t*)(uintptr_t)inl(KVT_PORT_BENCH_ARG);
}

/* Two vCPUs on different nodes take turns: wait for 2r + parity, store one more. The
 * spin backs off to port exits like dsm_wait_ge (the host may have fewer cores than
 * vCPU, fault and receive threads). 0, or 1 when a wait ran past KVT_GUEST_WAIT_US. */
static uint64_t bench_pingpong(volatile uint64_t* p, uint64_t parity, uint32_t rounds) {
    for (uint64_t r = 0; r < rounds; ++r) {
        const uint64_t mine = 2 * r + parity;
        uint32_t start = clock_us();
        for (uint32_t spins = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) != mine; ++spins) {
            if (spins < 64)
                cpu_relax();
            else
                outl(KVT_PORT_YIELD, spins);
            if ((spins & 255) == 255 && clock_us() - start > KVT_GUEST_WAIT_US) return 1;
        }
        __atomic_store_n(p, mine + 1, __ATOMIC_RELEASE);
    }
    return 0;
}

void __attribute__((noreturn, used)) kvt_bench_main(uint64_t index) {
    (void)index;
    for (;;) {
        switch (inl(KVT_PORT_BENCH_CMD)) {
            case KVT_BENCH_OP_CALIBRATE: {
                uint32_t us = inl(KVT_PORT_BENCH_ARG);
                uint32_t u0 = clock_us(), u1;
                uint64_t c0 = tsc_fenced();
                do u1 = clock_us();
                while (u1 - u0 < us);
                bench_result(tsc_fenced() - c0, u1 - u0);
                break;
            }
            case KVT_BENCH_OP_READ: {
                volatile uint64_t* p = bench_word();
                uint64_t t0 = tsc_fenced();
                uint64_t v = *p;
                uint64_t t1 = tsc_fenced();
                bench_result(t1 - t0, v);
                break;
            }
            case KVT_BENCH_OP_WRITE: {
                volatile uint64_t* p = bench_word();
                uint64_t v = inl(KVT_PORT_BENCH_ARG);
                uint64_t t0 = tsc_fenced();
                *p = v;
                uint64_t t1 = tsc_fenced();
                bench_result(t1 - t0, 0);
                break;
            }
            case KVT_BENCH_OP_PINGPONG: {
                volatile uint64_t* p = bench_word();
                uint64_t parity = inl(KVT_PORT_BENCH_ARG);
                uint32_t rounds = inl(KVT_PORT_BENCH_ARG);
                uint64_t t0 = tsc_fenced();
                uint64_t failed = bench_pingpong(p, parity, rounds);
                bench_result(tsc_fenced() - t0, failed);
                break;
            }
            case KVT_BENCH_OP_EXIT:
                finish(KVT_EXIT_PASS);
            default:
                finish(KVT_EXIT_BAD_SCENARIO);
        }
    }
}
