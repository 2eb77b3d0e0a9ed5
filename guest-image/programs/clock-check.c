// clock-check: the guest's time never goes backwards from one CPU to another.
//
// One thread is pinned to every CPU this process may run on. They pass a token round
// the ring through shared memory: the holder reads CLOCK_MONOTONIC and the TSC
// (lfence; rdtsc), compares both with the values the previous holder stored, stores its
// own and hands the token on with a release store; the next thread spins (pause) until
// an acquire load shows the token is its own. So every reading happens after the
// previous holder's, and any value lower than the previous holder's is a clock going
// backwards across CPUs: a FAIL, with the largest step back. -n rounds go round the
// ring (default 2000), so each pair of neighbouring CPUs is compared n times.
//
// Also:
//   - /sys/devices/system/clocksource/clocksource0/current_clocksource must be the TSC:
//     "tsc", or "tsc-early" before the kernel has refined its rate (--any-clocksource:
//     only reported);
//   - the kernel log (klogctl) must have no clock trouble: "Marking TSC unstable",
//     "clocksource ... as unstable" (the watchdog), "TSC warp", "TSC synchronization"
//     (the boot-time sync check), "timekeeping watchdog" (--no-kernel-log: not read;
//     an unreadable log is reported and not checked). The watchdog's "... retried N
//     times before success" is printed but is not trouble: it says one read of the
//     watchdog clocksource (the HPET, an exit to the VMM and, from a vCPU on another
//     node, a forwarded request) took long and the next read was on time; the clocks
//     were then compared and agreed. A watchdog that keeps failing its reads marks the
//     clocksource unstable, which is trouble;
//   - the whole ring must finish within -t seconds (default 300): a stalled handoff is a
//     FAIL naming the CPU that never took the token.
// --skew-test NS makes the last CPU's readings lag by NS (a self-test of the detection:
// with two or more CPUs the check must FAIL). Prints the figures and PASS or FAIL; exit
// status 0 only on PASS, 1 on FAIL, 2 on bad usage or a setup error.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/klog.h>
#include <time.h>
#include <unistd.h>

#include "guestprog.h"


struct worker {
  pthread_t thread;
  int index, cpu, ran_on, pin_error;
  uint64_t mono_back, tsc_back;            // violations found when taking the token
  uint64_t mono_back_max, tsc_back_max;    // the largest steps back (ns, cycles)
  int back_from_cpu;                       // previous holder of the worst step back
  uint64_t gap_min, gap_max, gap_sum;      // ns since the previous holder's reading
};

// The token, alone on its cache line(s).
static struct {
  int turn __attribute__((aligned(64)));  // index of the holder
  uint64_t mono_ns, tsc;
  int cpu;  // holder that stored mono_ns/tsc
  unsigned long round;
} tok;

static struct {
  unsigned long rounds;
  uint64_t skew;  // --skew-test: ns and cycles the last thread subtracts
  int n;
  struct worker *w;
  sem_t done;
} g;

static inline uint64_t rdtsc_ordered(void) {
  uint32_t lo, hi;
  __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
  return (uint64_t)hi << 32 | lo;
}

static inline uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void *run(void *arg) {
  struct worker *w = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(w->cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) w->pin_error = errno;
  w->ran_on = sched_getcpu();
  w->gap_min = UINT64_MAX;
  int next = (w->index + 1) % g.n;
  for (unsigned long r = 0; r < g.rounds; r++) {
    while (__atomic_load_n(&tok.turn, __ATOMIC_ACQUIRE) != w->index) __builtin_ia32_pause();
    uint64_t m = mono_ns();
    uint64_t c = rdtsc_ordered();
    if (w->index == g.n - 1) {  // --skew-test: this CPU's clocks made to lag
      m -= g.skew;
      c -= g.skew;
    }
    if (tok.round > 0) {  // there is a previous holder's reading
      if (m < tok.mono_ns) {
        w->mono_back++;
        if (tok.mono_ns - m > w->mono_back_max) {
          w->mono_back_max = tok.mono_ns - m;
          w->back_from_cpu = tok.cpu;
        }
      } else {
        uint64_t gap = m - tok.mono_ns;
        if (gap < w->gap_min) w->gap_min = gap;
        if (gap > w->gap_max) w->gap_max = gap;
        w->gap_sum += gap;
      }
      if (c < tok.tsc) {
        w->tsc_back++;
        if (tok.tsc - c > w->tsc_back_max) {
          w->tsc_back_max = tok.tsc - c;
          w->back_from_cpu = tok.cpu;
        }
      }
    }
    tok.mono_ns = m;
    tok.tsc = c;
    tok.cpu = w->cpu;
    tok.round++;
    __atomic_store_n(&tok.turn, next, __ATOMIC_RELEASE);
  }
  sem_post(&g.done);
  return NULL;
}

