/* util/clock: wall and monotonic clocks in milliseconds / nanoseconds.
 * Any thread; vDSO calls, no locks. */
#ifndef OFFLOAD_UTIL_CLOCK_H
#define OFFLOAD_UTIL_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): the times clients see. */
int64_t clock_wall_ms(void);
/* Monotonic nanoseconds (CLOCK_MONOTONIC): durations, deadlines. */
uint64_t clock_mono_ns(void);
static inline int64_t clock_mono_ms(void) { return (int64_t)(clock_mono_ns() / 1000000u); }

#endif
