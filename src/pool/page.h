/* pool/page: the page of shared memory (a memfd, mapped by both sides) that
 * a server and one of its worker processes share: the worker's limits, and
 * the control slot (offload/pool.h pool_ctl_t) of the job it runs, so that
 * reading progress or raising cancel costs no message. The C counterpart of
 * the seeds' SharedArrayBuffer + Atomics.
 *
 * The server writes the header before the worker starts and never after;
 * it resets `ctl` before each job frame while the worker is idle. During a
 * job both sides touch only the atomics in `ctl` (the worker raises
 * progress and timed_out, the server sets cancel). `oom` is the worker's:
 * its fatal-signal handler sets it when the process dies at its memory
 * limit, and the server reads it once the process is gone. */
#ifndef OFFLOAD_POOL_PAGE_H
#define OFFLOAD_POOL_PAGE_H

#include <stdatomic.h>
#include <stdint.h>

#include "offload/pool.h"

#define PAGE_MAGIC 0x6f666c64u /* "ofld" */
#define PAGE_SIZE_BYTES 4096
/* The worker's end of the socketpair and the page, as it finds them. */
#define PAGE_CHILD_SOCK_FD 3
#define PAGE_CHILD_PAGE_FD 4

typedef struct proc_page {
  uint32_t magic;
  int32_t parent_pid; /* the worker exits when its parent is not this one */
  uint64_t memory_mb; /* 0 = none */
  uint64_t cpu_s;     /* 0 = none; per job */
  int32_t nice;
  _Atomic int32_t oom;
  pool_ctl_t ctl;
} proc_page_t;

_Static_assert(sizeof(proc_page_t) <= PAGE_SIZE_BYTES, "one page");
/* Lock-free atomics are address-free, so they work across processes. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_BOOL_LOCK_FREE == 2,
               "shared-memory atomics must be lock-free");

#endif
