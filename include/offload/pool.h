/* offload/pool.h: a fixed set of workers (threads, or isolated processes)
 * fed by one bounded FIFO queue, reporting finished work back to a libuv loop.
 *
 * Threads: every function here belongs to the loop thread, except the stats
 * getters (any thread). A thread pool's run callback runs on a worker thread
 * and sees only its own work item; a process pool never calls `run`: it sends
 * the item to a worker process through the `encode`/`decode` hooks.
 *
 * Ownership: a pool_work_t and the pool_ctl_t it points to are the caller's
 * memory (embed them in your own struct). From a successful pool_submit until
 * the done callback (or a successful pool_remove) the pool uses them: do not
 * free or move them in between.
 *
 * Limits: an item may carry a timeout (from the start of its run) and may be
 * canceled while it runs (pool_cancel). Both only raise flags the task polls;
 * a task that does not stop within `kill_grace_ms` is stopped by force: a
 * worker process is killed (SIGKILL) and replaced, a worker thread (which
 * nothing can stop) is reported `stuck` and the pool runs on without it
 * until the task returns. The `stall` callback tells the owner the moment an
 * item's deadline passes, and when a canceled item's grace runs out on a
 * thread, so it can finish the job without waiting for the worker.
 *
 * DESIGN: pool.c holds the queue, the done path, the worker slots and the
 * watchdog; a backend (pool/thread.c, pool/proc.c) runs the workers. See
 * docs/ARCHITECTURE.md for the process protocol. */
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

/* Runs on a worker thread (thread pools only). */
typedef void (*pool_run_cb)(pool_work_t *w);
/* Runs on the loop thread once the item is finished (or, at pool_free, never
 * started: then pool_work_state(w) is still POOL_WORK_QUEUED). */
typedef void (*pool_done_cb)(pool_work_t *w, void *data);

typedef enum { POOL_WORK_IDLE = 0, POOL_WORK_QUEUED, POOL_WORK_RUNNING, POOL_WORK_DONE } pool_work_state_t;

/* Why a worker stopped in the middle of an item (ctl.fault). */
typedef enum {
  POOL_FAULT_NONE = 0,
  POOL_FAULT_CRASH,  /* the worker process died by a signal or exited */
  POOL_FAULT_OOM,    /* ... while at its memory limit */
  POOL_FAULT_KILLED, /* the pool killed it: past its deadline or cancel, plus grace */
} pool_fault_t;

/* One item's live state: plain data with no pointers, so it can sit anywhere
 * both sides can read, including a page shared with a worker process.
 *
 * The pool writes `state`, `started_ms`, `deadline_ns` and the fault words.
 * The run raises `progress` and sets `timed_out` once the deadline passes
 * (the pool's watchdog sets it too); whoever controls the item sets `cancel`
 * through pool_cancel. Zero is the initial value of every word.
 *
 * Ordering: the store of state = POOL_WORK_DONE (seq_cst) comes after
 * everything the run wrote, so a reader that loads DONE may read the run's
 * results; the done callback is ordered after them too (see pool.c). */
typedef struct pool_ctl {
  _Atomic int state;            /* a pool_work_state_t */
  _Atomic int64_t started_ms;   /* wall-clock ms when a worker took it; 0 before */
  _Atomic double progress;      /* 0..1, only ever raised */
  _Atomic bool cancel;          /* set by pool_cancel, polled by the run */
  _Atomic bool timed_out;       /* set once deadline_ns has passed */
  _Atomic uint64_t deadline_ns; /* monotonic; 0 = none; set when the run starts */
  _Atomic int fault;            /* a pool_fault_t; set when DONE by a dead worker */
  _Atomic int fault_signal;     /* the signal that ended the worker, or 0 */
  _Atomic int fault_status;     /* its exit status when it exited, else -1 */
} pool_ctl_t;

