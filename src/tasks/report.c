/* report: the seeds' CPU-heavy example, sum of sqrt(i) for i = 0 .. N-1.
 * The sum runs in the same order as the seeds' loop so the double matches. */
#include <math.h>

#include "tasks/tasks.h"

/* ~2 ms of work per chunk: progress and cancel checks cost nothing measurable. */
#define REPORT_CHUNK (1 << 20)

static void report_run(offload_task_t *t) {
  int64_t n = offload_task_param_int(t, "heavyIterations", 0);
  double sum = 0.0;
  for (int64_t start = 0; start < n; start += REPORT_CHUNK) {
    int64_t end = n - start > REPORT_CHUNK ? start + REPORT_CHUNK : n;
    for (int64_t i = start; i < end; i++)
      sum += sqrt((double)i);
    if (offload_task_canceled(t))
      return;
    offload_task_progress(t, (double)end / (double)n);
  }
  offload_task_result_real(t, sum);
}

static const offload_param_spec_t report_params[] = {
    {.name = "heavyIterations", .type = OFFLOAD_PARAM_INTEGER, .required = true, .min = 1,
     .max = INT64_C(100000000000)},
};

const offload_task_def_t task_report = {
    .name = "report",
    .description = "Sums sqrt(i) for i = 0 .. heavyIterations-1 (the seeds' CPU-heavy report).",
    .run = report_run,
    .params = report_params,
    .nparams = 1,
};
