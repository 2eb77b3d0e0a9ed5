// Helpers shared by the guest test programs (guest-image/programs/*.c): each program is
// one static binary, and this header is included by those that need the pieces below.
// Requires _GNU_SOURCE before any include (for cpu_set_t).
#ifndef KV_GUESTPROG_H
#define KV_GUESTPROG_H

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

// CPUs a program handles (cpu_set_t holds CPU_SETSIZE = 1024).
#define MAX_CPUS 1024

// A whole unsigned number (decimal, 0x hex or 0 octal) and nothing else; -1 otherwise.
static inline int parse_ulong(const char *s, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || end == s || *end || s[0] == '-') return -1;
  *out = v;
  return 0;
}

// A cpulist ("0-3,8,10-11", as sysfs writes it) into `set`; returns the number of CPUs,
// -1 on a syntax error or a CPU at or above MAX_CPUS.
static inline int parse_cpulist(const char *text, cpu_set_t *set) {
  CPU_ZERO(set);
  const char *p = text;
  while (*p && *p != '\n') {
    char *end;
    long lo = strtol(p, &end, 10), hi = lo;
    if (end == p || lo < 0) return -1;
    p = end;
    if (*p == '-') {
      hi = strtol(p + 1, &end, 10);
      if (end == p + 1 || hi < lo) return -1;
      p = end;
    }
    if (hi >= MAX_CPUS) return -1;
    for (long c = lo; c <= hi; c++) CPU_SET(c, set);
    if (*p == ',') p++;
    else if (*p && *p != '\n') return -1;
  }
  return CPU_COUNT(set);
}

#endif
