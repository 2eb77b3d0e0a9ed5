// wakeup-bench: wake-up round trips between two threads pinned to two CPUs.
//
// Thread A (on CPU a) writes one byte into pipe 1 and blocks reading pipe 2; thread B
// (on CPU b) blocks reading pipe 1 and answers into pipe 2. Each round trip is two
// wake-ups of a sleeping thread (on another CPU: two reschedule IPIs and two wake-ups
// from idle), timed by thread A with CLOCK_MONOTONIC. Prints the median and the 99th
// percentile of the round trips in microseconds.
//
// Modes:
//   wakeup-bench [-a CPU] [-b CPU] [-n ROUNDS]   one pair (default CPUs 0 and 1)
//   wakeup-bench --numa [-n ROUNDS]              a same-node pair and a cross-node pair
//       chosen from /sys/devices/system/node/nodeN/cpulist, measured in interleaved
//       blocks (so a change in the machine's load hits both alike); prints both, the
//       ratio of the medians and
//         RESULT wakeup_same_node_us <median> us
//         RESULT wakeup_cross_node_us <median> us
//         RESULT wakeup_cross_vs_same_node_ratio <cross median / same median>
//       The same-node pair is the first two CPUs of the first node that has two; the
//       cross-node pair is that node's first CPU and the first CPU of another node.
//       With one NUMA node it says so, measures the same-node pair only and exits 3.
// Exit status: 0 measured; 1 a measurement failed (pinning, pipe error); 2 bad usage;
// 3 the topology has no pair of the kind asked for (no second node, no node with two
// CPUs, a CPU that is not online).
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guestprog.h"

#define MAX_NODES 64
#define WARMUP 50  // round trips before the timed ones of every block

struct samples {
  double *us;
  size_t n, cap;
};

struct pair {
  int a, b;          // CPUs
  int fail;          // set by a thread on error
  char error[160];   // what went wrong
};

struct side {
  struct pair *pair;
  int cpu;
  int rfd, wfd;          // read end of the incoming pipe, write end of the outgoing one
  unsigned long rounds;  // timed rounds (WARMUP more are done first)
  int timer;             // this side times the round trips (thread A)
  struct samples *out;
};

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void set_error(struct pair *p, const char *what, int err) {
  if (!__atomic_exchange_n(&p->fail, 1, __ATOMIC_SEQ_CST))
    snprintf(p->error, sizeof p->error, "%s: %s", what, strerror(err));
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) return errno;
  return sched_getcpu() == cpu ? 0 : EINVAL;
}

// One byte each way; a short read or write ends the run (the peer then sees EOF).
static int xfer(int fd, int write_it) {
  char c = 'w';
  for (;;) {
    ssize_t r = write_it ? write(fd, &c, 1) : read(fd, &c, 1);
    if (r == 1) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r == 0 ? EPIPE : errno;
  }
}

static void *run_side(void *arg) {
  struct side *s = arg;
  int err = pin(s->cpu);
  if (err) {
    char what[64];
    snprintf(what, sizeof what, "pinning a thread to cpu %d", s->cpu);
    set_error(s->pair, what, err);
    close(s->wfd);  // the peer sees EOF and stops
    return NULL;
  }
  unsigned long total = s->rounds + WARMUP;
  for (unsigned long i = 0; i < total; i++) {
    if (s->timer) {
      double t0 = now_us();
      if ((err = xfer(s->wfd, 1)) || (err = xfer(s->rfd, 0))) break;
      if (i >= WARMUP) s->out->us[s->out->n++] = now_us() - t0;
    } else {
      if ((err = xfer(s->rfd, 0)) || (err = xfer(s->wfd, 1))) break;
    }
  }
  if (err) set_error(s->pair, "pipe", err);
  close(s->wfd);
  return NULL;
}