static int read_line(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int ok = fgets(buf, (int)size, f) != NULL;
  fclose(f);
  if (!ok) return -1;
  buf[strcspn(buf, "\n")] = 0;
  return 0;
}

// Clock trouble in the kernel log: prints each matching line; returns their count, or
// -1 when the log cannot be read. Lines that name only a slow watchdog read are printed
// as such and not counted. FILE (--kernel-log-file) stands in for the kernel's log.
static char *read_kernel_log(const char *file) {
  if (file) {
    FILE *f = fopen(file, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *log = malloc(cap + 1);
    while (log && (len += fread(log + len, 1, cap - len, f)) == cap) {
      char *more = realloc(log, 2 * cap + 1);
      if (!more) free(log);
      log = more;
      cap *= 2;
    }
    fclose(f);
    if (log) log[len] = 0;
    return log;
  }
  int size = klogctl(10, NULL, 0);  // SYSLOG_ACTION_SIZE_BUFFER
  if (size <= 0) return NULL;
  char *log = malloc((size_t)size + 1);
  if (!log) return NULL;
  int len = klogctl(3, log, size);  // SYSLOG_ACTION_READ_ALL
  if (len < 0) {
    free(log);
    return NULL;
  }
  log[len] = 0;
  return log;
}

static int kernel_log_trouble(const char *file) {
  static const char *const bad[] = {"Marking TSC unstable", "as unstable", "TSC warp",
                                    "TSC synchronization", "timekeeping watchdog"};
  static const char *const slow_read = "before success";
  char *log = read_kernel_log(file);
  if (!log) return -1;
  int found = 0;
  for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
    if (strcasestr(line, "timekeeping watchdog") && strcasestr(line, slow_read) &&
        !strcasestr(line, "unstable")) {
      printf("clock-check: kernel log (a slow watchdog read, not a clock fault): %s\n", line);
      continue;
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      if (strcasestr(line, bad[i])) {
        printf("clock-check: kernel log: %s\n", line);
        found++;
        break;
      }
    }
  }
  free(log);
  return found;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: clock-check [-n ROUNDS] [-t SECONDS] [--any-clocksource] [--no-kernel-log]\n"
          "  -n                 rounds of the token round the CPUs (default 2000)\n"
          "  -t                 bound on the whole check in seconds (default 300)\n"
          "  --any-clocksource  do not require the tsc clocksource (only report it)\n"
          "  --no-kernel-log    do not scan the kernel log for clock trouble\n"
          "  --kernel-log-file FILE  scan FILE instead of the kernel log (a self-test)\n"
          "  --skew-test NS     self-test: the last CPU's readings lag by NS (ns and TSC\n"
          "                     cycles); the check must then FAIL\n");
}

