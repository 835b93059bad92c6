/* tasks/context: offload/task.h over borrowed control words, params and a
 * result slot. See tasks/context.h. */
#include "tasks/context.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

void task_run(offload_task_t *t, const offload_task_def_t *def) {
  if (offload_task_canceled(t))
    return;
  def->run(t);
}

json_t *task_result_json(const task_result_t *r) {
  switch (r->kind) {
  case TASK_RES_INT: return json_integer(r->integer);
  case TASK_RES_REAL: return json_real(r->real);
  case TASK_RES_NULL: break;
  }
  return json_null();
}

void task_result_fini(task_result_t *r) {
  free(r->err_message);
  memset(r, 0, sizeof *r);
}

/* ---- offload/task.h ---- */

int64_t offload_task_param_int(const offload_task_t *t, const char *name, int64_t dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

bool offload_task_param_bool(const offload_task_t *t, const char *name, bool dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

const char *offload_task_param_str(const offload_task_t *t, const char *name, const char *dflt) {
  json_t *v = json_object_get(t->params, name);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

void offload_task_progress(offload_task_t *t, double fraction) {
  if (!(fraction >= 0.0)) /* NaN too */
    return;
  if (fraction > 1.0)
    fraction = 1.0;
  /* Only this run writes progress, so a plain compare is enough. */
  if (fraction > atomic_load_explicit(t->progress, memory_order_relaxed))
    atomic_store_explicit(t->progress, fraction, memory_order_relaxed);
}

bool offload_task_canceled(offload_task_t *t) {
  if (atomic_load_explicit(t->cancel, memory_order_relaxed))
    return true;
  if (atomic_load_explicit(t->timed_out, memory_order_relaxed))
    return true;
  if (t->deadline_ns && clock_mono_ns() >= t->deadline_ns) {
    atomic_store(t->timed_out, true);
    return true;
  }
  return false;
}

void offload_task_result_int(offload_task_t *t, int64_t v) {
  t->result->kind = TASK_RES_INT;
  t->result->integer = v;
}

void offload_task_result_real(offload_task_t *t, double v) {
  if (!isfinite(v)) { /* JSON has no NaN or infinity */
    offload_task_fail(t, "non_finite_result", "The task produced a result that is not a finite number.");
    return;
  }
  t->result->kind = TASK_RES_REAL;
  t->result->real = v;
}

void offload_task_result_null(offload_task_t *t) { t->result->kind = TASK_RES_NULL; }

void offload_task_fail(offload_task_t *t, const char *code, const char *fmt, ...) {
  task_result_t *r = t->result;
  r->failed = true;
  snprintf(r->err_code, sizeof r->err_code, "%s", code);
  free(r->err_message);
  r->err_message = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&r->err_message, fmt, ap) < 0)
    r->err_message = NULL;
  va_end(ap);
}
