/* tasks_test: the catalog and parameter validation (tasks/tasks.h), and every
 * built-in task's answer.
 *
 * Tasks are pure functions, so they run here on the test thread through
 * task_run, over control words of the test's own (tasks/test_run.h), exactly
 * as a work item runs them; no pool or loop. The task API itself is
 * context_test.c's subject; how an item maps the words to an outcome is
 * pool/item_test.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/context.h"
#include "tasks/tasks.h"
#include "util/clock.h"
#include "util/err.h"

#include "tasks/test_run.h"

/* ---- helpers ---- */

static bool parse(const char *s, int64_t *out) { return tasks_parse_int(s, strlen(s), out); }

/* ---- tasks_parse_int ---- */

static void test_parse_int_accepts(void **state) {
  (void)state;
  int64_t v = 42;
  assert_true(parse("0", &v));
  assert_int_equal(v, 0);
  assert_true(parse("-0", &v));
  assert_int_equal(v, 0);
  assert_true(parse("-3", &v));
  assert_int_equal(v, -3);
  assert_true(parse("0012", &v));
  assert_int_equal(v, 12);
  assert_true(parse("9223372036854775807", &v));
  assert_true(v == INT64_MAX);
  assert_true(parse("-9223372036854775808", &v));
  assert_true(v == INT64_MIN);
  assert_true(parse("9999999999999999", &v));
  assert_true(v == INT64_C(9999999999999999));
  /* Only `len` bytes count. */
  assert_true(tasks_parse_int("12abc", 2, &v));
  assert_int_equal(v, 12);
}

static void test_parse_int_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "-",
      "+1",
      " 1",
      "1 ",
      "1e5",
      "1.0",
      "abc",
      "1a",
      "--1",
      "0x10",
      "9223372036854775808",
      "-9223372036854775809",
      "9999999999999999999",
      "18446744073709551616",
      "10000000000000000000",
      "00000000000000000001",
      "-00000000000000000001",
      "99999999999999999999",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t v = 7;
    if (parse(bad[i], &v))
      fail_msg("tasks_parse_int accepted \"%s\" as %lld", bad[i], (long long)v);
    assert_int_equal(v, 7); /* untouched on failure */
  }
  int64_t v = 7;
  assert_false(tasks_parse_int("12", 0, &v));
  assert_false(tasks_parse_int("1\0", 2, &v));
  assert_int_equal(v, 7);
}

/* ---- tasks_validate ---- */

static void expect_invalid(const offload_task_def_t *def, const char *json, param_problem_t problem,
                           const char *param) {
  json_error_t jerr;
  json_t *params = json_loads(json, 0, &jerr);
  assert_non_null(params);
  param_error_t err;
  memset(&err, 0, sizeof err);
  if (tasks_validate(def, params, &err))
    fail_msg("%s: %s was accepted", def->name, json);
  assert_int_equal(err.problem, problem);
  assert_string_equal(err.param, param);
  assert_true(strlen(err.message) > 0);
  json_decref(params);
}

static void expect_valid(const offload_task_def_t *def, const char *json) {
  json_error_t jerr;
  json_t *params = json_loads(json, 0, &jerr);
  assert_non_null(params);
  param_error_t err;
  memset(&err, 0x55, sizeof err);
  if (!tasks_validate(def, params, &err))
    fail_msg("%s: %s was refused: %s", def->name, json, err.message);
  assert_int_equal(err.problem, PARAM_OK);
  json_decref(params);
}

