/* context_test: the task API (offload/task.h) as tasks/context.c implements
 * it over borrowed words: progress, cancel and deadline, results and
 * failures. Runs on the test thread (tasks/test_run.h); no pool or loop. */
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

#include "tasks/test_run.h"

/* ---- task API behaviour ---- */

static void test_timeout_and_cancel(void **state) {
  (void)state;
  /* A deadline stops a long spin; it is recorded as a timeout, not a
   * failure or a cancel. */
  run_t *t = new_run(&task_spin, "ms", 600000, 30);
  task_run(&t->t, t->def);
  assert_true(atomic_load(&t->timed_out));
  assert_false(atomic_load(&t->cancel));
  assert_false(t->result.failed);
  assert_true(offload_task_canceled(&t->t));
  run_free(t);

  /* Canceled before it starts: the run function is not called. */
  t = new_run(&task_fibonacci, "n", 20, 0);
  atomic_store(&t->cancel, true);
  task_run(&t->t, t->def);
  assert_int_equal(t->result.kind, TASK_RES_NULL);
  assert_false(t->result.failed);
  assert_true(progress(t) == 0.0);
  assert_true(offload_task_canceled(&t->t));
  assert_false(atomic_load(&t->timed_out));
  run_free(t);

  /* Past its deadline before it starts: not called either. */
  t = new_run(&task_fibonacci, "n", 20, 0);
  t->t.deadline_ns = clock_mono_ns() - 1;
  task_run(&t->t, t->def);
  assert_int_equal(t->result.kind, TASK_RES_NULL);
  assert_true(atomic_load(&t->timed_out));
  run_free(t);

  /* No deadline, no cancel: not canceled. */
  t = new_run(&task_fibonacci, "n", 20, 0);
  t->t.deadline_ns = 0;
  assert_false(offload_task_canceled(&t->t));
  assert_false(atomic_load(&t->timed_out));
  run_free(t);
}

static void test_progress(void **state) {
  (void)state;
  run_t *r = new_run(&task_fibonacci, "n", 1, 0);
  offload_task_t *t = &r->t;
  assert_true(progress(r) == 0.0);
  offload_task_progress(t, -0.5);
  assert_true(progress(r) == 0.0);
  offload_task_progress(t, 0.5);
  assert_true(progress(r) == 0.5);
  offload_task_progress(t, 0.3);
  assert_true(progress(r) == 0.5);
  offload_task_progress(t, NAN);
  assert_true(progress(r) == 0.5);
  offload_task_progress(t, -INFINITY);
  assert_true(progress(r) == 0.5);
  offload_task_progress(t, 0.75);
  assert_true(progress(r) == 0.75);
  offload_task_progress(t, 2.0);
  assert_true(progress(r) == 1.0);
  offload_task_progress(t, INFINITY);
  assert_true(progress(r) == 1.0);
  offload_task_progress(t, 0.9);
  assert_true(progress(r) == 1.0);
  run_free(r);

  /* Every built-in's progress stays within [0, 1]. */
  r = run_task(&task_primes, "max", 3000000);
  assert_true(progress(r) > 0.0 && progress(r) <= 1.0);
  run_free(r);
}

static void test_results_and_fail(void **state) {
  (void)state;
  run_t *r = new_run(&task_fibonacci, "n", 7, 0);
  offload_task_t *t = &r->t;
  assert_int_equal(offload_task_param_int(t, "n", -1), 7);
  assert_int_equal(offload_task_param_int(t, "absent", -1), -1);
  assert_false(r->result.failed); /* no result: null */
  json_t *j = task_result_json(&r->result);
  assert_true(json_is_null(j));
  json_decref(j);

  offload_task_result_int(t, 3);
  assert_int_equal(r->result.kind, TASK_RES_INT);
  assert_true(r->result.integer == 3);
  offload_task_result_real(t, 2.5); /* replaces */
  assert_int_equal(r->result.kind, TASK_RES_REAL);
  assert_true(r->result.real == 2.5);
  offload_task_result_null(t);
  assert_int_equal(r->result.kind, TASK_RES_NULL);

  offload_task_fail(t, "bad_input", "value %d is %s", 5, "odd");
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "bad_input");
  assert_string_equal(r->result.err_message, "value 5 is odd");
  offload_task_fail(t, "second", "again"); /* replaces, no leak */
  assert_string_equal(r->result.err_code, "second");
  assert_string_equal(r->result.err_message, "again");
  run_free(r);

  /* An over-long code is truncated, still terminated. */
  r = new_run(&task_fibonacci, "n", 7, 0);
  char code[200];
  memset(code, 'c', sizeof code - 1);
  code[sizeof code - 1] = '\0';
  offload_task_fail(&r->t, code, "x");
  assert_int_equal(strlen(r->result.err_code), sizeof r->result.err_code - 1);
  run_free(r);

  /* JSON has no NaN or infinity: such a result fails the task. */
  const double nonfinite[] = {NAN, INFINITY, -INFINITY};
  for (size_t i = 0; i < 3; i++) {
    r = new_run(&task_fibonacci, "n", 7, 0);
    offload_task_result_real(&r->t, nonfinite[i]);
    assert_true(r->result.failed);
    assert_true(strlen(r->result.err_code) > 0);
    assert_non_null(r->result.err_message);
    run_free(r);
  }

  /* task_result_fini leaves a zeroed (null, not failed) result. */
  task_result_t res = {.kind = TASK_RES_INT, .integer = 1, .failed = true, .err_message = strdup("m")};
  task_result_fini(&res);
  assert_int_equal(res.kind, TASK_RES_NULL);
  assert_false(res.failed);
  assert_null(res.err_message);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timeout_and_cancel),
      cmocka_unit_test(test_progress),
      cmocka_unit_test(test_results_and_fail),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
