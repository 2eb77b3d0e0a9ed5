// numa-check: the guest sees the machine a cluster config describes (issue 4 item 4).
//
//   numa-check --nodes N --cpus-per-node C[,C...] [--node-mem-mib M[,M...]]
//              [--cpulists LIST:LIST...] [--slack-pct P] [--slack-mib S] [--root DIR]
//
// Checks, each printed as one line with its figures:
//   cpus     the CPUs online (/sys/devices/system/cpu/online) and the CPUs this process
//            may run on (nproc) both equal the sum of the per-node counts;
//   nodes    /sys/devices/system/node/ has exactly the directories node0..node(N-1);
//   nodeK    nodeK/cpulist is the expected list: by default the CPUs are numbered in
//            node order (node 0 has 0..C0-1, node 1 the next C1, ...), as vmm-launch
//            numbers vCPUs; --cpulists gives them explicitly (node lists separated by
//            ':', each in the kernel's cpulist syntax, e.g. 0-1:2-3);
//   memK     (with --node-mem-mib) the node's MemTotal (nodeK/meminfo) lies within
//            [M - share, M] where M is the node's RAM and share the kernel's allowance
//            below;
//   total    (with --node-mem-mib) /proc/meminfo's MemTotal equals the sum of the
//            nodes' MemTotal (to 1 MiB) and lies within [sum M - sum share, sum M];
//   distance nodeK/distance has N entries, 10 to itself and more than 10 to every other
//            node (ACPI SLIT, or the kernel's default without one).
//
// The kernel's share. MemTotal counts the pages the kernel's page allocator manages:
// the node's RAM less what was reserved before it started, i.e.
//   - on every node, the struct page array of its memory (64 bytes per 4 KiB page,
//     1.5625%) and per-node early allocations (page tables, per-CPU areas, the node's
//     zone structures): allowed as P% of M (default 3) + 8 MiB;
//   - on one node in addition: the kernel image (the part not freed after boot) and the
//     early allocator's other boot-time reservations, with the firmware/BIOS areas below
//     1 MiB and the ACPI tables on node 0: S MiB more (default 48). That node is node 0
//     without KASLR, but with it the decompressor puts the image at a random physical
//     address, in any node's RAM; the node that lost the most is taken as the image's.
// So share(image's node) = M*P/100 + 8 + S MiB and share(others) = M*P/100 + 8 MiB. MemTotal
// above M is always a FAIL (the guest sees RAM the node does not have). The measured
// figures of a 512 MiB one-node guest are in docs/guest-image.md.
//
// --root DIR reads DIR/sys/... and DIR/proc/meminfo instead (tests with a fake tree;
// nproc is then not compared). Prints PASS or FAIL; exit status 0 on PASS, 1 on FAIL,
// 2 on bad usage.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestprog.h"

#define MAX_NODES 64

static const char *root = "";
static int failures;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("numa-check: %s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  failures += !ok;
}

static int read_file(const char *rel, char *buf, size_t size) {
  char path[4096];
  snprintf(path, sizeof path, "%s%s", root, rel);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = 0;
  return 0;
}

// A set back into the kernel's cpulist syntax.
static void format_cpulist(const cpu_set_t *set, char *out, size_t size) {
  size_t len = 0;
  out[0] = 0;
  for (int c = 0; c < MAX_CPUS; c++) {
    if (!CPU_ISSET(c, set)) continue;
    int e = c;
    while (e + 1 < MAX_CPUS && CPU_ISSET(e + 1, set)) e++;
    len += snprintf(out + len, len < size ? size - len : 0, "%s%d", len ? "," : "", c);
    if (e > c) len += snprintf(out + len, len < size ? size - len : 0, "-%d", e);
    c = e;
  }
  if (!len) snprintf(out, size, "(none)");
}

// "a,b,c" of unsigned numbers; returns the count or -1.
static int parse_list(const char *s, long *out, int max) {
  int n = 0;
  const char *p = s;
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || end == p || v < 0 || n == max) return -1;
    out[n++] = v;
    p = end;
    if (*p == ',') {
      if (!*++p) return -1;
    } else if (*p) {
      return -1;
    }
  }
  return n;
}

// "Node K MemTotal: X kB" from nodeK/meminfo, or "MemTotal: X kB" from /proc/meminfo.
static long mem_total_kib(const char *rel) {
  char buf[8192];
  if (read_file(rel, buf, sizeof buf)) return -1;
  char *p = strstr(buf, "MemTotal:");
  long kib;
  if (!p || sscanf(p, "MemTotal: %ld kB", &kib) != 1) return -1;
  return kib;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: numa-check --nodes N --cpus-per-node C[,C...] [--node-mem-mib M[,M...]]\n"
          "                  [--cpulists LIST:LIST...] [--slack-pct P] [--slack-mib S]\n"
          "                  [--root DIR]\n"
          "  --nodes          NUMA nodes the guest must show (one per host node)\n"
          "  --cpus-per-node  CPUs of each node: one count for all, or one per node\n"
          "  --node-mem-mib   RAM of each node in MiB: one figure for all, or one per node\n"
          "  --cpulists       expected cpulist of each node, ':'-separated (default: the\n"
          "                   CPUs numbered in node order)\n"
          "  --slack-pct      kernel's share on every node, percent of its RAM (default 3)\n"
          "  --slack-mib      extra share of the kernel image's node in MiB (default 48)\n"
          "  --root DIR       read DIR/sys and DIR/proc instead of /sys and /proc\n");
}

