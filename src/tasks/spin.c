/* spin: burns CPU for `ms` milliseconds of wall time. For tests and
 * benchmarks: a job whose length is known in advance. Under
 * --enable-test-tasks it also takes ignoreCancel: true, a task that never
 * checks for cancellation (how the suite makes a thread worker stuck). */
#include "tasks/tasks.h"
#include "util/clock.h"

static void spin_run(offload_task_t *t) {
  int64_t ms = offload_task_param_int(t, "ms", 0);
  bool ignore_cancel = offload_task_param_bool(t, "ignoreCancel", false);
  uint64_t start = clock_mono_ns();
  uint64_t total = (uint64_t)ms * 1000000u;
  volatile uint64_t sink = 0;
  for (;;) {
    for (uint64_t k = 0; k < 20000; k++) /* ~20-50 us */
      sink = sink + k * k;
    uint64_t elapsed = clock_mono_ns() - start;
    if (elapsed >= total)
      break;
    if (!ignore_cancel && offload_task_canceled(t))
      return;
    offload_task_progress(t, (double)elapsed / (double)total);
  }
  offload_task_result_null(t);
}

static const offload_param_spec_t spin_params[] = {
    {.name = "ms", .type = OFFLOAD_PARAM_INTEGER, .required = true, .min = 1, .max = 600000},
    {.name = "ignoreCancel", .type = OFFLOAD_PARAM_BOOLEAN, .test_only = true},
};

const offload_task_def_t task_spin = {
    .name = "spin",
    .description = "Burns CPU for ms milliseconds (for tests and benchmarks).",
    .run = spin_run,
    .params = spin_params,
    .nparams = 2,
};