int main(int argc, char **argv) {
  unsigned long rounds = 2000, limit_s = 300;
  int any_clocksource = 0, kernel_log = 1;
  const char *kernel_log_file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(o, "--any-clocksource")) {
      any_clocksource = 1;
    } else if (!strcmp(o, "--no-kernel-log")) {
      kernel_log = 0;
    } else if (!strcmp(o, "--kernel-log-file")) {
      if (i + 1 == argc) {
        fprintf(stderr, "clock-check: error: --kernel-log-file wants a file\n");
        return 2;
      }
      kernel_log_file = argv[++i];
    } else if (!strcmp(o, "--skew-test")) {
      unsigned long v;
      if (i + 1 == argc || parse_ulong(argv[i + 1], &v) || v == 0 || v > 1000000000000UL) {
        fprintf(stderr, "clock-check: error: --skew-test wants 1..1000000000000 ns\n");
        return 2;
      }
      g.skew = v;
      i++;
    } else if (!strcmp(o, "-n") || !strcmp(o, "-t")) {
      unsigned long v;
      if (i + 1 == argc || parse_ulong(argv[i + 1], &v) || v == 0 || v > 100000000UL) {
        fprintf(stderr, "clock-check: error: %s wants 1..100000000, got '%s'\n", o,
                i + 1 < argc ? argv[i + 1] : "");
        return 2;
      }
      *(o[1] == 'n' ? &rounds : &limit_s) = v;
      i++;
    } else {
      fprintf(stderr, "clock-check: error: unknown option '%s'\n", o);
      usage(stderr);
      return 2;
    }
  }
  g.rounds = rounds;

  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    perror("clock-check: error: sched_getaffinity");
    return 2;
  }
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  g.n = CPU_COUNT(&allowed);
  g.w = calloc(g.n, sizeof *g.w);
  if (!g.w) return 2;
  for (int cpu = 0, k = 0; k < g.n; cpu++)
    if (CPU_ISSET(cpu, &allowed)) {
      g.w[k].index = k;
      g.w[k].cpu = cpu;
      k++;
    }
  sem_init(&g.done, 0, 0);
  tok.turn = 0;
  for (int i = 0; i < g.n; i++) {
    int rc = pthread_create(&g.w[i].thread, NULL, run, &g.w[i]);
    if (rc) {
      fprintf(stderr, "clock-check: error: pthread_create: %s\n", strerror(rc));
      return 2;
    }
  }
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += (time_t)limit_s;
  int finished = 0, stalled = 0;
  while (finished < g.n) {
    if (sem_timedwait(&g.done, &deadline) == 0) {
      finished++;
    } else if (errno != EINTR) {
      stalled = 1;
      break;
    }
  }
  if (stalled) {
    int t = __atomic_load_n(&tok.turn, __ATOMIC_ACQUIRE);
    printf("clock-check: FAIL the token stalled after %lu of %lu handoffs: cpu %d never "
           "took it within %lu s\n",
           tok.round, rounds * g.n, g.w[t].cpu, limit_s);
    printf("clock-check: FAIL\n");
    fflush(stdout);
    _exit(1);  // the spinning threads cannot be joined
  }
  for (int i = 0; i < g.n; i++) pthread_join(g.w[i].thread, NULL);

  int pass = 1, pinned = 0;
  uint64_t mono_back = 0, tsc_back = 0, gap_min = UINT64_MAX, gap_max = 0, gap_sum = 0;
  for (int i = 0; i < g.n; i++) {
    struct worker *w = &g.w[i];
    if (w->pin_error == 0 && w->ran_on == w->cpu)
      pinned++;
    else
      printf("clock-check: thread for cpu %d: pin %s, ran on cpu %d\n", w->cpu,
             w->pin_error ? strerror(w->pin_error) : "ok", w->ran_on);
    if (w->mono_back || w->tsc_back)
      printf("clock-check: cpu %d after cpu %d: CLOCK_MONOTONIC back %llu times (at most "
             "%llu ns), TSC back %llu times (at most %llu cycles)\n",
             w->cpu, w->back_from_cpu, (unsigned long long)w->mono_back,
             (unsigned long long)w->mono_back_max, (unsigned long long)w->tsc_back,
             (unsigned long long)w->tsc_back_max);
    mono_back += w->mono_back;
    tsc_back += w->tsc_back;
    if (w->gap_min < gap_min) gap_min = w->gap_min;
    if (w->gap_max > gap_max) gap_max = w->gap_max;
    gap_sum += w->gap_sum;
  }
  unsigned long handoffs = tok.round > 0 ? tok.round - 1 : 0;
  uint64_t forward = handoffs - mono_back;
  printf("clock-check: cpus online %ld, threads %d, pinned %d\n", online, g.n, pinned);
  printf("clock-check: %lu handoffs, CLOCK_MONOTONIC backwards %llu, TSC backwards %llu\n",
         handoffs, (unsigned long long)mono_back, (unsigned long long)tsc_back);
  if (forward)
    printf("clock-check: handoff gap (CLOCK_MONOTONIC): min %.2f us, mean %.2f us, max "
           "%.2f us\n",
           gap_min / 1e3, (double)gap_sum / forward / 1e3, gap_max / 1e3);
  pass &= pinned == g.n && g.n == online && mono_back == 0 && tsc_back == 0;

  char cs[128] = "(unreadable)", avail[256] = "(unreadable)";
  read_line("/sys/devices/system/clocksource/clocksource0/current_clocksource", cs, sizeof cs);
  read_line("/sys/devices/system/clocksource/clocksource0/available_clocksource", avail,
            sizeof avail);
  for (size_t len = strlen(avail); len && avail[len - 1] == ' ';) avail[--len] = 0;
  // tsc-early is the same TSC, registered before the kernel refines its rate against the
  // PM timer (a second or two of guest time after boot, longer on a slow guest).
  int early = !strcmp(cs, "tsc-early");
  int cs_ok = !strcmp(cs, "tsc") || early;
  printf("clock-check: clocksource %s (available: %s)%s\n", cs, avail,
         early            ? ", the TSC before the kernel's rate refinement"
         : cs_ok          ? ""
         : any_clocksource ? ", not the TSC: allowed by --any-clocksource"
                           : ", not the TSC: FAIL");
  pass &= cs_ok || any_clocksource;

  if (kernel_log) {
    int trouble = kernel_log_trouble(kernel_log_file);
    if (trouble < 0)
      printf("clock-check: kernel log not readable (%s): not checked\n", strerror(errno));
    else
      printf("clock-check: kernel log: %d clock complaints\n", trouble);
    pass &= trouble <= 0;
  }
  printf("clock-check: %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