// Measures `rounds` round trips between p->a and p->b, appending them to `out`.
static int measure(struct pair *p, unsigned long rounds, struct samples *out) {
  int ab[2], ba[2];
  if (pipe(ab) != 0 || pipe(ba) != 0) {
    set_error(p, "pipe", errno);
    return -1;
  }
  struct side sa = {p, p->a, ba[0], ab[1], rounds, 1, out};
  struct side sb = {p, p->b, ab[0], ba[1], rounds, 0, out};
  pthread_t ta, tb;
  int rc = pthread_create(&ta, NULL, run_side, &sa);
  if (rc == 0 && (rc = pthread_create(&tb, NULL, run_side, &sb)) != 0) {
    close(ba[1]);  // B's write end: thread A sees EOF on its answer pipe and stops
    pthread_join(ta, NULL);
  }
  if (rc) {
    set_error(p, "pthread_create", rc);
    return -1;
  }
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  close(ab[0]);
  close(ba[0]);
  return p->fail ? -1 : 0;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

// Nearest-rank percentile of sorted values.
static double percentile(const double *v, size_t n, double pct) {
  size_t rank = (size_t)(pct / 100.0 * n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return v[rank - 1];
}

static double median(const double *v, size_t n) {
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void report(const char *label, const struct pair *p, struct samples *s, double *med) {
  qsort(s->us, s->n, sizeof *s->us, cmp_double);
  *med = median(s->us, s->n);
  printf("wakeup-bench: %s cpu %d <-> cpu %d: %zu round trips, median %.2f us, p99 %.2f us, "
         "min %.2f us, max %.2f us\n",
         label, p->a, p->b, s->n, *med, percentile(s->us, s->n, 99), s->us[0],
         s->us[s->n - 1]);
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

static int first_cpu(const cpu_set_t *set, int after) {
  for (int c = after + 1; c < MAX_CPUS; c++)
    if (CPU_ISSET(c, set)) return c;
  return -1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: wakeup-bench [-a CPU] [-b CPU] [-n ROUNDS]\n"
          "       wakeup-bench --numa [-n ROUNDS] [-k BLOCKS]\n"
          "  -a, -b   the two CPUs of the pair (default 0 and 1)\n"
          "  -n       timed round trips per pair (default 5000)\n"
          "  --numa   a same-node and a cross-node pair from /sys/devices/system/node\n"
          "  -k       interleaved blocks per pair in --numa mode (default 10)\n"
          "  --sysfs DIR  read the topology under DIR instead of /sys (tests)\n");
}

static int alloc_samples(struct samples *s, unsigned long n) {
  s->us = calloc(n, sizeof *s->us);
  s->n = 0;
  s->cap = n;
  return s->us ? 0 : -1;
}

int main(int argc, char **argv) {
  unsigned long rounds = 5000, blocks = 10, a = 0, b = 1;
  int numa = 0;
  const char *sysfs = "/sys";
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(o, "--numa")) {
      numa = 1;
      continue;
    }
    if (!strcmp(o, "--sysfs") && i + 1 < argc) {
      sysfs = argv[++i];
      continue;
    }
    if (strcmp(o, "-a") && strcmp(o, "-b") && strcmp(o, "-n") && strcmp(o, "-k")) {
      fprintf(stderr, "wakeup-bench: error: unknown option '%s'\n", o);
      usage(stderr);
      return 2;
    }
    if (i + 1 == argc) {
      fprintf(stderr, "wakeup-bench: error: %s needs a value\n", o);
      return 2;
    }
    const char *v = argv[++i];
    unsigned long x;
    if (parse_ulong(v, &x)) {
      fprintf(stderr, "wakeup-bench: error: %s wants a number, got '%s'\n", o, v);
      return 2;
    }
    if (o[1] == 'a' || o[1] == 'b') {
      if (x >= MAX_CPUS) {
        fprintf(stderr, "wakeup-bench: error: %s wants a CPU 0..%d, got '%s'\n", o,
                MAX_CPUS - 1, v);
        return 2;
      }
      *(o[1] == 'a' ? &a : &b) = x;
    } else if (o[1] == 'n') {
      if (x == 0 || x > 10000000) {
        fprintf(stderr, "wakeup-bench: error: -n wants 1..10000000, got '%s'\n", v);
        return 2;
      }
      rounds = x;
    } else {
      if (x == 0 || x > 1000) {
        fprintf(stderr, "wakeup-bench: error: -k wants 1..1000, got '%s'\n", v);
        return 2;
      }
      blocks = x;
    }
  }

  char line[4096], path[4200];
  cpu_set_t online;
  snprintf(path, sizeof path, "%s/devices/system/cpu/online", sysfs);
  if (read_line(path, line, sizeof line) || parse_cpulist(line, &online) < 1) {
    fprintf(stderr, "wakeup-bench: error: cannot read %s\n", path);
    return 1;
  }

  if (!numa) {
    struct pair p = {(int)a, (int)b, 0, ""};
    for (int i = 0; i < 2; i++) {
      int cpu = i ? p.b : p.a;
      if (!CPU_ISSET(cpu, &online)) {
        printf("wakeup-bench: cpu %d is not online (online: %s)\n", cpu, line);
        return 3;
      }
    }
    struct samples s;
    if (alloc_samples(&s, rounds)) return 1;
    if (measure(&p, rounds, &s)) {
      printf("wakeup-bench: error: %s\n", p.error);
      return 1;
    }
    double med;
    report("pair", &p, &s, &med);
    printf("RESULT wakeup_pair_us %.2f us\n", med);
    return 0;
  }

  // NUMA mode: the nodes and their CPUs.
  cpu_set_t node_cpus[MAX_NODES];
  int node_ids[MAX_NODES], nodes = 0;
  for (int id = 0; id < MAX_NODES; id++) {
    snprintf(path, sizeof path, "%s/devices/system/node/node%d/cpulist", sysfs, id);
    if (read_line(path, line, sizeof line)) continue;
    if (parse_cpulist(line, &node_cpus[nodes]) < 0) {
      fprintf(stderr, "wakeup-bench: error: cannot parse %s: '%s'\n", path, line);
      return 1;
    }
    CPU_AND(&node_cpus[nodes], &node_cpus[nodes], &online);
    node_ids[nodes++] = id;
    printf("wakeup-bench: node%d cpus %s\n", id, line[0] ? line : "(none)");
  }
  if (nodes == 0) {
    // A kernel without NUMA has no node directory: one node, every CPU.
    node_cpus[0] = online;
    node_ids[0] = 0;
    nodes = 1;
    printf("wakeup-bench: no node directories under %s/devices/system/node: one node\n",
           sysfs);
  }
  int same_node = -1;
  for (int n = 0; n < nodes && same_node < 0; n++)
    if (CPU_COUNT(&node_cpus[n]) >= 2) same_node = n;
  int cross_node = -1;
  int base = same_node >= 0 ? same_node : 0;
  for (int n = 0; n < nodes && cross_node < 0; n++)
    if (n != base && CPU_COUNT(&node_cpus[n]) >= 1 && CPU_COUNT(&node_cpus[base]) >= 1)
      cross_node = n;

  struct pair same = {-1, -1, 0, ""}, cross = {-1, -1, 0, ""};
  if (same_node >= 0) {
    same.a = first_cpu(&node_cpus[same_node], -1);
    same.b = first_cpu(&node_cpus[same_node], same.a);
  }
  if (cross_node >= 0) {
    cross.a = first_cpu(&node_cpus[base], -1);
    cross.b = first_cpu(&node_cpus[cross_node], -1);
  }
  if (nodes == 1)
    printf("wakeup-bench: the guest has one NUMA node: no cross-node pair to measure\n");
  else if (cross_node < 0)
    printf("wakeup-bench: no two nodes with online CPUs: no cross-node pair to measure\n");
  if (same_node < 0)
    printf("wakeup-bench: no node has two online CPUs: no same-node pair to measure\n");
  if (same_node < 0 && cross_node < 0) return 3;

  struct samples ss, sc;
  if (alloc_samples(&ss, rounds) || alloc_samples(&sc, rounds)) return 1;
  for (unsigned long k = 0; k < blocks; k++) {
    // Block k: rounds split as evenly as possible, the remainder in the first blocks.
    unsigned long n = rounds / blocks + (k < rounds % blocks);
    if (n == 0) continue;
    if (same_node >= 0 && measure(&same, n, &ss)) {
      printf("wakeup-bench: error: same-node pair: %s\n", same.error);
      return 1;
    }
    if (cross_node >= 0 && measure(&cross, n, &sc)) {
      printf("wakeup-bench: error: cross-node pair: %s\n", cross.error);
      return 1;
    }
  }
  double ms = 0, mc = 0;
  char label[64];
  if (same_node >= 0) {
    snprintf(label, sizeof label, "same-node (node%d)", node_ids[same_node]);
    report(label, &same, &ss, &ms);
  }
  if (cross_node >= 0) {
    snprintf(label, sizeof label, "cross-node (node%d, node%d)", node_ids[base],
             node_ids[cross_node]);
    report(label, &cross, &sc, &mc);
  }
  if (same_node >= 0 && cross_node >= 0)
    printf("wakeup-bench: cross-node / same-node median: %.3f\n", mc / ms);
  if (same_node >= 0) printf("RESULT wakeup_same_node_us %.2f us\n", ms);
  if (cross_node >= 0) printf("RESULT wakeup_cross_node_us %.2f us\n", mc);
  if (same_node < 0 || cross_node < 0) return 3;
  printf("RESULT wakeup_cross_vs_same_node_ratio %.3f\n", mc / ms);
  return 0;
}