struct pool_work {
  pool_run_cb run;   /* thread pools */
  pool_ctl_t *ctl;   /* the item's control slot; set before submit */
  int64_t timeout_ms; /* 0 = none; counted from the start of the run */
  uint64_t order;     /* the queue is kept sorted by this (FIFO for rising values) */
  /* Private to the pool. */
  pool_work_t *_next, *_prev;
  pool_ctl_t *_home;  /* ctl as submitted (a process pool points ctl at a shared page meanwhile) */
  uint64_t _cancel_ms; /* monotonic ms of pool_cancel while running; 0 = none */
  bool _watched;       /* counted in the watchdog's set */
  bool _start_told;    /* the `started` callback ran for this run */
};

typedef enum { POOL_THREADS = 0, POOL_PROCS } pool_kind_t;

typedef enum { POOL_STALL_TIMEOUT = 1, POOL_STALL_CANCEL } pool_stall_t;
/* Loop thread: `w` is still in a worker, but its deadline has passed
 * (TIMEOUT, reported once, at the deadline) or, on a thread, its cancel grace
 * has run out (CANCEL, once). The item stays the pool's: `done` still comes,
 * whenever the worker lets go of it. */
typedef void (*pool_stall_cb)(pool_work_t *w, pool_stall_t why, void *data);
/* Loop thread, soon after a worker took `w` (one wake-up for many starts):
 * its state is RUNNING, or already DONE with `done` still to come. A run
 * that finished before the loop looked is reported by `done` alone. */
typedef void (*pool_started_cb)(pool_work_t *w, void *data);

/* Process pools: the item's job frame payload (a new malloc'd buffer the pool
 * frees, *len its size; *fd a descriptor to pass along, which the pool
 * closes, or -1), and the reverse for the result payload. Loop thread.
 * Return 0 or a negative OFF_E* code. */
typedef int (*pool_encode_cb)(pool_work_t *w, void **payload, size_t *len, int *fd);
typedef int (*pool_decode_cb)(pool_work_t *w, const void *payload, size_t len, int fd);

typedef struct pool_proc_config {
  const char *exe;        /* the worker binary; NULL = this process's own (/proc/self/exe) */
  const char *const *argv; /* its arguments (argv[0] included), NULL-terminated */
  pool_encode_cb encode;
  pool_decode_cb decode;
  uint64_t memory_mb;    /* 0 = no limit: the worker's data limit (RLIMIT_DATA) */
  uint64_t cpu_s;        /* 0 = no limit: CPU seconds per item (RLIMIT_CPU) */
  uint64_t max_jobs;     /* 0 = never: replace a worker after this many items */
} pool_proc_config_t;

typedef struct pool_config {
  pool_kind_t kind;
  unsigned workers; /* >= 1; ignored when run_inline */
  /* Thread pools, demonstration mode, never for production: no threads;
   * items run one at a time on the loop thread itself (from the async
   * callback), blocking the loop for the whole run exactly as computing on
   * Node's main thread does. */
  bool run_inline;
  size_t max_queue;       /* >= 1: items waiting (not running) */
  int nice;               /* 0..19 added to each worker's niceness */
  uint64_t kill_grace_ms; /* how long a canceled or overdue item may take to stop */
  unsigned first_id;      /* the id of the first worker (ids are unique per server) */
  pool_stall_cb stall;    /* optional */
  pool_started_cb started; /* optional */
  pool_proc_config_t proc;
} pool_config_t;

/* ---- fan-out inside one item ---- */

typedef void (*pool_chunk_fn)(void *ctx, size_t i);

/* Runs fn(ctx, i) for every i in [0, n) and returns once every call has
 * returned: on the calling thread and, at the same time, on every idle
 * worker thread of the pool the caller is a worker of (an idle worker is
 * one with no queued item: items come first); called anywhere else (a
 * worker process, the loop, a test), on local helper threads, one per
 * online core. fn must be safe to run concurrently for different i.
 * `stop` (may be NULL) is polled before each chunk: once it returns true
 * the chunks not yet started are skipped. Returns how many chunks ran. */
