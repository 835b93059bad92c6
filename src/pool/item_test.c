/* item_test: the work item (pool/item.h): what item_new sets up, what
 * item_run leaves in the control and result slots, how those map to an
 * outcome, and real items through a real pool (one worker).
 *
 * Item runs without a pool happen here on the test thread, exactly as a
 * worker calls them. Pool runs use a private uv_loop_t driven with
 * UV_RUN_NOWAIT until a condition holds (util/test_poll.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "offload/pool.h"
#include "pool/item.h"
#include "tasks/tasks.h"
#include "util/clock.h"
#include "util/err.h"

#include "util/test_poll.h"

/* Runs `loop` until `cond` holds (see util/test_poll.h). */
#define RUN_UNTIL(loop, cond) POLL(loop, true, cond)

/* ---- helpers ---- */

static item_t *new_item(const offload_task_def_t *def, const char *param, int64_t v, int64_t timeout_ms) {
  json_t *params = json_pack("{s:I}", param, (json_int_t)v);
  assert_non_null(params);
  param_error_t err;
  assert_true(tasks_validate(def, params, &err));
  item_t *it = item_new(def, params, timeout_ms);
  json_decref(params);
  assert_non_null(it);
  return it;
}

static void failing_run(offload_task_t *t) { offload_task_fail(t, "boom", "it broke at %d", 42); }
static void nonfinite_run(offload_task_t *t) { offload_task_result_real(t, NAN); }

/* ---- the item alone ---- */

static void test_new_and_free(void **state) {
  (void)state;
  json_t *params = json_pack("{s:I}", "n", (json_int_t)7);
  item_t *it = item_new(&task_fibonacci, params, 25);
  assert_non_null(it);
  /* A private deep copy: the caller's object may change or go. */
  assert_ptr_not_equal(it->params, params);
  assert_true(json_equal(it->params, params));
  json_object_set_new(params, "n", json_integer(8));
  assert_int_equal(json_integer_value(json_object_get(it->params, "n")), 7);
  json_decref(params);

  assert_ptr_equal(item_of(&it->work), it);
  assert_ptr_equal(it->work.run, item_run);
  assert_ptr_equal(it->work.ctl, &it->ctl);
  assert_ptr_equal(it->def, &task_fibonacci);
  assert_int_equal(it->work.timeout_ms, 25);
  assert_null(it->owner);
  assert_int_equal(pool_work_state(&it->work), POOL_WORK_IDLE);
  assert_int_equal(pool_work_started_ms(&it->work), 0);
  assert_true(item_progress(it) == 0.0);
  assert_false(atomic_load(&it->ctl.cancel));
  assert_false(atomic_load(&it->ctl.timed_out));
  assert_true(atomic_load(&it->ctl.deadline_ns) == 0);
  assert_int_equal(item_outcome(it), ITEM_OUT_COMPLETE); /* nothing yet: result null */
  json_t *j = item_result_json(it);
  assert_true(json_is_null(j));
  json_decref(j);
  item_free(it);
  item_free(NULL);
}

static void test_run_complete(void **state) {
  (void)state;
  item_t *it = new_item(&task_fibonacci, "n", 30, 0);
  item_run(&it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_COMPLETE);
  assert_int_equal(it->result.kind, TASK_RES_INT);
  json_t *j = item_result_json(it);
  assert_true(json_is_integer(j) && json_integer_value(j) == 832040);
  json_decref(j);
  assert_true(item_progress(it) > 0.0 && item_progress(it) <= 1.0);
  assert_true(atomic_load(&it->ctl.deadline_ns) == 0); /* no timeout, no deadline */
  item_free(it);
}

static void test_run_timeout(void **state) {
  (void)state;
  /* The pool sets the deadline in the ctl slot when a worker takes the item
   * (pool_test checks that); the run reads it, and it stops a long spin:
   * the outcome says timeout, not failed. */
  item_t *it = new_item(&task_spin, "ms", 600000, 30);
  uint64_t deadline = clock_mono_ns() + 30u * 1000000u;
  atomic_store(&it->ctl.deadline_ns, deadline);
  item_run(&it->work);
  assert_true(clock_mono_ns() >= deadline);
  assert_int_equal(item_outcome(it), ITEM_OUT_TIMEOUT);
  assert_true(atomic_load(&it->ctl.timed_out));
  assert_false(it->result.failed);
  item_free(it);
}