int main(int argc, char **argv) {
  long nodes = -1, cpus[MAX_NODES], mem[MAX_NODES], slack_pct = 3, slack_mib = 48;
  int ncpus = 0, nmem = 0;
  const char *cpulists = NULL;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      usage(stdout);
      return 0;
    }
    static const char *const known[] = {"--nodes",    "--cpus-per-node", "--node-mem-mib",
                                        "--cpulists", "--slack-pct",     "--slack-mib",
                                        "--root"};
    int k = 0;
    while (k < 7 && strcmp(o, known[k])) k++;
    if (k == 7) {
      fprintf(stderr, "numa-check: error: unknown option '%s'\n", o);
      usage(stderr);
      return 2;
    }
    if (i + 1 == argc) {
      fprintf(stderr, "numa-check: error: %s needs a value\n", o);
      return 2;
    }
    const char *v = argv[++i];
    long one;
    int bad = 0;
    switch (k) {
      case 0:
        bad = parse_list(v, &one, 1) != 1 || one < 1 || one > MAX_NODES;
        nodes = one;
        break;
      case 1:
        bad = (ncpus = parse_list(v, cpus, MAX_NODES)) < 1;
        break;
      case 2:
        bad = (nmem = parse_list(v, mem, MAX_NODES)) < 1;
        break;
      case 3:
        cpulists = v;
        break;
      case 4:
        bad = parse_list(v, &slack_pct, 1) != 1 || slack_pct > 50;
        break;
      case 5:
        bad = parse_list(v, &slack_mib, 1) != 1;
        break;
      case 6:
        root = v;
        break;
    }
    if (bad) {
      fprintf(stderr, "numa-check: error: bad value for %s: '%s'\n", o, v);
      return 2;
    }
  }
  if (nodes < 0 || ncpus == 0) {
    fprintf(stderr, "numa-check: error: --nodes and --cpus-per-node are required\n");
    return 2;
  }
  if (ncpus != 1 && ncpus != nodes) {
    fprintf(stderr, "numa-check: error: --cpus-per-node has %d figures for %ld nodes\n",
            ncpus, nodes);
    return 2;
  }
  if (nmem > 1 && nmem != nodes) {
    fprintf(stderr, "numa-check: error: --node-mem-mib has %d figures for %ld nodes\n", nmem,
            nodes);
    return 2;
  }
  for (int n = 1; n < nodes; n++) {
    if (ncpus == 1) cpus[n] = cpus[0];
    if (nmem == 1) mem[n] = mem[0];
  }

  // The expected cpulist of every node.
  cpu_set_t want[MAX_NODES];
  long total_cpus = 0;
  for (int n = 0; n < nodes; n++) {
    CPU_ZERO(&want[n]);
    for (long c = 0; c < cpus[n]; c++)
      if (total_cpus + c < MAX_CPUS) CPU_SET(total_cpus + c, &want[n]);
    total_cpus += cpus[n];
  }
  if (cpulists) {
    const char *p = cpulists;
    for (int n = 0; n < nodes; n++) {
      char one[1024];
      size_t len = strcspn(p, ":");
      if (len >= sizeof one || (n < nodes - 1 && p[len] != ':') ||
          (n == nodes - 1 && p[len] != 0)) {
        fprintf(stderr, "numa-check: error: --cpulists wants %ld lists separated by ':'\n",
                nodes);
        return 2;
      }
      memcpy(one, p, len);
      one[len] = 0;
      if (parse_cpulist(one, &want[n]) != cpus[n]) {
        fprintf(stderr, "numa-check: error: --cpulists: node %d's list '%s' is not %ld CPUs\n",
                n, one, cpus[n]);
        return 2;
      }
      p += len + (p[len] == ':');
    }
  }

  char buf[8192], have_s[1024], want_s[1024];
  // CPUs: online and usable by this process.
  cpu_set_t online;
  int n_online = -1;
  if (!read_file("/sys/devices/system/cpu/online", buf, sizeof buf))
    n_online = parse_cpulist(buf, &online);
  if (n_online < 0) CPU_ZERO(&online);
  format_cpulist(&online, have_s, sizeof have_s);
  check(n_online == total_cpus, "cpus online %d (%s), expected %ld", n_online, have_s,
        total_cpus);
  if (!root[0]) {
    cpu_set_t allowed;
    int nproc = sched_getaffinity(0, sizeof allowed, &allowed) ? -1 : CPU_COUNT(&allowed);
    check(nproc == total_cpus, "nproc %d, expected %ld", nproc, total_cpus);
  }

  // Nodes: exactly node0..node(N-1).
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/sys/devices/system/node", root);
  DIR *d = opendir(dir);
  int seen = 0, extra = 0, present[MAX_NODES] = {0};
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      int id;
      char tail;
      if (sscanf(e->d_name, "node%d%c", &id, &tail) != 1) continue;
      seen++;
      if (id >= 0 && id < nodes) present[id] = 1;
      else extra++;
    }
    closedir(d);
  }
  int all_present = 1;
  for (int n = 0; n < nodes; n++) all_present &= present[n];
  buf[0] = 0;
  if (!read_file("/sys/devices/system/node/online", buf, sizeof buf))
    buf[strcspn(buf, "\n")] = 0;
  check(d && seen == nodes && all_present && !extra,
        "nodes %d under /sys/devices/system/node (online: %s), expected %ld (node0..node%ld)",
        seen, buf[0] ? buf : "?", nodes, nodes - 1);

  // Every node's CPUs and memory.
  long kib[MAX_NODES], sum_kib = 0, sum_mem = 0, sum_share = 0;
  for (int n = 0; n < nodes; n++) {
    char rel[128];
    snprintf(rel, sizeof rel, "/sys/devices/system/node/node%d/cpulist", n);
    cpu_set_t have;
    int ok = !read_file(rel, buf, sizeof buf) && parse_cpulist(buf, &have) >= 0;
    if (!ok) CPU_ZERO(&have);
    format_cpulist(&have, have_s, sizeof have_s);
    format_cpulist(&want[n], want_s, sizeof want_s);
    check(ok && CPU_EQUAL(&have, &want[n]), "node%d cpus %s, expected %s", n,
          ok ? have_s : "(unreadable)", want_s);

    snprintf(rel, sizeof rel, "/sys/devices/system/node/node%d/meminfo", n);
    kib[n] = mem_total_kib(rel);
    if (kib[n] > 0) sum_kib += kib[n];
    if (!nmem) {
      if (kib[n] > 0)
        printf("numa-check: info node%d MemTotal %.1f MiB (not checked: no --node-mem-mib)\n",
               n, kib[n] / 1024.0);
      continue;
    }
  }
  // The kernel image's node: the one that lost the most to the kernel (node 0 without
  // KASLR; with it the decompressor may put the image in any node's RAM).
  int image_node = 0;
  for (int n = 1; nmem && n < nodes; n++)
    if (mem[n] * 1024 - kib[n] > mem[image_node] * 1024 - kib[image_node]) image_node = n;
  for (int n = 0; nmem && n < nodes; n++) {
    long share = mem[n] * slack_pct / 100 + 8 + (n == image_node ? slack_mib : 0);
    sum_mem += mem[n];
    sum_share += share;
    double mib = kib[n] / 1024.0;
    if (kib[n] <= 0)
      check(0, "node%d MemTotal unreadable (/sys/devices/system/node/node%d/meminfo), RAM %ld MiB",
            n, n, mem[n]);
    else
      check(mib <= mem[n] && mib >= mem[n] - share,
            "node%d MemTotal %.1f MiB, RAM %ld MiB, kernel's share %.1f MiB (allowed %ld%s)", n,
            mib, mem[n], mem[n] - mib, share, n == image_node ? ", kernel image's node" : "");
  }
  long total_kib = mem_total_kib("/proc/meminfo");
  if (nmem) {
    double mib = total_kib / 1024.0;
    check(total_kib > 0 && sum_kib > 0 && labs(total_kib - sum_kib) <= 1024 && mib <= sum_mem &&
              mib >= sum_mem - sum_share,
          "MemTotal %.1f MiB (sum of nodes %.1f MiB), RAM %ld MiB, kernel's share %.1f MiB "
          "(allowed %ld)",
          mib, sum_kib / 1024.0, sum_mem, total_kib > 0 ? sum_mem - mib : 0.0, sum_share);
  } else {
    printf("numa-check: info MemTotal %.1f MiB, sum of nodes %.1f MiB\n", total_kib / 1024.0,
           sum_kib / 1024.0);
  }

  // Distances (ACPI SLIT): local 10, remote more.
  for (int n = 0; n < nodes; n++) {
    char rel[128];
    snprintf(rel, sizeof rel, "/sys/devices/system/node/node%d/distance", n);
    long dist[MAX_NODES];
    int count = -1;
    if (!read_file(rel, buf, sizeof buf)) {
      buf[strcspn(buf, "\n")] = 0;
      count = 0;
      for (char *tok = strtok(buf, " "); tok && count < MAX_NODES; tok = strtok(NULL, " "))
        dist[count++] = strtol(tok, NULL, 10);
    }
    int ok = count == nodes;
    for (int m = 0; ok && m < nodes; m++) ok = m == n ? dist[m] == 10 : dist[m] > 10;
    char shown[512] = "";
    size_t len = 0;
    for (int m = 0; m < count && len < sizeof shown; m++)
      len += snprintf(shown + len, sizeof shown - len, "%s%ld", m ? " " : "", dist[m]);
    check(ok, "node%d distances %s, expected %ld entries, 10 local and more remote", n,
          count < 0 ? "(unreadable)" : shown, nodes);
  }

  printf("numa-check: %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
