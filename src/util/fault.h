/* util/fault: fault injection for tests — the failures a test cannot
 * provoke from outside (an allocation, a socket option, ENOSPC).
 *
 * A point is named by an enum value; code that can fail asks FAULT_HIT(point)
 * just before the real call and takes its failure path when it returns true.
 * Tests arm a point with fault_arm(point, n): the n-th hit from now fails
 * (n = 1: the next one), then the point disarms itself; a sweep arms n = 1, 2,
 * 3... until a run completes without the fault firing (SQLite's
 * test_malloc.c countdown). Disarmed, a hit is one relaxed atomic load.
 *
 * Threads: any; the countdown is atomic. Global state by design (STYLE habit
 * 10 allows test hooks set before the code under test runs). */
#ifndef OFFLOAD_UTIL_FAULT_H
#define OFFLOAD_UTIL_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>

typedef enum {
  FAULT_ALLOC = 0,   /* util/buf growth and the http layer's allocations */
  FAULT_ACCEPT_ALLOC, /* allocating a connection in the accept path */
  FAULT_ACCEPT_SOCKOPT, /* a socket option on an accepted connection */
  FAULT_STORE_COMMIT, /* a store transaction fails as on a full disk (SQLITE_FULL) */
  FAULT_CMD_DISK,     /* a command run's file writes (its log, its input copy) fail with ENOSPC */
  FAULT_NPOINTS
} fault_point_t;

extern _Atomic int fault_countdown[FAULT_NPOINTS];
extern _Atomic unsigned fault_fired[FAULT_NPOINTS];

bool fault_hit_slow(fault_point_t p);

/* True when this hit must fail. */
#define FAULT_HIT(p) (atomic_load_explicit(&fault_countdown[(p)], memory_order_relaxed) > 0 && fault_hit_slow(p))

/* The n-th hit of `p` from now fails (n >= 1); 0 disarms. */
void fault_arm(fault_point_t p, int n);
/* How many times `p` fired since the last fault_arm. */
unsigned fault_fired_count(fault_point_t p);

#endif
