/* offload/task.h: the API task code sees.
 *
 * A task is a pure function that runs on a worker thread:
 *     void my_task(offload_task_t *t);
 * It reads its (already validated) parameters, reports progress, checks for
 * cancellation, and sets a result or an error. It never sees libuv, HTTP or
 * the job store. Registering a task is one entry in src/tasks/tasks.c.
 *
 * Threads: every function here is for the worker thread running `t`.
 * Ownership: `t` is borrowed for the duration of the run; strings passed in
 * are copied. */
#ifndef OFFLOAD_TASK_H
#define OFFLOAD_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct offload_task offload_task_t;
typedef void (*offload_task_fn)(offload_task_t *t);

typedef enum { OFFLOAD_PARAM_INTEGER = 1, OFFLOAD_PARAM_BOOLEAN, OFFLOAD_PARAM_STRING } offload_param_type_t;

typedef struct offload_param_spec {
  const char *name;
  offload_param_type_t type;
  bool required;
  int64_t min, max;           /* integers: inclusive */
  const char *const *choices; /* strings: the allowed values, NULL-terminated */
  bool test_only;             /* offered only when the server enables test tasks */
} offload_param_spec_t;

/* Where a task's jobs run. DEFAULT follows the server's --isolation; a task
 * that declares PROCESS (untrusted inputs, third-party code) always runs in
 * a worker process, whatever the flag says. */
typedef enum { OFFLOAD_ISOLATION_DEFAULT = 0, OFFLOAD_ISOLATION_THREAD, OFFLOAD_ISOLATION_PROCESS } offload_isolation_t;

typedef struct offload_task_def {
  const char *name;        /* [a-z0-9_]+ */
  const char *description; /* one sentence */
  offload_task_fn run;
  const offload_param_spec_t *params;
  size_t nparams;
  offload_isolation_t isolation;
  bool test_only; /* offered only when the server enables test tasks */
} offload_task_def_t;

/* The value of parameter `name`; `dflt` when it is optional and absent.
 * A string stays valid for the run. */
int64_t offload_task_param_int(const offload_task_t *t, const char *name, int64_t dflt);
bool offload_task_param_bool(const offload_task_t *t, const char *name, bool dflt);
const char *offload_task_param_str(const offload_task_t *t, const char *name, const char *dflt);

/* Progress in 0..1; values below an earlier report are ignored. Cheap (one
 * relaxed atomic store): call it from the task's outer loop, every few ms. */
void offload_task_progress(offload_task_t *t, double fraction);

/* True once the job is canceled or its timeout has passed. The task should
 * return promptly (within a few ms); whatever it sets afterwards is ignored.
 * Cheap (one atomic load + a vDSO clock read when a deadline is set). */
bool offload_task_canceled(offload_task_t *t);

/* Results. Setting one replaces any earlier one. Without a result or an error
 * the job completes with result null. */
void offload_task_result_int(offload_task_t *t, int64_t v);
void offload_task_result_real(offload_task_t *t, double v);
void offload_task_result_null(offload_task_t *t);

/* Fails the job with error {"code": code, "message": the formatted text}.
 * `code` is snake_case. */
void offload_task_fail(offload_task_t *t, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
