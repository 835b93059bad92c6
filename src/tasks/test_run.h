/* tasks/test_run: for unit tests only (include after cmocka.h). One task run
 * over control words, params and a result slot of the test's own, exactly as
 * a work item (pool/item.h) lays them out for a worker; no pool, no loop. */
#ifndef OFFLOAD_TASKS_TEST_RUN_H
#define OFFLOAD_TASKS_TEST_RUN_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "tasks/context.h"
#include "util/clock.h"

/* One run's words, as a work item would hold them, and its context. */
typedef struct run {
  const offload_task_def_t *def;
  json_t *params;
  _Atomic double progress;
  _Atomic bool cancel, timed_out;
  task_result_t result;
  offload_task_t t; /* points into the fields above */
} run_t;

/* A run of def with one integer parameter (none when param is NULL); the
 * deadline is timeout_ms from now (0 = none). */
static inline run_t *new_run(const offload_task_def_t *def, const char *param, int64_t v, int64_t timeout_ms) {
  run_t *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->def = def;
  r->params = param ? json_pack("{s:I}", param, (json_int_t)v) : json_object();
  assert_non_null(r->params);
  r->t = (offload_task_t){
      .params = r->params,
      .progress = &r->progress,
      .cancel = &r->cancel,
      .timed_out = &r->timed_out,
      .deadline_ns = timeout_ms > 0 ? clock_mono_ns() + (uint64_t)timeout_ms * 1000000u : 0,
      .result = &r->result,
  };
  return r;
}

static inline void run_free(run_t *r) {
  json_decref(r->params);
  task_result_fini(&r->result);
  free(r);
}

static inline double progress(run_t *r) { return atomic_load(&r->progress); }

/* What an item reports as complete: no cancel, no timeout, no failure. */
static inline void assert_complete(run_t *r) {
  assert_false(atomic_load(&r->cancel));
  assert_false(atomic_load(&r->timed_out));
  assert_false(r->result.failed);
}

/* Runs def with one integer parameter on this thread; returns the run. */
static inline run_t *run_task(const offload_task_def_t *def, const char *param, int64_t v) {
  run_t *r = new_run(def, param, v, 0);
  task_run(&r->t, def);
  return r;
}

static inline int64_t run_int(const offload_task_def_t *def, const char *param, int64_t v) {
  run_t *t = run_task(def, param, v);
  assert_complete(t);
  assert_int_equal(t->result.kind, TASK_RES_INT);
  int64_t r = t->result.integer;
  run_free(t);
  return r;
}

#endif
