/* pool: worker threads, the bounded queue, the done list. See offload/pool.h.
 *
 * Lock rules: `mu` guards the queue (head/tail/depth, item links while queued,
 * ctl state changes QUEUED->RUNNING and QUEUED->IDLE) and `stopping`.
 * Workers hold `mu` only to pop; the loop holds it only to push or unlink one
 * item: both O(1).
 *
 * The done list takes no lock: workers push with a compare-and-swap on its
 * head (a Treiber stack) and the loop takes the whole list with one atomic
 * exchange. So the loop never waits for a worker that the scheduler
 * preempted mid-push (workers run at the lowest priority: a mutex there would
 * be a priority inversion). Push-only plus take-all has no ABA problem.
 *
 * Ordering of a run's writes before the loop reads them (no lock does it):
 * the worker stores ctl->state = DONE (seq_cst) after the run returns, then
 * pushes with a release CAS; the loop either loads state == DONE (a lookup
 * between the two) or takes the list with an acquire exchange (the done
 * callback). Either way it synchronizes with the worker after the run. */
#include "offload/pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

struct pool {
  uv_async_t async; /* worker -> loop wake-up */
  pool_done_cb done;
  void *data;
  pool_config_t cfg;

  pthread_mutex_t mu;
  pthread_cond_t cond;
  pool_work_t *head, *tail; /* queue, FIFO; guarded by mu */
  size_t depth;
  bool stopping;

  _Atomic(pool_work_t *) done_head; /* LIFO, lock-free; reversed when drained */

  _Atomic unsigned busy;
  _Atomic size_t depth_pub; /* copy of depth for lock-free readers */
  pthread_t *threads;
  unsigned nthreads;
};

static void set_worker_priority(int nice_incr) {
  /* SCHED_BATCH tells the scheduler these threads are CPU-bound and need not
   * preempt anyone on wake-up; nice lowers their share so the loop thread
   * (nice 0, SCHED_OTHER) runs first whenever it has something to do. */
  struct sched_param sp = {.sched_priority = 0};
  if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0)
    log_debug("pool: SCHED_BATCH not available");
  if (nice_incr > 0) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (setpriority(PRIO_PROCESS, (id_t)tid, cur + nice_incr) != 0)
      log_debug("pool: setpriority: %s", strerror(errno));
  }
}

static void push_done(pool_t *p, pool_work_t *w) {
  pool_work_t *head = atomic_load_explicit(&p->done_head, memory_order_relaxed);
  do
    w->_next = head; /* published by the release below */
  while (!atomic_compare_exchange_weak_explicit(&p->done_head, &head, w, memory_order_release, memory_order_relaxed));
  uv_async_send(&p->async);
}

/* Takes the oldest queued item and marks it running. Caller holds `mu`; the
 * queue is not empty. */
static pool_work_t *pop_head_locked(pool_t *p) {
  pool_work_t *w = p->head;
  p->head = w->_next;
  if (p->head)
    p->head->_prev = NULL;
  else
    p->tail = NULL;
  p->depth--;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  w->_next = w->_prev = NULL;
  atomic_store_explicit(&w->ctl->started_ms, clock_wall_ms(), memory_order_relaxed);
  atomic_store(&w->ctl->state, POOL_WORK_RUNNING);
  return w;
}

/* Runs a popped item, on a worker or (inline mode) the loop thread. The DONE
 * store comes after every write of the run: readers that see DONE may read
 * its results (see the top of this file). */
static void run_item(pool_t *p, pool_work_t *w) {
  atomic_fetch_add(&p->busy, 1);
  w->run(w);
  atomic_fetch_sub(&p->busy, 1);
  atomic_store(&w->ctl->state, POOL_WORK_DONE);
}

static void *worker_main(void *arg) {
  pool_t *p = arg;
  set_worker_priority(p->cfg.nice);
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (p->head == NULL && !p->stopping)
      pthread_cond_wait(&p->cond, &p->mu);
    if (p->stopping) {
      pthread_mutex_unlock(&p->mu);
      break;
    }
    pool_work_t *w = pop_head_locked(p);
    pthread_mutex_unlock(&p->mu);

    run_item(p, w);
    push_done(p, w);
  }
  return NULL;
}

/* Loop thread: hand every finished item to the owner, oldest first. */
static void drain_done(pool_t *p) {
  if (!atomic_load_explicit(&p->done_head, memory_order_relaxed))
    return; /* a wake-up whose items an earlier one already took */
  pool_work_t *list = atomic_exchange_explicit(&p->done_head, NULL, memory_order_acquire);
  pool_work_t *rev = NULL;
  while (list) {
    pool_work_t *next = list->_next;
    list->_next = rev;
    rev = list;
    list = next;
  }
  while (rev) {
    pool_work_t *next = rev->_next;
    rev->_next = NULL;
    p->done(rev, p->data);
    rev = next;
  }
}