static void test_cancel_outcomes(void **state) {
  (void)state;
  /* Canceled before it starts: the run function is not called. */
  item_t *it = new_item(&task_fibonacci, "n", 20, 0);
  item_cancel(it);
  item_run(&it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_CANCELED);
  assert_int_equal(it->result.kind, TASK_RES_NULL);
  assert_true(item_progress(it) == 0.0);
  item_free(it);

  /* A cancel wins over a result set earlier or later, and over a failure
   * or a timeout. */
  it = new_item(&task_fibonacci, "n", 20, 0);
  item_run(&it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_COMPLETE);
  item_cancel(it);
  assert_int_equal(item_outcome(it), ITEM_OUT_CANCELED);
  it->result.failed = true;
  atomic_store(&it->ctl.timed_out, true);
  assert_int_equal(item_outcome(it), ITEM_OUT_CANCELED);
  item_free(it);

  /* A timeout wins over a failure. */
  it = new_item(&task_fibonacci, "n", 20, 0);
  it->result.failed = true;
  assert_int_equal(item_outcome(it), ITEM_OUT_FAILED);
  atomic_store(&it->ctl.timed_out, true);
  assert_int_equal(item_outcome(it), ITEM_OUT_TIMEOUT);
  item_free(it);
}

static void test_run_failed(void **state) {
  (void)state;
  offload_task_def_t def = task_fibonacci;
  def.run = failing_run;
  item_t *it = new_item(&def, "n", 1, 0);
  item_run(&it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_FAILED);
  assert_string_equal(it->result.err_code, "boom");
  assert_string_equal(it->result.err_message, "it broke at 42");
  item_free(it); /* frees the message: ASan checks */

  /* JSON has no NaN or infinity: such a result fails the item. */
  def.run = nonfinite_run;
  it = new_item(&def, "n", 1, 0);
  item_run(&it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_FAILED);
  assert_true(strlen(it->result.err_code) > 0);
  item_free(it);
}

/* ---- real items through the pool ---- */

typedef struct item_ctx {
  uv_loop_t loop;
  pool_t *pool;
  int ndone;
  pool_work_t *last;
} item_ctx_t;

static void on_item_done(pool_work_t *w, void *data) {
  item_ctx_t *c = data;
  c->ndone++;
  c->last = w;
}

static void item_ctx_start(item_ctx_t *c) {
  *c = (item_ctx_t){0};
  assert_int_equal(uv_loop_init(&c->loop), 0);
  pool_config_t cfg = {.workers = 1, .max_queue = 4, .nice = 0, .kill_grace_ms = 10000};
  c->pool = pool_new(&c->loop, &cfg, on_item_done, c);
  assert_non_null(c->pool);
}

static void item_ctx_stop(item_ctx_t *c) {
  pool_free(c->pool);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void test_cancel_running_item(void **state) {
  (void)state;
  item_ctx_t c;
  item_ctx_start(&c);
  item_t *it = new_item(&task_spin, "ms", 600000, 0); /* ten minutes unless canceled */
  assert_int_equal(pool_submit(c.pool, &it->work), 0);
  RUN_UNTIL(&c.loop, pool_work_state(&it->work) == POOL_WORK_RUNNING);
  assert_true(pool_work_started_ms(&it->work) > 0);
  assert_int_equal(pool_remove(c.pool, &it->work), OFF_EBUSY);
  item_cancel(it);
  RUN_UNTIL(&c.loop, c.ndone == 1);
  assert_ptr_equal(c.last, &it->work);
  assert_int_equal(pool_work_state(&it->work), POOL_WORK_DONE);
  assert_int_equal(item_outcome(it), ITEM_OUT_CANCELED);
  assert_true(item_progress(it) < 1.0);
  item_free(it);
  item_ctx_stop(&c);
  assert_int_equal(c.ndone, 1);
}

static void test_timeout_item(void **state) {
  (void)state;
  item_ctx_t c;
  item_ctx_start(&c);
  item_t *it = new_item(&task_spin, "ms", 600000, 50);
  assert_int_equal(pool_submit(c.pool, &it->work), 0);
  RUN_UNTIL(&c.loop, c.ndone == 1);
  assert_ptr_equal(c.last, &it->work);
  assert_int_equal(item_outcome(it), ITEM_OUT_TIMEOUT);
  assert_false(it->result.failed);
  item_free(it);
  item_ctx_stop(&c);
}

/* A result written on the worker is read on the loop after done (TSan
 * checks the ordering the headers promise). */
static void test_result_crosses(void **state) {
  (void)state;
  item_ctx_t c;
  item_ctx_start(&c);
  item_t *it = new_item(&task_fibonacci, "n", 30, 0);
  assert_int_equal(pool_submit(c.pool, &it->work), 0);
  RUN_UNTIL(&c.loop, c.ndone == 1);
  assert_int_equal(item_outcome(it), ITEM_OUT_COMPLETE);
  assert_true(it->result.integer == 832040);
  item_free(it);
  item_ctx_stop(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_and_free), cmocka_unit_test(test_run_complete),
      cmocka_unit_test(test_run_timeout),  cmocka_unit_test(test_cancel_outcomes),
      cmocka_unit_test(test_run_failed),   cmocka_unit_test(test_cancel_running_item),
      cmocka_unit_test(test_timeout_item), cmocka_unit_test(test_result_crosses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
