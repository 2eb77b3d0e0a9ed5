// parallel-work: an embarrassingly parallel workload, one process per online CPU.
//
// Every worker is a process pinned to its CPU (sched_setaffinity). After pinning it
// allocates and fills its own private buffer (-m MiB, default 4: first touched on its
// CPU, so on a NUMA guest the pages come from that CPU's node), then waits at a start
// barrier. When all are ready the parent releases them at once and each does -u work
// units (default 64): one unit is one pass over one MiB of its buffer (cycling through
// the buffer), mixing every 64-bit word into a running 64-bit hash and writing the word
// back updated, so each unit reads and writes 1 MiB and does 131,072 multiply-xor
// steps. Nothing is shared between workers but the start barrier and the result pipe.
// The work is deterministic: every worker starts from the same buffer contents and does
// the same units, so all must end with the same checksum (checked: a mismatch is a
// FAIL, the memory or the CPU lied).
//
// Prints per-CPU figures (units/s from the worker's own start to its end), the wall
// time from the release to the last worker's result, and
//   RESULT parallel_work_units_per_s <total units / wall time>
// Exit status: 0 done and the checksums agree; 1 a worker failed or the checksums
// differ; 2 bad usage.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guestprog.h"

#define MIB (1UL << 20)

struct result {
  int cpu;          // CPU the worker was pinned to
  int ran_on;       // sched_getcpu() at the end of the work
  int error;        // errno of the failing step, 0 on success
  char step[24];    // which step failed
  double seconds;   // the worker's own time for its units
  uint64_t checksum;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// One unit: one pass over `words` 64-bit words, a multiply-xor hash chained through
// them, each word written back mixed with the running hash.
static uint64_t unit(uint64_t *w, size_t words, uint64_t h) {
  for (size_t i = 0; i < words; i++) {
    uint64_t x = w[i] ^ h;
    x *= 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    h = (h ^ x) * 0xbf58476d1ce4e5b9ULL;
    w[i] = x;
  }
  return h;
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

// The worker: never returns.
static void worker(int cpu, size_t buf_mib, unsigned long units, int ready_fd, int go_fd,
                   int result_fd) {
  struct result r;
  memset(&r, 0, sizeof r);
  r.cpu = cpu;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  uint64_t *buf = MAP_FAILED;
  size_t words = buf_mib * MIB / 8, per_unit = MIB / 8;
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    r.error = errno;
    snprintf(r.step, sizeof r.step, "sched_setaffinity");
  } else if ((buf = mmap(NULL, buf_mib * MIB, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED) {
    r.error = errno;
    snprintf(r.step, sizeof r.step, "mmap");
  } else {
    for (size_t i = 0; i < words; i++) buf[i] = i * 0xd6e8feb86659fd93ULL + 1;
  }
  char c = 'r';
  if (write_all(ready_fd, &c, 1)) _exit(1);
  // The start: the parent closes the go pipe, every worker's read returns 0 at once.
  while (read(go_fd, &c, 1) < 0 && errno == EINTR) {
  }
  if (!r.error) {
    uint64_t h = 0x6a09e667f3bcc908ULL;
    double t0 = now_s();
    for (unsigned long u = 0; u < units; u++)
      h = unit(buf + (u % buf_mib) * per_unit, per_unit, h);
    r.seconds = now_s() - t0;
    r.checksum = h;
    r.ran_on = sched_getcpu();
  }
  _exit(write_all(result_fd, &r, sizeof r) ? 1 : 0);
}

static int by_cpu(const void *a, const void *b) {
  return ((const struct result *)a)->cpu - ((const struct result *)b)->cpu;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: parallel-work [-u UNITS] [-m MIB]\n"
          "  -u  work units per CPU, each one pass over 1 MiB (default 64)\n"
          "  -m  private buffer per worker in MiB (default 4)\n");
}

int main(int argc, char **argv) {
  unsigned long units = 64, buf_mib = 4;
  int opt;
  while ((opt = getopt(argc, argv, "u:m:h")) != -1) {
    switch (opt) {
      case 'u':
        if (parse_ulong(optarg, &units) || units == 0 || units > 100000000UL) {
          fprintf(stderr, "parallel-work: error: -u wants 1..100000000, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'm':
        if (parse_ulong(optarg, &buf_mib) || buf_mib == 0 || buf_mib > 4096) {
          fprintf(stderr, "parallel-work: error: -m wants 1..4096 MiB, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "parallel-work: error: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }

  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    perror("parallel-work: error: sched_getaffinity");
    return 1;
  }
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int cpus[MAX_CPUS], n = 0;
  for (int c = 0; c < MAX_CPUS; c++)
    if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
  printf("parallel-work: %d workers (cpus online %ld), %lu units of 1 MiB each, "
         "%lu MiB private buffer each\n",
         n, online, units, buf_mib);
  fflush(stdout);

  int ready[2], go[2], res[2];
  if (pipe(ready) || pipe(go) || pipe(res)) {
    perror("parallel-work: error: pipe");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("parallel-work: error: fork");
      return 1;  // the workers started so far see EOF on go and end
    }
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      close(res[0]);
      worker(cpus[i], buf_mib, units, ready[1], go[0], res[1]);
    }
  }
  close(ready[1]);
  close(go[0]);
  close(res[1]);
  char c;
  for (int i = 0; i < n; i++)
    if (read_all(ready[0], &c, 1)) {
      fprintf(stderr, "parallel-work: error: a worker died before the start\n");
      return 1;
    }
  double t0 = now_s();
  close(go[1]);  // the start
  struct result rs[MAX_CPUS];
  int got = 0;
  double wall = 0;
  for (; got < n; got++) {
    if (read_all(res[0], &rs[got], sizeof rs[got])) break;
    wall = now_s() - t0;
  }
  int failed = got < n;
  for (int i = 0; i < n; i++) {
    int status;
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) failed = 1;
  }
  if (got < n)
    printf("parallel-work: only %d of %d workers reported a result\n", got, n);

  qsort(rs, got, sizeof rs[0], by_cpu);
  double sum_rate = 0;
  int mismatched = 0;
  for (int i = 0; i < got; i++) {
    struct result *r = &rs[i];
    if (r->error) {
      printf("parallel-work: cpu %d: %s failed: %s\n", r->cpu, r->step, strerror(r->error));
      failed = 1;
      continue;
    }
    double rate = units / r->seconds;
    sum_rate += rate;
    if (r->checksum != rs[0].checksum) mismatched++;
    printf("parallel-work: cpu %d: %.3f s, %.1f units/s%s, checksum %016llx\n", r->cpu,
           r->seconds, rate, r->ran_on == r->cpu ? "" : " (NOT on its cpu at the end)",
           (unsigned long long)r->checksum);
    if (r->ran_on != r->cpu) failed = 1;
  }
  if (failed || mismatched || wall <= 0) {
    if (mismatched) printf("parallel-work: %d checksums differ from cpu %d's\n", mismatched,
                           rs[0].cpu);
    printf("parallel-work: FAIL\n");
    return 1;
  }
  double total = (double)units * n / wall;
  printf("parallel-work: wall %.3f s from the start to the last result; sum of per-cpu "
         "rates %.1f units/s\n",
         wall, sum_rate);
  printf("RESULT parallel_work_units_per_s %.1f\n", total);
  return 0;
}