/* Inline mode: run the oldest queued item here, on the loop thread. One per
 * wake-up, so the loop handles I/O between jobs (and only then). */
static void run_one_inline(pool_t *p) {
  pthread_mutex_lock(&p->mu);
  pool_work_t *w = p->stopping || !p->head ? NULL : pop_head_locked(p);
  bool more = p->head != NULL;
  pthread_mutex_unlock(&p->mu);
  if (!w)
    return;
  run_item(p, w);
  p->done(w, p->data);
  if (more)
    uv_async_send(&p->async);
}

static void on_async(uv_async_t *h) {
  pool_t *p = h->data;
  drain_done(p);
  if (p->cfg.run_inline)
    run_one_inline(p);
}

pool_t *pool_new(uv_loop_t *loop, const pool_config_t *cfg, pool_done_cb done, void *data) {
  assert((cfg->workers >= 1 || cfg->run_inline) && cfg->max_queue >= 1 && done);
  pool_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->done = done;
  p->data = data;
  p->cfg = *cfg;
  if (cfg->run_inline)
    p->cfg.workers = 0;
  p->threads = calloc(p->cfg.workers ? p->cfg.workers : 1, sizeof *p->threads);
  if (!p->threads)
    goto fail_threads;
  if (pthread_mutex_init(&p->mu, NULL) != 0)
    goto fail_mu;
  if (pthread_cond_init(&p->cond, NULL) != 0)
    goto fail_cond;
  if (uv_async_init(loop, &p->async, on_async) != 0)
    goto fail_async;
  p->async.data = p;
  for (; p->nthreads < p->cfg.workers; p->nthreads++) {
    int rc = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
    if (rc != 0) {
      log_error("pool: cannot start worker %u: %s", p->nthreads, strerror(rc));
      pool_free(p); /* stops the ones that started */
      return NULL;
    }
  }
  return p;

fail_async:
  pthread_cond_destroy(&p->cond);
fail_cond:
  pthread_mutex_destroy(&p->mu);
fail_mu:
  free(p->threads);
fail_threads:
  free(p);
  return NULL;
}

static void on_async_closed(uv_handle_t *h) {
  pool_t *p = h->data;
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->mu);
  free(p->threads);
  free(p);
}

void pool_free(pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pool_work_t *never = p->head;
  p->head = p->tail = NULL;
  p->depth = 0;
  atomic_store(&p->depth_pub, 0);
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->mu);

  for (unsigned i = 0; i < p->nthreads; i++)
    pthread_join(p->threads[i], NULL);
  drain_done(p);
  /* Items that never ran go back through `done` still marked QUEUED. */
  while (never) {
    pool_work_t *next = never->_next;
    never->_next = never->_prev = NULL;
    p->done(never, p->data);
    never = next;
  }
  uv_close((uv_handle_t *)&p->async, on_async_closed);
}

int pool_submit(pool_t *p, pool_work_t *w) {
  assert(w->run && w->ctl);
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    return OFF_ESTOPPED;
  }
  if (p->depth >= p->cfg.max_queue) {
    pthread_mutex_unlock(&p->mu);
    return OFF_EFULL;
  }
  atomic_store_explicit(&w->ctl->started_ms, 0, memory_order_relaxed);
  atomic_store(&w->ctl->state, POOL_WORK_QUEUED);
  DLIST_APPEND(p->head, p->tail, w, _prev, _next);
  p->depth++;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->mu);
  if (p->cfg.run_inline)
    uv_async_send(&p->async);
  return 0;
}

int pool_remove(pool_t *p, pool_work_t *w) {
  pthread_mutex_lock(&p->mu);
  /* Once pool_free has begun, it owns the never-started items and will hand
   * each to `done`: they are no longer in the queue to be taken back. */
  if (p->stopping || atomic_load(&w->ctl->state) != POOL_WORK_QUEUED) {
    pthread_mutex_unlock(&p->mu);
    return OFF_EBUSY;
  }
  DLIST_UNLINK(p->head, p->tail, w, _prev, _next);
  p->depth--;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  atomic_store(&w->ctl->state, POOL_WORK_IDLE);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

unsigned pool_workers(const pool_t *p) { return p->cfg.run_inline ? 1 : p->nthreads; }
unsigned pool_busy(const pool_t *p) { return atomic_load_explicit(&p->busy, memory_order_relaxed); }
size_t pool_depth(const pool_t *p) { return atomic_load_explicit(&p->depth_pub, memory_order_relaxed); }
size_t pool_capacity(const pool_t *p) { return p->cfg.max_queue; }
