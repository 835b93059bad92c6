/* stats_test: the stats task's result does not depend on how the values
 * are cut into chunks (one chunk against 64 run by offload_task_parallel on
 * local threads), on hostile data; the percentiles match a sort on data
 * built to defeat the histogram (far outliers, one value, ties, a range of
 * a few ulps, the whole double range); raw float64 input is read in place
 * and a value that is not finite fails the job naming its index. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "offload/pool.h"
#include "tasks/stats_calc.h"
#include "tasks/tasks.h"
#include "tasks/test_run.h"

enum { N = 200000 };

static json_t *run_stats(json_t *values, size_t chunk_min) {
  stats_set_chunk_min(chunk_min);
  run_t *r = new_run(&task_stats, NULL, 0, 0);
  json_object_set(r->params, "values", values);
  r->t.parallel = pool_parallel; /* off a pool: local threads */
  task_run(&r->t, &task_stats);
  if (r->result.failed)
    fail_msg("%s: %s", r->result.err_code, r->result.err_message);
  json_t *v = task_result_json(&r->result);
  run_free(r);
  stats_set_chunk_min(0);
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
  static const char *const keys[] = {"sum",    "mean", "min", "max", "variance", "sampleVariance",
                                     "stddev", "p50",  "p90", "p99"};
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

/* NumPy's linear percentile of sorted a[0..n). */
static double ref_pct(const double *a, size_t n, double q) {
  double h = (double)(n - 1) * q;
  size_t lo = (size_t)floor(h);
  return lo + 1 < n ? a[lo] + (h - (double)lo) * (a[lo + 1] - a[lo]) : a[lo];
}

/* stats_compute on v with chunks of chunk_min, against a sort. */
static void check_order_statistics(const char *what, const double *v, size_t n, size_t chunk_min) {
  double *sorted = malloc(n * sizeof *sorted);
  assert_non_null(sorted);
  memcpy(sorted, v, n * sizeof *v);
  qsort(sorted, n, sizeof *sorted, cmp);
  stats_set_chunk_min(chunk_min);
  run_t *r = new_run(&task_stats, NULL, 0, 0);
  r->t.parallel = pool_parallel;
  stats_out_t o;
  assert_int_equal(stats_compute(&r->t, v, n, true, 0, 1, &o), 0);
  stats_set_chunk_min(0);
  static const double q[STATS_NQ] = {0.5, 0.9, 0.99};
  for (size_t i = 0; i < STATS_NQ; i++) {
    double want = ref_pct(sorted, n, q[i]);
    if (!(o.p[i] == want))
      fail_msg("%s (n %zu, chunks of %zu): p%g %.17g, a sort says %.17g", what, n, chunk_min, q[i] * 100, o.p[i], want);
  }
  assert_true(o.min == sorted[0] && o.max == sorted[n - 1]);
  assert_true(atomic_load(&r->progress) == 1.0);
  run_free(r);
  free(sorted);
}

static void test_percentiles_on_hostile_data(void **state) {
  (void)state;
  enum { M = 300000 };
  double *v = malloc(M * sizeof *v);
  assert_non_null(v);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int shape = 0; shape < 7; shape++) {
    const char *what = "";
    for (size_t i = 0; i < M; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      double u = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
      switch (shape) {
      case 0: what = "uniform", v[i] = u; break;
      case 1: what = "one far outlier", v[i] = i == 7 ? 1e300 : u; break;
      case 2: what = "one value", v[i] = -3.25; break;
      case 3: what = "three values", v[i] = (double)(x % 3); break;
      case 4: what = "a few ulps", v[i] = nextafter(1.0, 2.0) * (double)(1 + x % 2) - (double)(x % 2); break;
      case 5: what = "the whole range", v[i] = (x % 2 ? 1.7e308 : -1.7e308) * u; break;
      default:
        what = "signed zeros and subnormals", v[i] = x % 3 == 0 ? -0.0 : x % 3 == 1 ? 0.0 : 4.9e-324 * (double)(x % 5);
        break;
      }
    }
    check_order_statistics(what, v, M, 0);
    check_order_statistics(what, v, M, M / 64);
    check_order_statistics(what, v, 1 + (size_t)shape, 1);
  }
  free(v);
}

static void test_raw_input_read_in_place(void **state) {
  (void)state;
  enum { M = 100000 };
  double *v = malloc(M * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < M; i++)
    v[i] = (double)i - 17.5;
  run_t *r = new_run(&task_stats, NULL, 0, 0);
  r->t.parallel = pool_parallel;
  r->t.input = v, r->t.input_len = M * sizeof *v, r->t.input_type = "application/octet-stream";
  task_run(&r->t, &task_stats);
  assert_complete(r);
  json_t *o = task_result_json(&r->result);
  assert_int_equal(json_integer_value(json_object_get(o, "count")), M);
  assert_true(num(o, "p50") == (M - 1) / 2.0 - 17.5);
  json_decref(o);
  run_free(r);
  /* A NaN: the job fails naming the value's index; the input is untouched. */
  v[4242] = NAN;
  r = new_run(&task_stats, NULL, 0, 0);
  r->t.input = v, r->t.input_len = M * sizeof *v, r->t.input_type = "application/octet-stream";
  task_run(&r->t, &task_stats);
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "invalid_data");
  assert_non_null(strstr(r->result.err_message, "Value 4242 "));
  run_free(r);
  /* A length that is not whole values. */
  r = new_run(&task_stats, NULL, 0, 0);
  r->t.input = v, r->t.input_len = 13, r->t.input_type = "application/octet-stream";
  task_run(&r->t, &task_stats);
  assert_true(r->result.failed);
  assert_non_null(strstr(r->result.err_message, "multiple of 8"));
  run_free(r);
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chunking_changes_nothing),
      cmocka_unit_test(test_percentiles_on_hostile_data),
      cmocka_unit_test(test_raw_input_read_in_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
