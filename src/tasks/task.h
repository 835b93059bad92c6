/* tasks/task: the work item that carries one job's run across the thread
 * boundary, and the implementation of offload/task.h.
 *
 * Ownership and threads: the loop thread creates a task_t (task_new), hands it
 * to the pool, and frees it (task_free) after the pool's done callback or a
 * successful pool_remove. While a worker runs it, the worker writes the result
 * fields; the loop reads them only after the done callback (the pool's done
 * lock orders the two). `progress`, `cancel` and `timed_out` are atomics that
 * either side may touch at any time. The params object is a private deep copy
 * that nobody modifies once submitted. */
#ifndef OFFLOAD_TASKS_TASK_H
#define OFFLOAD_TASKS_TASK_H

#include <jansson.h>
#include <stdatomic.h>

#include "offload/pool.h"
#include "offload/task.h"

typedef enum {
  TASK_OUT_COMPLETE = 1,
  TASK_OUT_FAILED,   /* the task called offload_task_fail */
  TASK_OUT_CANCELED, /* a cancel was requested (whatever the task did after) */
  TASK_OUT_TIMEOUT,  /* its deadline passed while it ran */
} task_outcome_t;

typedef enum { TASK_RES_NULL = 0, TASK_RES_INT, TASK_RES_REAL } task_result_kind_t;

struct offload_task {
  pool_work_t work; /* first member: the pool hands us back by this */
  const offload_task_def_t *def;
  json_t *params;     /* owned, read-only once submitted */
  int64_t timeout_ms; /* 0 = none; counted from the start of the run */
  void *owner;        /* the loop side's job, for the done callback */

  _Atomic double progress;
  _Atomic bool cancel;
  _Atomic bool timed_out;
  uint64_t _deadline_ns; /* worker only: monotonic deadline or 0 */

  /* Written by the worker during the run; read by the loop after done. */
  task_result_kind_t result_kind;
  int64_t result_int;
  double result_real;
  bool failed;
  char err_code[48];
  char *err_message; /* owned */
};

typedef struct offload_task task_t;

/* Returns a new task with a deep copy of `params` (borrowed), or NULL. */
task_t *task_new(const offload_task_def_t *def, const json_t *params, int64_t timeout_ms);
void task_free(task_t *t);

/* The pool_run_cb for every task: sets the deadline and runs def->run. */
void task_run(pool_work_t *w);

/* The task that embeds `w` (every item offload submits is a task). */
static inline task_t *task_of(pool_work_t *w) { return (task_t *)w; }

static inline void task_cancel(task_t *t) { atomic_store(&t->cancel, true); }
static inline double task_progress(const task_t *t) { return atomic_load_explicit(&t->progress, memory_order_relaxed); }

/* Loop thread, after done: what happened. */
task_outcome_t task_outcome(const task_t *t);
/* The result as a new JSON value (caller owns it). */
json_t *task_result_json(const task_t *t);

#endif
