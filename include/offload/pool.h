/* offload/pool.h: a fixed pool of worker threads fed by one bounded FIFO queue,
 * reporting finished work back to a libuv loop.
 *
 * Threads: pool_new, pool_submit, pool_remove, pool_free and the done callback
 * belong to the loop thread. The run callback runs on a worker thread and sees
 * only its own work item. The stats getters may be called from any thread.
 *
 * Ownership: a pool_work_t and the pool_ctl_t it points to are the caller's
 * memory (embed them in your own struct). From a successful pool_submit until
 * the done callback (or a successful pool_remove) the pool uses them: do not
 * free or move them in between.
 *
 * DESIGN: the queue is a doubly linked list under one mutex + condvar; a worker
 * pops the head, runs it with no lock held, then pushes it onto the lock-free
 * done list and calls uv_async_send. The loop takes the whole done list at
 * once (wake-ups coalesce) and calls the done callback for each item. Workers
 * lower their own CPU priority (nice + SCHED_BATCH) so the loop thread wins
 * the CPU when every core is busy. */
#ifndef OFFLOAD_POOL_H
#define OFFLOAD_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "offload/err.h"

typedef struct pool pool_t;
typedef struct pool_work pool_work_t;

/* Runs on a worker thread. */
typedef void (*pool_run_cb)(pool_work_t *w);
/* Runs on the loop thread once the item is finished (or, at pool_free, never
 * started: then pool_work_state(w) is still POOL_WORK_QUEUED). */
typedef void (*pool_done_cb)(pool_work_t *w, void *data);

typedef enum { POOL_WORK_IDLE = 0, POOL_WORK_QUEUED, POOL_WORK_RUNNING, POOL_WORK_DONE } pool_work_state_t;

/* One item's live state: plain data with no pointers, so it can sit anywhere
 * both sides can read, including a page shared with a worker process.
 *
 * The pool writes `state` and `started_ms` (and nothing else). The other words
 * belong to the run and whoever controls it; the pool never reads them. They
 * sit here so that one slot holds all of a job's live state: the loop sets
 * `cancel`, the run raises `progress`, sets `deadline_ns` when it starts and
 * `timed_out` once that passes. Zero is the initial value of every word.
 *
 * Ordering: the worker's store of state = POOL_WORK_DONE (seq_cst) comes after
 * everything the run wrote, so a reader that loads DONE may read the run's
 * results; the done callback is ordered after them too (see pool.c). */
typedef struct pool_ctl {
  _Atomic int state;            /* a pool_work_state_t */
  _Atomic int64_t started_ms;   /* wall-clock ms when a worker took it; 0 before */
  _Atomic double progress;      /* 0..1, only ever raised */
  _Atomic bool cancel;          /* set by the controller, polled by the run */
  _Atomic bool timed_out;       /* set by the run once deadline_ns has passed */
  _Atomic uint64_t deadline_ns; /* monotonic; 0 = none; set when the run starts */
} pool_ctl_t;

struct pool_work {
  pool_run_cb run;
  pool_ctl_t *ctl; /* the item's control slot; set with `run`, before submit */
  /* Private to the pool. */
  pool_work_t *_next, *_prev;
};

typedef struct pool_config {
  unsigned workers; /* >= 1; ignored when run_inline */
  /* Demonstration mode, never for production: no threads; items run one at a
   * time on the loop thread itself (from the async callback), blocking the
   * loop for the whole run exactly as computing on Node's main thread does. */
  bool run_inline;
  size_t max_queue; /* >= 1: items waiting (not running) */
  int nice;         /* 0..19 added to each worker thread's niceness */
} pool_config_t;

/* Starts the worker threads. Returns NULL on failure (errno-style reason logged).
 * `done` is called on the loop thread with `data` for every finished item. */
pool_t *pool_new(uv_loop_t *loop, const pool_config_t *cfg, pool_done_cb done, void *data);

/* Stops the workers: waits for running items to finish (cancel them first if
 * you want this quick), calls `done` for every finished or never-started item,
 * joins the threads and frees the pool. Loop thread; blocks while joining. */
void pool_free(pool_t *p);

/* Queues `w` to run `w->run`; `run` and `ctl` must be set. Returns 0 (ctl's
 * state is now QUEUED and started_ms 0; the pool leaves its other words
 * alone), OFF_EFULL when max_queue items wait (nothing changes), or
 * OFF_ESTOPPED once pool_free has begun. */
int pool_submit(pool_t *p, pool_work_t *w);

/* Takes back an item that is still queued. Returns 0 (the item is the
 * caller's again, `done` will not be called for it) or OFF_EBUSY when a worker
 * already has it or pool_free has begun (its `done` call will come). */
int pool_remove(pool_t *p, pool_work_t *w);

static inline pool_work_state_t pool_work_state(const pool_work_t *w) {
  return (pool_work_state_t)atomic_load(&w->ctl->state);
}
static inline int64_t pool_work_started_ms(const pool_work_t *w) {
  return atomic_load_explicit(&w->ctl->started_ms, memory_order_relaxed);
}

unsigned pool_workers(const pool_t *p); /* 1 (the loop) when inline */
unsigned pool_busy(const pool_t *p);    /* workers running an item now */
size_t pool_depth(const pool_t *p);     /* items waiting */
size_t pool_capacity(const pool_t *p);  /* max_queue */

#endif
