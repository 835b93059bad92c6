/* util/procfs: see procfs.h. */
#include "util/procfs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int procfs_usage(int pid, uint64_t *cpu_ms, uint64_t *rss_bytes) {
  char path[64];
  if (pid > 0)
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
  else
    snprintf(path, sizeof path, "/proc/self/stat");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  char b[1024];
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  if (n <= 0)
    return -1;
  b[n] = '\0';
  /* The command name (field 2) may hold spaces and parentheses: count
   * fields from the last ')'. Field 3 follows it; utime is 14, stime 15,
   * rss (pages) 24. */
  char *p = strrchr(b, ')');
  if (!p)
    return -1;
  p++;
  unsigned long long v[25] = {0};
  int field = 2;
  while (*p && field < 24) {
    while (*p == ' ')
      p++;
    field++;
    char *end;
    v[field] = strtoull(p, &end, 10);
    if (end == p) /* the state letter (field 3) */
      while (*end && *end != ' ')
        end++;
    p = end;
  }
  if (field < 24)
    return -1;
  long tick = sysconf(_SC_CLK_TCK);
  long page = sysconf(_SC_PAGESIZE);
  *cpu_ms = (uint64_t)(v[14] + v[15]) * 1000u / (uint64_t)(tick > 0 ? tick : 100);
  *rss_bytes = (uint64_t)v[24] * (uint64_t)(page > 0 ? page : 4096);
  return 0;
}