size_t pool_parallel(size_t n, pool_chunk_fn fn, void *ctx, bool (*stop)(void *), void *stop_ctx);

/* Starts the workers. Returns NULL on failure (reason logged). `done` is
 * called on the loop thread with `data` for every finished item. */
pool_t *pool_new(uv_loop_t *loop, const pool_config_t *cfg, pool_done_cb done, void *data);

/* Stops the workers: waits for running items to finish (cancel them first if
 * you want this quick), calls `done` for every finished or never-started item,
 * and frees the pool once its handles are closed (run the loop). Loop thread.
 * A thread whose item was told to stop (canceled, or past its deadline) is
 * waited for at most kill_grace_ms, a stuck one not at all: such a thread is
 * detached, its item never comes back, and the pool's memory is left to it
 * until the process exits. Worker processes still running are killed. */
void pool_free(pool_t *p);

/* Queues `w`; `ctl` (and `run` for a thread pool) must be set. Returns 0
 * (ctl's state is now QUEUED and started_ms 0; the pool leaves the other
 * words alone), OFF_EFULL when max_queue items wait (nothing changes), or
 * OFF_ESTOPPED once pool_free has begun. `force` admits it past max_queue
 * (for an item admitted before: a retry). Items wait in order of `order`:
 * one with an order below the newest waiting ones goes in before them
 * (O(items it passes)); rising orders make a plain FIFO. */
int pool_submit(pool_t *p, pool_work_t *w);
int pool_submit_force(pool_t *p, pool_work_t *w);

/* Takes back an item that is still queued. Returns 0 (the item is the
 * caller's again, `done` will not be called for it) or OFF_EBUSY when a worker
 * already has it or pool_free has begun (its `done` call will come). */
int pool_remove(pool_t *p, pool_work_t *w);

/* Asks a queued or running item to stop: sets ctl.cancel; a running item
 * that has not stopped kill_grace_ms later is stopped by force (see the top). */
void pool_cancel(pool_t *p, pool_work_t *w);

static inline pool_work_state_t pool_work_state(const pool_work_t *w) {
  return (pool_work_state_t)atomic_load(&w->ctl->state);
}
static inline int64_t pool_work_started_ms(const pool_work_t *w) {
  return atomic_load_explicit(&w->ctl->started_ms, memory_order_relaxed);
}

/* What GET /workers shows of one worker, read without stopping it. */
typedef enum { POOL_W_STARTING = 0, POOL_W_IDLE, POOL_W_BUSY, POOL_W_STUCK } pool_worker_state_t;
typedef struct pool_worker_info {
  unsigned id;
  pool_kind_t kind;
  int pid;                  /* the worker process; this process for threads */
  pool_worker_state_t state;
  pool_work_t *work;        /* what it runs, or NULL; valid until the loop moves on */
  uint64_t jobs_done;
  uint64_t cpu_ms;
  uint64_t rss_bytes;       /* threads share this process's */
  int64_t started_at_ms;    /* wall clock, when this worker started */
} pool_worker_info_t;

/* Fills `out` with up to `max` workers; returns how many the pool has. Loop thread. */
size_t pool_worker_info(pool_t *p, pool_worker_info_t *out, size_t max);

/* Worker replacements by cause (process pools). */
typedef enum { POOL_RESTART_CRASH = 0, POOL_RESTART_OOM, POOL_RESTART_TIMEOUT_KILL, POOL_RESTART_RECYCLED, POOL_NRESTART } pool_restart_t;
const char *pool_restart_name(pool_restart_t r);
uint64_t pool_restarts(const pool_t *p, pool_restart_t cause);

pool_kind_t pool_kind(const pool_t *p);
unsigned pool_workers(const pool_t *p); /* 1 (the loop) when inline */
unsigned pool_busy(const pool_t *p);    /* workers running an item now */
size_t pool_depth(const pool_t *p);     /* items waiting */
size_t pool_capacity(const pool_t *p);  /* max_queue */

#endif