static void test_validate(void **state) {
  (void)state;
  expect_invalid(&task_fibonacci, "{}", PARAM_MISSING, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": 2.0}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": 2.5}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": \"5\"}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": true}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": false}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": null}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": [1]}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": {}}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": -1}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": 93}", PARAM_INVALID, "params.n");
  expect_invalid(&task_fibonacci, "{\"n\": 5, \"x\": 1}", PARAM_UNKNOWN, "params.x");
  expect_invalid(&task_fibonacci, "{\"x\": 1, \"n\": 5}", PARAM_UNKNOWN, "params.x");
  /* The missing one is found before the unknown one. */
  expect_invalid(&task_fibonacci, "{\"x\": 1}", PARAM_MISSING, "params.n");
  expect_invalid(&task_spin, "{\"ms\": 0}", PARAM_INVALID, "params.ms");
  expect_invalid(&task_spin, "{\"ms\": 600001}", PARAM_INVALID, "params.ms");
  expect_invalid(&task_primes, "{\"max\": 0}", PARAM_INVALID, "params.max");
  expect_invalid(&task_report, "{}", PARAM_MISSING, "params.heavyIterations");
  expect_invalid(&task_report, "{\"heavyiterations\": 5}", PARAM_MISSING, "params.heavyIterations");

  expect_valid(&task_fibonacci, "{\"n\": 0}");
  expect_valid(&task_fibonacci, "{\"n\": 92}");
  expect_valid(&task_spin, "{\"ms\": 1}");
  expect_valid(&task_spin, "{\"ms\": 600000}");
  expect_valid(&task_primes, "{\"max\": 1000000000000}");
  expect_valid(&task_report, "{\"heavyIterations\": 1}");

  /* A long unknown name still gives a terminated, truncated param. */
  char json[300], key[201];
  memset(key, 'k', 200);
  key[200] = '\0';
  snprintf(json, sizeof json, "{\"n\": 1, \"%s\": 1}", key);
  json_t *params = json_loads(json, 0, NULL);
  assert_non_null(params);
  param_error_t err;
  assert_false(tasks_validate(&task_fibonacci, params, &err));
  assert_int_equal(err.problem, PARAM_UNKNOWN);
  assert_true(strlen(err.param) < sizeof err.param);
  assert_memory_equal(err.param, "params.kkkk", 11);
  json_decref(params);
}

static void test_check_range(void **state) {
  (void)state;
  const offload_param_spec_t spec = {.name = "v", .type = OFFLOAD_PARAM_INTEGER, .required = true, .min = -5, .max = 5};
  param_error_t err;
  assert_true(tasks_check_range(&spec, -5, "params.v", &err));
  assert_true(tasks_check_range(&spec, 5, "params.v", &err));
  assert_false(tasks_check_range(&spec, 6, "params.v", &err));
  assert_int_equal(err.problem, PARAM_INVALID);
  assert_string_equal(err.param, "params.v");
  assert_false(tasks_check_range(&spec, INT64_MIN, "params.v", &err));
}

/* ---- the catalog ---- */

static void test_catalog_options(void **state) {
  (void)state;
  /* Test tasks: crash (always in processes) and spin's ignoreCancel. */
  tasks_catalog_t c;
  tasks_options_t o = {.isolation = OFFLOAD_ISOLATION_THREAD, .test_tasks = true};
  assert_int_equal(tasks_catalog_init_with(&c, &o), 0);
  assert_int_equal(c.n, 10);
  const offload_task_def_t *crash = tasks_catalog_find(&c, "crash"), *spin = tasks_catalog_find(&c, "spin");
  assert_non_null(crash);
  assert_int_equal(crash->isolation, OFFLOAD_ISOLATION_PROCESS);
  assert_int_equal(spin->isolation, OFFLOAD_ISOLATION_THREAD);
  assert_true(tasks_catalog_uses(&c, OFFLOAD_ISOLATION_PROCESS));
  assert_true(tasks_catalog_uses(&c, OFFLOAD_ISOLATION_THREAD));
  expect_valid(spin, "{\"ms\": 5, \"ignoreCancel\": true}");
  expect_invalid(spin, "{\"ms\": 5, \"ignoreCancel\": 1}", PARAM_INVALID, "params.ignoreCancel");
  expect_valid(crash, "{\"mode\": \"segv\"}");
  expect_valid(crash, "{\"mode\": \"ignore-cancel\"}");
  expect_invalid(crash, "{\"mode\": \"boom\"}", PARAM_INVALID, "params.mode");
  expect_invalid(crash, "{\"mode\": 3}", PARAM_INVALID, "params.mode");
  expect_invalid(crash, "{}", PARAM_MISSING, "params.mode");
  tasks_catalog_fini(&c);

  /* --isolation process moves every kind to processes. */
  o = (tasks_options_t){.isolation = OFFLOAD_ISOLATION_PROCESS, .test_tasks = false};
  assert_int_equal(tasks_catalog_init_with(&c, &o), 0);
  for (size_t i = 0; i < c.n; i++)
    assert_int_equal(c.defs[i].isolation, OFFLOAD_ISOLATION_PROCESS);
  assert_false(tasks_catalog_uses(&c, OFFLOAD_ISOLATION_THREAD));
  assert_string_equal(tasks_isolation_name(c.defs[0].isolation), "process");
  assert_ptr_equal(tasks_find_builtin("crash"), &task_crash);
  assert_null(tasks_find_builtin("nope"));
  tasks_catalog_fini(&c);
}

