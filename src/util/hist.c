/* util/hist: see hist.h. */
#include "util/hist.h"

#include <assert.h>
#include <string.h>

void hist_init(hist_t *h, const double *bounds, size_t nbounds) {
  assert(nbounds <= HIST_MAX_BUCKETS);
  memset(h, 0, sizeof *h);
  h->bounds = bounds;
  h->nbounds = nbounds;
}

void hist_observe(hist_t *h, double v) {
  size_t i = 0;
  while (i < h->nbounds && v > h->bounds[i])
    i++;
  h->counts[i]++;
  h->sum += v;
  h->count++;
}
