/* pool/pool_int: what pool.c (the queue, done path, worker slots and
 * watchdog) shares with its two backends, pool/thread.c and pool/proc.c.
 * Not part of offload/pool.h.
 *
 * A slot is one worker's place in the pool: its id, the item it runs and its
 * counters. The backend decides what stands behind it (a thread, or the
 * current process of a series of worker processes). */
#ifndef OFFLOAD_POOL_POOL_INT_H
#define OFFLOAD_POOL_POOL_INT_H

#include <pthread.h>

#include "offload/pool.h"

typedef struct pool_slot {
  unsigned id;
  _Atomic(pool_work_t *) current; /* the item it runs; NULL when idle */
  _Atomic uint64_t runs;          /* items taken so far: bumped before `current` is set */
  _Atomic bool in_task;           /* set by a pop (under the queue lock); a thread clears it after its finish */
  _Atomic uint64_t jobs_done;
  _Atomic int64_t started_at_ms; /* wall clock; when its thread/process started */
  /* Watchdog bookkeeping, loop thread only, about the run numbered
   * `seen_run` (an item's address may come back for another run). */
  pool_work_t *seen;
  uint64_t seen_run;
  bool timeout_told, forced;
  pool_work_t *stuck; /* a thread slot whose item would not stop: that item */
  void *be;           /* the backend's per-slot state */
} pool_slot_t;

typedef struct pool_backend {
  /* Starts every worker; 0 or a negative OFF_E* code. */
  int (*start)(pool_t *p);
  /* Loop thread: items were queued; put idle workers to work. */
  void (*kick)(pool_t *p);
  /* Loop thread: the slot's item (s->seen) is past its deadline or cancel
   * plus grace. Returns true when the item will come back through `done`
   * soon (the worker was killed, or it has just finished), false when the
   * worker cannot be stopped. */
  bool (*force_stop)(pool_t *p, pool_slot_t *s);
  /* Loop thread, at pool_free: stop every worker; call pool__backend_gone
   * (at once or later) once none is left. */
  void (*stop)(pool_t *p);
  /* Loop thread: pid, state, cpu and rss of one slot. */
  void (*info)(pool_t *p, pool_slot_t *s, pool_worker_info_t *out);
  /* Frees the backend's state (after pool__backend_gone). */
  void (*fini)(pool_t *p);
} pool_backend_t;

extern const pool_backend_t pool_thread_backend, pool_proc_backend;

struct pool {
  uv_loop_t *loop;
  uv_async_t async; /* worker thread -> loop wake-up */
  uv_timer_t watchdog;
  pool_done_cb done;
  void *data;
  pool_config_t cfg;
  const pool_backend_t *be;
  void *be_data;

  pthread_mutex_t mu;
  pthread_cond_t cond;
  pool_work_t *head, *tail; /* queue, FIFO; guarded by mu */
  size_t depth;
  bool stopping;

  _Atomic(pool_work_t *) done_head; /* LIFO, lock-free; reversed when drained */

  _Atomic unsigned busy;
  _Atomic size_t depth_pub; /* copy of depth for lock-free readers */
  pool_slot_t *slots;
  unsigned nslots;

  /* Loop thread only. */
  size_t watched;       /* items with a timeout, or canceled, in the pool */
  bool watchdog_on;
  bool closing;         /* pool_free ran; freed when the handles close */
  _Atomic bool abandoned; /* left to a stuck thread: never touch the loop again */
  _Atomic int finishing;  /* worker threads waking the loop now (wake_loop) */
  _Atomic bool starts;    /* a run started since the loop last looked (cfg.started) */
  struct pool_help *helps; /* fan-outs idle workers may join (fanout.c); guarded by mu */
  int open_handles;
  uint64_t restarts[POOL_NRESTART];
};

/* Takes the oldest queued item for slot `s` and marks it running (started,
 * deadline). NULL when the queue is empty or the pool stops. Any thread;
 * pool__pop_wait blocks (worker threads) until there is one. */
pool_work_t *pool__pop(pool_t *p, pool_slot_t *s);
pool_work_t *pool__pop_wait(pool_t *p, pool_slot_t *s);

/* ---- fanout.c ---- */
/* One pool_parallel call in progress, on its caller's stack. */
typedef struct pool_help {
  pool_chunk_fn fn;
  void *ctx;
  size_t n;
  bool (*stop)(void *);
  void *stop_ctx;
  _Atomic size_t next;   /* the next chunk to claim */
  _Atomic size_t ran;    /* chunks run, by everyone */
  _Atomic bool stopped;
  int helpers;           /* workers inside it now; guarded by mu */
  pthread_cond_t done;   /* helpers fell to 0 (with mu) */
  struct pool_help *next_help;
} pool_help_t;
/* A worker thread's pool, for pool_parallel (thread.c sets it). */
void pool__set_current(pool_t *p);
/* Caller holds mu, p->helps is not empty: joins the oldest one. */
void pool__help_locked(pool_t *p);

/* Loop thread: `w`, just popped by slot `s`, never reached its worker:
 * back into the queue at its place, as if never taken. */
void pool__unpop(pool_t *p, pool_slot_t *s, pool_work_t *w);

/* The slot's run of `w` is over (its results written): marks it DONE and
 * hands it to `done`. pool__finish_async: any thread, through the done list
 * and the async handle; pool__finish_here: loop thread, calls `done` now. */
void pool__finish_async(pool_t *p, pool_slot_t *s, pool_work_t *w);
void pool__finish_here(pool_t *p, pool_slot_t *s, pool_work_t *w);

/* Backend stop is complete: pool.c closes its handles and frees the pool,
 * unless `abandon`: some worker thread could not be joined (it still runs
 * a task) and may touch the pool whenever it returns, so the pool is never
 * freed and the loop is never touched from it again. */
void pool__backend_gone(pool_t *p, bool abandon);

#endif
