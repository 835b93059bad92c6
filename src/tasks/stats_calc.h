/* tasks/stats_calc: the numerics of the stats task, over an array of
 * doubles it never writes (an upload is read in place), cut into chunks
 * that run on every idle worker at once (offload_task_parallel).
 *
 * Threads: called on the worker running the job; the chunks run on the
 * pool's idle workers too. Ownership: `v` is borrowed; everything this
 * allocates is freed before it returns. */
#ifndef OFFLOAD_TASKS_STATS_CALC_H
#define OFFLOAD_TASKS_STATS_CALC_H

#include <stdbool.h>
#include <stddef.h>

#include "offload/task.h"

#define STATS_NQ 3 /* p50, p90, p99 */

typedef struct stats_out {
  size_t count;
  double sum, mean, min, max;
  double m2;          /* the sum of squared deviations from the mean */
  double p[STATS_NQ]; /* p50, p90, p99: NumPy's "linear" */
} stats_out_t;

/* The statistics of v[0..n) (n >= 1) into *o. With `check_finite` a value
 * that is NaN or infinite fails the job `invalid_data` naming its index
 * (CSV and JSON values were checked as they were read). Progress runs
 * from `p0` to `p1`. Returns 0, or -1 when the job failed or stopped
 * (canceled, timed out). */
int stats_compute(offload_task_t *t, const double *v, size_t n, bool check_finite, double p0, double p1,
                  stats_out_t *o);

/* Tests: the smallest chunk, in values (0 = the default). The result does
 * not depend on it. */
void stats_set_chunk_min(size_t n);

#endif