static void test_catalog(void **state) {
  (void)state;
  size_t nbuiltin = 0;
  while (tasks_builtin[nbuiltin])
    nbuiltin++;
  assert_int_equal(nbuiltin, 10); /* crash is test-only */

  tasks_catalog_t c;
  assert_int_equal(tasks_catalog_init(&c), 0);
  assert_int_equal(c.n, 9);
  for (size_t i = 0; i < c.n; i++) {
    const offload_task_def_t *d = tasks_catalog_find(&c, tasks_builtin[i]->name);
    assert_non_null(d);
    assert_ptr_equal(d, &c.defs[i]);
    assert_ptr_equal(d->run, tasks_builtin[i]->run);
    /* The default isolation is thread, but for a task that declares
     * processes (image: hostile input). */
    assert_int_equal(d->isolation, tasks_builtin[i]->isolation == OFFLOAD_ISOLATION_PROCESS ? OFFLOAD_ISOLATION_PROCESS
                                                                                           : OFFLOAD_ISOLATION_THREAD);
    assert_ptr_not_equal(d->params, tasks_builtin[i]->params); /* a copy */
  }
  /* Without test tasks: no crash, and spin has no ignoreCancel. */
  assert_null(tasks_catalog_find(&c, "crash"));
  assert_int_equal(tasks_catalog_find(&c, "spin")->nparams, 1);
  expect_invalid(tasks_catalog_find(&c, "spin"), "{\"ms\": 5, \"ignoreCancel\": true}", PARAM_UNKNOWN,
                 "params.ignoreCancel");
  assert_null(tasks_catalog_find(&c, "nope"));
  assert_null(tasks_catalog_find(&c, ""));
  assert_null(tasks_catalog_find(&c, "Report"));

  /* Tightening a limit changes the catalog's copy only. */
  int64_t builtin_max = task_report.params[0].max;
  assert_int_equal(tasks_catalog_set_max(&c, "report", "heavyIterations", 1000), 0);
  const offload_task_def_t *report = tasks_catalog_find(&c, "report");
  expect_valid(report, "{\"heavyIterations\": 1000}");
  expect_invalid(report, "{\"heavyIterations\": 1001}", PARAM_INVALID, "params.heavyIterations");
  assert_true(task_report.params[0].max == builtin_max);
  expect_valid(&task_report, "{\"heavyIterations\": 1001}");
  assert_int_equal(tasks_catalog_set_max(&c, "report", "n", 5), OFF_ENOENT);
  assert_int_equal(tasks_catalog_set_max(&c, "nope", "n", 5), OFF_ENOENT);

  char buf[128];
  tasks_catalog_names(&c, buf, sizeof buf);
  assert_string_equal(buf, "report, fibonacci, primes, spin, password-hash, password-verify, pdf, stats, image");
  memset(buf, 'x', sizeof buf);
  tasks_catalog_names(&c, buf, 10);
  assert_string_equal(buf, "report, f");
  memset(buf, 'x', sizeof buf);
  tasks_catalog_names(&c, buf, 7);
  assert_string_equal(buf, "report");
  memset(buf, 'x', sizeof buf);
  tasks_catalog_names(&c, buf, 1);
  assert_string_equal(buf, "");

  tasks_catalog_fini(&c);
  assert_int_equal(c.n, 0);
  assert_null(c.defs);
}

/* ---- the built-in tasks ---- */

static void test_report(void **state) {
  (void)state;
  const int64_t ns[] = {1, 2, 1000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 5};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    double want = 0.0;
    for (int64_t i = 0; i < ns[k]; i++)
      want += sqrt((double)i);
    run_t *t = run_task(&task_report, "heavyIterations", ns[k]);
    assert_complete(t);
    assert_int_equal(t->result.kind, TASK_RES_REAL);
    if (t->result.real != want)
      fail_msg("report(%lld) = %.17g, want %.17g", (long long)ns[k], t->result.real, want);
    assert_true(progress(t) == 1.0);
    json_t *j = task_result_json(&t->result);
    assert_true(json_is_real(j) && json_real_value(j) == want);
    json_decref(j);
    run_free(t);
  }
}

