/* pool/item: the work item that carries one job's run across the thread
 * boundary: the kind (def), a private deep copy of the params, the control
 * slot (pool_ctl_t) and the result slot. Its run builds the task context
 * (tasks/context.h) over those and calls the kind's run function.
 *
 * Ownership and threads: the loop thread creates an item (item_new), hands it
 * to the pool, and frees it (item_free) after the pool's done callback or a
 * successful pool_remove. While a worker runs it, only that worker writes the
 * result slot; the loop reads it once the item is DONE: the worker's seq_cst
 * store of ctl.state = DONE, then the release CAS / acquire exchange on the
 * done list, order the run's writes before the loop's reads (see pool.c; no
 * lock is involved). The ctl words `progress`, `cancel` and `timed_out` are
 * atomics either side may touch at any time. The params copy is never
 * modified once submitted.
 *
 * In a process pool the item itself never leaves the server: item_encode
 * turns it into a job frame (pool/wire.h), item_decode reads the result
 * frame back into the result slot, both on the loop thread. */
#ifndef OFFLOAD_POOL_ITEM_H
#define OFFLOAD_POOL_ITEM_H

#include <jansson.h>
#include <stdatomic.h>

#include "offload/pool.h"
#include "offload/task.h"
#include "tasks/context.h"

typedef enum {
  ITEM_OUT_COMPLETE = 1,
  ITEM_OUT_FAILED,   /* the task called offload_task_fail */
  ITEM_OUT_CANCELED, /* a cancel was requested (whatever the task did after) */
  ITEM_OUT_TIMEOUT,  /* its deadline passed while it ran */
  ITEM_OUT_CRASHED,  /* its worker process died under it */
  ITEM_OUT_OOM,      /* ... at its memory limit */
} item_outcome_t;

typedef struct item {
  pool_work_t work; /* first member: the pool hands us back by this; work.ctl == &ctl */
  pool_ctl_t ctl;
  const offload_task_def_t *def;
  json_t *params;       /* owned, read-only once submitted */
  void *owner;          /* the loop side's job, for the done callback; NULL once it let go */
  char job_id[24];      /* the job's id, for GET /workers even after the job let go */
  const char *files_root; /* borrowed (the server's): where output files go, <root>/<job id>/; NULL = none */
  /* The job's input: a descriptor the item owns (closed by item_free), or
   * -1; a thread maps it for the run, a process gets it with the frame. */
  int input_fd;
  int64_t input_len;
  char input_type[128];
  task_result_t result; /* written by the worker during the run; read by the loop after DONE */
} item_t;

/* Returns a new item with a deep copy of `params` (borrowed), or NULL.
 * timeout_ms 0 = none, counted from the start of the run. Loop thread. */
item_t *item_new(const offload_task_def_t *def, const json_t *params, int64_t timeout_ms);
/* Frees the item and what it owns; NULL is fine. Loop thread, never while in the pool. */
void item_free(item_t *it);

/* The pool_run_cb of every item (thread pools): runs def->run. Worker thread. */
void item_run(pool_work_t *w);
/* The pool_encode_cb and pool_decode_cb of every item (process pools). */
int item_encode(pool_work_t *w, void **payload, size_t *len, int *fd);
int item_decode(pool_work_t *w, const void *payload, size_t len, int fd);

/* The item that embeds `w` (every work offload submits is an item). */
static inline item_t *item_of(pool_work_t *w) { return (item_t *)w; }

/* Any thread, any time: through work.ctl, the live slot (a process pool
 * points it at the worker's shared page while the item runs there). */
static inline void item_cancel(item_t *it) { atomic_store(&it->work.ctl->cancel, true); }
static inline double item_progress(const item_t *it) {
  return atomic_load_explicit(&it->work.ctl->progress, memory_order_relaxed);
}

/* Loop thread, once the item is DONE (or on a never-run item): what happened. */
item_outcome_t item_outcome(const item_t *it);
/* The result as a new JSON value (caller owns it). */
json_t *item_result_json(const item_t *it);
/* For CRASHED and OOM: what happened to the worker, as a sentence. */
void item_fault_message(const item_t *it, uint64_t memory_mb, char *buf, size_t size);

#endif
