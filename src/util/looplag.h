/* util/looplag: measures how late the event loop runs a timer, the direct
 * measure of a blocked front door. A timer is armed every interval; the lag
 * of each firing (actual - due, by uv_hrtime) goes into a histogram.
 * Loop thread only. */
#ifndef OFFLOAD_UTIL_LOOPLAG_H
#define OFFLOAD_UTIL_LOOPLAG_H

#include <stdint.h>
#include <uv.h>

#include "util/hist.h"

typedef struct looplag {
  uv_timer_t timer;
  uint64_t interval_ms;
  uint64_t due_ns;
  hist_t hist; /* seconds */
  double max_s;
} looplag_t;

/* Starts sampling on `loop`; the timer does not keep the loop alive. */
void looplag_start(looplag_t *l, uv_loop_t *loop, uint64_t interval_ms);
/* Closes the timer; `l` must stay valid until the loop has run once more. */
void looplag_stop(looplag_t *l);

#endif
