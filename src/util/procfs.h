/* util/procfs: a process's CPU time and resident size from /proc/<pid>/stat
 * (procfs is kernel memory, not disk: one open/read/close, a few µs).
 * Any thread. */
#ifndef OFFLOAD_UTIL_PROCFS_H
#define OFFLOAD_UTIL_PROCFS_H

#include <stdint.h>

/* Returns 0 and fills both, or -1 (no such process). pid 0 = this process. */
int procfs_usage(int pid, uint64_t *cpu_ms, uint64_t *rss_bytes);

#endif
