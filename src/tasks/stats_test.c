/* stats_test: the stats task's result does not depend on how the values
 * are cut into chunks (one chunk against 64 run by offload_task_parallel on
 * local threads), on hostile data; and the percentiles match a sort. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "offload/pool.h"
#include "tasks/tasks.h"
#include "tasks/test_run.h"

enum { N = 200000 };

static json_t *run_stats(json_t *values, size_t chunk_min) {
  task_stats_set_chunk_min(chunk_min);
  run_t *r = new_run(&task_stats, NULL, 0, 0);
  json_object_set(r->params, "values", values);
  r->t.parallel = pool_parallel; /* off a pool: local threads */
  task_run(&r->t, &task_stats);
  if (r->result.failed)
    fail_msg("%s: %s", r->result.err_code, r->result.err_message);
  json_t *v = task_result_json(&r->result);
  run_free(r);
  task_stats_set_chunk_min(0);
  return v;
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void test_chunking_changes_nothing(void **state) {
  (void)state;
  /* Huge offsets and mixed magnitudes. */
  json_t *values = json_array();
  double *copy = malloc(N * sizeof *copy);
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < N; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    double v = (i % 3 == 0 ? 1e15 : i % 3 == 1 ? 1e-3 : -7.5e8) + (double)(x % 1000003) / 7.0;
    copy[i] = v;
    json_array_append_new(values, json_real(v));
  }
  json_t *one = run_stats(values, N * 2), *many = run_stats(values, N / 64);
  static const char *const keys[] = {"sum", "mean", "min", "max", "variance", "sampleVariance", "stddev",
                                     "p50", "p90", "p99"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    double a = num(one, keys[k]), b = num(many, keys[k]);
    if (!(fabs(a - b) <= 1e-12 * fabs(a)))
      fail_msg("%s: one chunk %.17g, 64 chunks %.17g", keys[k], a, b);
  }
  assert_int_equal(json_integer_value(json_object_get(many, "count")), N);
  /* The percentiles are those of the sorted values (NumPy's linear). */
  qsort(copy, N, sizeof *copy, cmp);
  double h = (N - 1) * 0.9;
  size_t lo = (size_t)floor(h);
  double p90 = copy[lo] + (h - (double)lo) * (copy[lo + 1] - copy[lo]);
  assert_true(num(many, "p90") == p90);
  assert_true(num(many, "min") == copy[0] && num(many, "max") == copy[N - 1]);
  json_decref(one);
  json_decref(many);
  json_decref(values);
  free(copy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chunking_changes_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
