// smp-check: a guest-side check that every CPU runs and that memory is coherent.
//
// 1. One thread is pinned to every CPU the process may run on (sched_setaffinity);
//    each checks it really runs there.
// 2. All threads start together (barrier) and do K locked increments on one shared
//    counter; the total must be exactly K x threads.
// 3. Write-then-verify over a fraction of MemAvailable, split among the threads: every
//    thread writes its own slice with a pattern derived from each page's address and a
//    seed, then (after a second barrier) verifies a slice written by another CPU, so a
//    page written on one vCPU is read on another.
// Prints the figures and PASS or FAIL; exit status 0 only on PASS, 1 on FAIL, 2 on bad
// usage or a setup error.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guestprog.h"

#define PAGE 4096UL

struct worker {
  pthread_t thread;
  int cpu;            // CPU this thread is pinned to
  int ran_on;         // CPU sched_getcpu() reported after pinning
  int pin_error;      // errno of sched_setaffinity, 0 on success
  uint64_t *slice;    // this thread's part of the memory pass
  size_t slice_words;
  uint64_t mismatches;  // found while verifying another thread's slice
};

static struct {
  unsigned long increments;
  uint64_t seed;
  int nthreads;
  struct worker *workers;
  pthread_barrier_t barrier;
  uint64_t counter;  // the shared counter: only touched with __atomic builtins
} g;

static void usage(FILE *out) {
  fprintf(out,
          "usage: smp-check [-k INCREMENTS] [-m PERCENT] [-s SEED]\n"
          "  -k  locked increments per thread (default 1000000)\n"
          "  -m  percent of MemAvailable to write and verify, 0-95 (default 75)\n"
          "  -s  seed of the memory pattern (default 1)\n");
}

// A 64-bit mix (xorshift-multiply) so neighbouring pages get unrelated patterns.
static uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

// The expected value of word `i` of the page at `page_addr`: one mix per page, then a
// cheap per-word step, so the pass is bound by memory, not arithmetic.
static inline uint64_t pattern(uint64_t page_base, size_t i) {
  return page_base + i * 0x9e3779b97f4a7c15ULL;
}

static void fill(uint64_t *p, size_t words) {
  for (size_t off = 0; off < words; off += PAGE / 8) {
    uint64_t base = mix((uint64_t)(uintptr_t)(p + off) ^ g.seed);
    size_t end = off + PAGE / 8 < words ? off + PAGE / 8 : words;
    for (size_t i = off; i < end; i++) p[i] = pattern(base, i - off);
  }
}

static uint64_t verify(const uint64_t *p, size_t words) {
  uint64_t bad = 0;
  for (size_t off = 0; off < words; off += PAGE / 8) {
    uint64_t base = mix((uint64_t)(uintptr_t)(p + off) ^ g.seed);
    size_t end = off + PAGE / 8 < words ? off + PAGE / 8 : words;
    for (size_t i = off; i < end; i++) bad += p[i] != pattern(base, i - off);
  }
  return bad;
}

static void *run(void *arg) {
  struct worker *w = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(w->cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) w->pin_error = errno;
  w->ran_on = sched_getcpu();

  pthread_barrier_wait(&g.barrier);
  for (unsigned long i = 0; i < g.increments; i++)
    __atomic_fetch_add(&g.counter, 1, __ATOMIC_SEQ_CST);

  if (w->slice_words) fill(w->slice, w->slice_words);
  pthread_barrier_wait(&g.barrier);
  // Verify the slice the next thread wrote: with two or more CPUs every page is read
  // on a different CPU from the one that wrote it.
  struct worker *other = &g.workers[(w - g.workers + 1) % g.nthreads];
  if (other->slice_words) w->mismatches = verify(other->slice, other->slice_words);
  return NULL;
}

static long mem_available_kib(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  long kib = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  unsigned long k = 1000000, percent = 75, seed = 1;
  int opt;
  while ((opt = getopt(argc, argv, "k:m:s:h")) != -1) {
    switch (opt) {
      case 'k':
        if (parse_ulong(optarg, &k) || k == 0 || k > 1000000000UL) {
          fprintf(stderr, "smp-check: error: -k wants 1..1000000000, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'm':
        if (parse_ulong(optarg, &percent) || percent > 95) {
          fprintf(stderr, "smp-check: error: -m wants a percent 0..95, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 's':
        if (parse_ulong(optarg, &seed)) {
          fprintf(stderr, "smp-check: error: -s wants a number, got '%s'\n", optarg);
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
    fprintf(stderr, "smp-check: error: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  g.increments = k;
  g.seed = seed;

  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    perror("smp-check: error: sched_getaffinity");
    return 2;
  }
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  g.nthreads = CPU_COUNT(&allowed);
  g.workers = calloc(g.nthreads, sizeof *g.workers);
  if (!g.workers) return 2;
  for (int cpu = 0, n = 0; n < g.nthreads; cpu++)
    if (CPU_ISSET(cpu, &allowed)) g.workers[n++].cpu = cpu;

  long avail_kib = mem_available_kib();
  if (avail_kib < 0) {
    fprintf(stderr, "smp-check: error: no MemAvailable in /proc/meminfo\n");
    return 2;
  }
  size_t total = (size_t)avail_kib * 1024 / 100 * percent;
  size_t per_thread = total / g.nthreads / PAGE * PAGE;
  uint64_t *mem = NULL;
  if (per_thread) {
    mem = mmap(NULL, per_thread * g.nthreads, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      perror("smp-check: error: mmap");
      return 2;
    }
  }
  for (int i = 0; i < g.nthreads; i++) {
    g.workers[i].slice = mem ? mem + i * (per_thread / 8) : NULL;
    g.workers[i].slice_words = per_thread / 8;
  }

  pthread_barrier_init(&g.barrier, NULL, g.nthreads);
  for (int i = 0; i < g.nthreads; i++) {
    int rc = pthread_create(&g.workers[i].thread, NULL, run, &g.workers[i]);
    if (rc) {
      fprintf(stderr, "smp-check: error: pthread_create: %s\n", strerror(rc));
      return 2;
    }
  }
  int pinned = 0;
  uint64_t mismatches = 0;
  for (int i = 0; i < g.nthreads; i++) {
    pthread_join(g.workers[i].thread, NULL);
    struct worker *w = &g.workers[i];
    if (w->pin_error == 0 && w->ran_on == w->cpu)
      pinned++;
    else
      printf("smp-check: thread for cpu %d: pin %s, ran on cpu %d\n", w->cpu,
             w->pin_error ? strerror(w->pin_error) : "ok", w->ran_on);
    mismatches += w->mismatches;
  }
  uint64_t expected = (uint64_t)k * g.nthreads;
  uint64_t got = __atomic_load_n(&g.counter, __ATOMIC_SEQ_CST);
  printf("smp-check: cpus online %ld, threads %d, pinned %d\n", online, g.nthreads, pinned);
  printf("smp-check: counter expected %llu got %llu\n", (unsigned long long)expected,
         (unsigned long long)got);
  printf("smp-check: memory %zu MiB verified (%lu%% of %ld MiB available), mismatches %llu\n",
         per_thread * g.nthreads >> 20, percent, avail_kib >> 10,
         (unsigned long long)mismatches);
  int pass = pinned == g.nthreads && g.nthreads == online && got == expected && mismatches == 0;
  printf("smp-check: %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
