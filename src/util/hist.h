/* util/hist: a fixed-bucket histogram for Prometheus (cumulative buckets,
 * sum, count). Plain struct, no locks: the owner decides the thread
 * (in offload, the loop thread). */
#ifndef OFFLOAD_UTIL_HIST_H
#define OFFLOAD_UTIL_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_MAX_BUCKETS 24

typedef struct hist {
  const double *bounds; /* upper bounds, ascending, borrowed (static) */
  size_t nbounds;
  uint64_t counts[HIST_MAX_BUCKETS + 1]; /* last one is +Inf */
  double sum;
  uint64_t count;
} hist_t;

void hist_init(hist_t *h, const double *bounds, size_t nbounds);
void hist_observe(hist_t *h, double v);

#endif