static void test_fibonacci(void **state) {
  (void)state;
  assert_int_equal(run_int(&task_fibonacci, "n", 0), 0);
  assert_int_equal(run_int(&task_fibonacci, "n", 1), 1);
  assert_int_equal(run_int(&task_fibonacci, "n", 2), 1);
  assert_int_equal(run_int(&task_fibonacci, "n", 20), 6765);
  assert_int_equal(run_int(&task_fibonacci, "n", 25), 75025);
  assert_int_equal(run_int(&task_fibonacci, "n", 26), 121393);
  assert_int_equal(run_int(&task_fibonacci, "n", 30), 832040);
  run_t *t = run_task(&task_fibonacci, "n", 30);
  json_t *j = task_result_json(&t->result);
  assert_true(json_is_integer(j) && json_integer_value(j) == 832040);
  json_decref(j);
  assert_true(progress(t) > 0.0 && progress(t) <= 1.0);
  run_free(t);
}

static void test_primes_known(void **state) {
  (void)state;
  assert_int_equal(run_int(&task_primes, "max", 1), 0);
  assert_int_equal(run_int(&task_primes, "max", 2), 1);
  assert_int_equal(run_int(&task_primes, "max", 3), 2);
  assert_int_equal(run_int(&task_primes, "max", 100), 25);
  assert_int_equal(run_int(&task_primes, "max", 1000000), 78498);
  assert_int_equal(run_int(&task_primes, "max", 10000000), 664579);
}

/* Against a naive sieve: every n up to 2000, and windows around the edges of
 * the 32768-odd-number segments (numbers 65539, 131075, ...). */
static void test_primes_vs_naive(void **state) {
  (void)state;
  enum { LIM = 270000 };
  unsigned char *comp = calloc(LIM + 1, 1);
  int64_t *pi = calloc(LIM + 1, sizeof *pi);
  assert_non_null(comp);
  assert_non_null(pi);
  for (int64_t i = 2; i * i <= LIM; i++)
    if (!comp[i])
      for (int64_t j = i * i; j <= LIM; j += i)
        comp[j] = 1;
  for (int64_t i = 2; i <= LIM; i++)
    pi[i] = pi[i - 1] + !comp[i];

  for (int64_t n = 1; n <= 2000; n++) {
    int64_t got = run_int(&task_primes, "max", n);
    if (got != pi[n])
      fail_msg("primes(%lld) = %lld, want %lld", (long long)n, (long long)got, (long long)pi[n]);
  }
  const int64_t edges[] = {65536, 65539, 131072, 131075, 196611, 262144, 262147};
  for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++)
    for (int64_t n = edges[k] - 6; n <= edges[k] + 6; n++) {
      int64_t got = run_int(&task_primes, "max", n);
      if (got != pi[n])
        fail_msg("primes(%lld) = %lld, want %lld", (long long)n, (long long)got, (long long)pi[n]);
    }
  free(pi);
  free(comp);
}

static void test_spin(void **state) {
  (void)state;
  uint64_t t0 = clock_mono_ns();
  run_t *t = run_task(&task_spin, "ms", 20);
  uint64_t took = clock_mono_ns() - t0;
  assert_true(took >= 20u * 1000000u);
  assert_complete(t);
  assert_int_equal(t->result.kind, TASK_RES_NULL);
  json_t *j = task_result_json(&t->result);
  assert_true(json_is_null(j));
  json_decref(j);
  run_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_int_accepts), cmocka_unit_test(test_parse_int_rejects),
      cmocka_unit_test(test_validate),          cmocka_unit_test(test_check_range),
      cmocka_unit_test(test_catalog), cmocka_unit_test(test_catalog_options),           cmocka_unit_test(test_report),
      cmocka_unit_test(test_fibonacci),         cmocka_unit_test(test_primes_known),
      cmocka_unit_test(test_primes_vs_naive),   cmocka_unit_test(test_spin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
