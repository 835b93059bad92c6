/* util/test_poll: for unit tests only (include after cmocka.h). Polls a
 * condition with a generous deadline, optionally running a libuv loop between
 * checks: the tests run under ASan/TSan on a noisy machine, so they wait for
 * events, never for an amount of time. */
#ifndef OFFLOAD_UTIL_TEST_POLL_H
#define OFFLOAD_UTIL_TEST_POLL_H

#include <stdint.h>
#include <unistd.h>
#include <uv.h>

#include "util/clock.h"

#define WAIT_NS (UINT64_C(10000) * 1000000u) /* 10 s: generous on purpose */

/* Re-checks `cond` until true, running `loop` once (UV_RUN_NOWAIT) before each
 * check when `run` is true; fails the test after WAIT_NS. */
#define POLL(loop, run, cond)                                                                                          \
  do {                                                                                                                 \
    uint64_t deadline_ = clock_mono_ns() + WAIT_NS;                                                                    \
    for (;;) {                                                                                                         \
      if (run)                                                                                                         \
        uv_run((loop), UV_RUN_NOWAIT);                                                                                 \
      if (cond)                                                                                                        \
        break;                                                                                                         \
      if (clock_mono_ns() > deadline_)                                                                                 \
        fail_msg("timed out waiting for: %s", #cond);                                                                  \
      usleep(200);                                                                                                     \
    }                                                                                                                  \
  } while (0)

#endif
