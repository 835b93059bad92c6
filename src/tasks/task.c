#include "tasks/task.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

task_t *task_new(const offload_task_def_t *def, const json_t *params, int64_t timeout_ms) {
  task_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->params = json_deep_copy(params);
  if (!t->params) {
    free(t);
    return NULL;
  }
  t->def = def;
  t->timeout_ms = timeout_ms;
  t->work.run = task_run;
  atomic_init(&t->progress, 0.0);
  atomic_init(&t->cancel, false);
  atomic_init(&t->timed_out, false);
  return t;
}

void task_free(task_t *t) {
  if (!t)
    return;
  json_decref(t->params);
  free(t->err_message);
  free(t);
}

void task_run(pool_work_t *w) {
  task_t *t = task_of(w);
  t->_deadline_ns = t->timeout_ms > 0 ? clock_mono_ns() + (uint64_t)t->timeout_ms * 1000000u : 0;
  if (offload_task_canceled(t))
    return;
  t->def->run(t);
}

task_outcome_t task_outcome(const task_t *t) {
  if (atomic_load(&t->cancel))
    return TASK_OUT_CANCELED;
  if (atomic_load(&t->timed_out))
    return TASK_OUT_TIMEOUT;
  if (t->failed)
    return TASK_OUT_FAILED;
  return TASK_OUT_COMPLETE;
}

json_t *task_result_json(const task_t *t) {
  switch (t->result_kind) {
  case TASK_RES_INT: return json_integer(t->result_int);
  case TASK_RES_REAL: return json_real(t->result_real);
  case TASK_RES_NULL: break;
  }
  return json_null();
}

/* ---- offload/task.h ---- */

int64_t offload_task_param_int(const offload_task_t *t, const char *name, int64_t dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

void offload_task_progress(offload_task_t *t, double fraction) {
  if (!(fraction >= 0.0)) /* NaN too */
    return;
  if (fraction > 1.0)
    fraction = 1.0;
  /* Only this worker writes progress, so a plain compare is enough. */
  if (fraction > atomic_load_explicit(&t->progress, memory_order_relaxed))
    atomic_store_explicit(&t->progress, fraction, memory_order_relaxed);
}

bool offload_task_canceled(offload_task_t *t) {
  if (atomic_load_explicit(&t->cancel, memory_order_relaxed))
    return true;
  if (atomic_load_explicit(&t->timed_out, memory_order_relaxed))
    return true;
  if (t->_deadline_ns && clock_mono_ns() >= t->_deadline_ns) {
    atomic_store(&t->timed_out, true);
    return true;
  }
  return false;
}

void offload_task_result_int(offload_task_t *t, int64_t v) {
  t->result_kind = TASK_RES_INT;
  t->result_int = v;
}

void offload_task_result_real(offload_task_t *t, double v) {
  if (!isfinite(v)) { /* JSON has no NaN or infinity */
    offload_task_fail(t, "non_finite_result", "The task produced a result that is not a finite number.");
    return;
  }
  t->result_kind = TASK_RES_REAL;
  t->result_real = v;
}

void offload_task_result_null(offload_task_t *t) { t->result_kind = TASK_RES_NULL; }

void offload_task_fail(offload_task_t *t, const char *code, const char *fmt, ...) {
  t->failed = true;
  snprintf(t->err_code, sizeof t->err_code, "%s", code);
  free(t->err_message);
  t->err_message = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&t->err_message, fmt, ap) < 0)
    t->err_message = NULL;
  va_end(ap);
}
