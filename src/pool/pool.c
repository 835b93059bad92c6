/* pool: the queue, the done path, the worker slots and the watchdog, in
 * front of a backend (pool/thread.c or pool/proc.c). See offload/pool.h.
 *
 * Lock rules: `mu` guards the queue (head/tail/depth, item links while queued,
 * ctl state changes QUEUED->RUNNING and QUEUED->IDLE) and `stopping`.
 * Workers hold `mu` only to pop; the loop holds it only to push or unlink one
 * item: both O(1).
 *
 * The done list takes no lock: worker threads push with a compare-and-swap on
 * its head (a Treiber stack) and the loop takes the whole list with one
 * atomic exchange. So the loop never waits for a worker that the scheduler
 * preempted mid-push (workers run at the lowest priority: a mutex there would
 * be a priority inversion). Push-only plus take-all has no ABA problem. A
 * process pool finishes items on the loop thread and calls `done` directly.
 *
 * Ordering of a run's writes before the loop reads them (no lock does it):
 * the worker stores ctl->state = DONE (seq_cst) after the run returns, then
 * pushes with a release CAS; the loop either loads state == DONE (a lookup
 * between the two) or takes the list with an acquire exchange (the done
 * callback). Either way it synchronizes with the worker after the run.
 *
 * The watchdog is a 10 ms timer that runs only while an item with a timeout
 * or a cancel request is in the pool. Each tick looks at every slot's
 * current item: past its deadline it sets timed_out and tells the owner
 * (stall TIMEOUT, once); past deadline or cancel plus kill_grace_ms it asks
 * the backend to stop the worker by force. */
#include "pool/pool_int.h"

#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

#define WATCHDOG_MS 10

/* A pool whose stuck worker threads still use it at exit: kept reachable on
 * purpose (a leak checker would otherwise report it). */
static pool_t *abandoned_pool;

const char *pool_restart_name(pool_restart_t r) {
  static const char *const names[] = {"crash", "oom", "timeout_kill", "recycled"};
  return r < POOL_NRESTART ? names[r] : "unknown";
}

/* ---- watched items ---- */

static void on_watchdog(uv_timer_t *t);

static void watch_update(pool_t *p) {
  bool want = p->watched > 0 && !p->closing;
  if (want == p->watchdog_on)
    return;
  p->watchdog_on = want;
  if (want)
    uv_timer_start(&p->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
  else
    uv_timer_stop(&p->watchdog);
}

static void watch_add(pool_t *p, pool_work_t *w) {
  if (w->_watched)
    return;
  w->_watched = true;
  p->watched++;
  watch_update(p);
}

static void watch_drop(pool_t *p, pool_work_t *w) {
  if (!w->_watched)
    return;
  w->_watched = false;
  p->watched--;
  watch_update(p);
}

static void watch_slot(pool_t *p, pool_slot_t *s, uint64_t now_ns) {
  /* The run number first: a pop bumps it before it sets `current`, so a
   * pop in between is seen as a new run at the next tick at the latest. */
  uint64_t run = atomic_load(&s->runs);
  pool_work_t *w = atomic_load(&s->current);
  if (run != s->seen_run || w != s->seen) {
    s->seen_run = run;
    s->seen = w;
    s->timeout_told = s->forced = false;
  }
  if (!w || s->forced)
    return;
  uint64_t grace_ns = p->cfg.kill_grace_ms * 1000000u;
  uint64_t deadline = atomic_load_explicit(&w->ctl->deadline_ns, memory_order_relaxed);
  uint64_t force_at = 0;
  if (deadline && now_ns >= deadline) {
    atomic_store(&w->ctl->timed_out, true);
    force_at = deadline + grace_ns;
    if (!s->timeout_told) {
      s->timeout_told = true;
      if (p->cfg.stall)
        p->cfg.stall(w, POOL_STALL_TIMEOUT, p->data);
      if (atomic_load(&s->current) != w)
        return; /* the owner's callback cannot finish it, but be safe */
    }
  }
  bool by_cancel = false;
  if (w->_cancel_ms) {
    uint64_t at = w->_cancel_ms * 1000000u + grace_ns;
    if (!force_at || at < force_at) {
      force_at = at;
      by_cancel = true;
    }
  }
  if (!force_at || now_ns < force_at)
    return;
  s->forced = true;
  if (!p->be->force_stop(p, s) && by_cancel && p->cfg.stall)
    p->cfg.stall(w, POOL_STALL_CANCEL, p->data);
}

static void on_watchdog(uv_timer_t *t) {
  pool_t *p = t->data;
  uint64_t now = clock_mono_ns();
  for (unsigned i = 0; i < p->nslots; i++)
    watch_slot(p, &p->slots[i], now);
}

/* ---- the queue ---- */

/* Caller holds `mu`; the queue is not empty. */
static pool_work_t *pop_head_locked(pool_t *p, pool_slot_t *s) {
  pool_work_t *w = p->head;
  p->head = w->_next;
  if (p->head)
    p->head->_prev = NULL;
  else
    p->tail = NULL;
  p->depth--;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  w->_next = w->_prev = NULL;
  uint64_t deadline = w->timeout_ms > 0 ? clock_mono_ns() + (uint64_t)w->timeout_ms * 1000000u : 0;
  atomic_store_explicit(&w->ctl->deadline_ns, deadline, memory_order_relaxed);
  atomic_store_explicit(&w->ctl->started_ms, clock_wall_ms(), memory_order_relaxed);
  atomic_store(&w->ctl->state, POOL_WORK_RUNNING);
  atomic_fetch_add(&s->runs, 1);
  atomic_store(&s->in_task, true);
  atomic_store(&s->current, w);
  atomic_fetch_add(&p->busy, 1);
  return w;
}

void pool__unpop(pool_t *p, pool_slot_t *s, pool_work_t *w) {
  pthread_mutex_lock(&p->mu);
  atomic_store(&s->current, NULL);
  atomic_fetch_sub(&p->busy, 1);
  atomic_store_explicit(&w->ctl->started_ms, 0, memory_order_relaxed);
  atomic_store_explicit(&w->ctl->deadline_ns, 0, memory_order_relaxed);
  if (p->stopping) {
    /* pool_free already handed back the queue: this one goes back like those. */
    atomic_store(&w->ctl->state, POOL_WORK_QUEUED);
    pthread_mutex_unlock(&p->mu);
    watch_drop(p, w);
    p->done(w, p->data);
    return;
  }
  atomic_store(&w->ctl->state, POOL_WORK_QUEUED);
  pool_work_t *before = p->head; /* it was the oldest: back to the front, by order */
  while (before && before->order < w->order)
    before = before->_next;
  w->_next = before;
  w->_prev = before ? before->_prev : p->tail;
  if (w->_prev)
    w->_prev->_next = w;
  else
    p->head = w;
  if (before)
    before->_prev = w;
  else
    p->tail = w;
  p->depth++;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->mu);
}

/* Wakes the loop from a worker thread. Dekker-style with
 * pool__backend_gone (both seq_cst): either it sees us here and waits, or
 * we see `abandoned` and leave the loop alone (a stuck thread that came
 * back after the loop let go of the pool). */
static void wake_loop(pool_t *p, void (*before)(pool_t *p, pool_work_t *w), pool_work_t *w) {
  atomic_fetch_add(&p->finishing, 1);
  if (!atomic_load(&p->abandoned)) {
    if (before)
      before(p, w);
    uv_async_send(&p->async);
  }
  atomic_fetch_sub(&p->finishing, 1);
}

/* A run began: the loop reports it (cfg.started) at its next wake-up. */
static void note_start(pool_t *p, pool_work_t *w) {
  if (!w || !p->cfg.started)
    return;
  atomic_store(&p->starts, true);
  wake_loop(p, NULL, NULL);
}

pool_work_t *pool__pop(pool_t *p, pool_slot_t *s) {
  pthread_mutex_lock(&p->mu);
  pool_work_t *w = p->stopping || !p->head ? NULL : pop_head_locked(p, s);
  pthread_mutex_unlock(&p->mu);
  note_start(p, w);
  return w;
}

pool_work_t *pool__pop_wait(pool_t *p, pool_slot_t *s) {
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->head == NULL && !p->stopping && !p->helps)
      pthread_cond_wait(&p->cond, &p->mu);
    if (p->head || p->stopping)
      break;
    pool__help_locked(p); /* idle: join another item's fan-out */
  }
  pool_work_t *w = p->stopping ? NULL : pop_head_locked(p, s);
  pthread_mutex_unlock(&p->mu);
  note_start(p, w);
  return w;
}

/* The DONE store comes after every write of the run: readers that see DONE
 * may read its results (see the top of this file). */
static void finish(pool_t *p, pool_slot_t *s, pool_work_t *w) {
  atomic_store(&s->current, NULL);
  atomic_fetch_add(&s->jobs_done, 1);
  atomic_fetch_sub(&p->busy, 1);
  atomic_store(&w->ctl->state, POOL_WORK_DONE);
}

static void push_done(pool_t *p, pool_work_t *w) {
  pool_work_t *head = atomic_load_explicit(&p->done_head, memory_order_relaxed);
  do
    w->_next = head; /* published by the release below */
  while (!atomic_compare_exchange_weak_explicit(&p->done_head, &head, w, memory_order_release, memory_order_relaxed));
}

void pool__finish_async(pool_t *p, pool_slot_t *s, pool_work_t *w) {
  finish(p, s, w);
  wake_loop(p, push_done, w);
}

void pool__finish_here(pool_t *p, pool_slot_t *s, pool_work_t *w) {
  finish(p, s, w);
  watch_drop(p, w);
  p->done(w, p->data);
}

/* A stuck thread's item came back: its slot is not stuck any more (before
 * the item's memory can be reused for another). */
static void unstick(pool_t *p, pool_work_t *w) {
  for (unsigned i = 0; i < p->nslots; i++)
    if (p->slots[i].stuck == w)
      p->slots[i].stuck = NULL;
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
    watch_drop(p, rev);
    unstick(p, rev);
    p->done(rev, p->data);
    rev = next;
  }
}

/* Inline mode (thread pools): run the oldest queued item here, on the loop
 * thread. One per wake-up, so the loop handles I/O between jobs (and only then). */
static void run_one_inline(pool_t *p) {
  pool_work_t *w = pool__pop(p, &p->slots[0]);
  if (!w)
    return;
  w->run(w);
  pool__finish_here(p, &p->slots[0], w);
  pthread_mutex_lock(&p->mu);
  bool more = p->head != NULL;
  pthread_mutex_unlock(&p->mu);
  if (more)
    uv_async_send(&p->async);
}

/* Loop thread: tells the owner about runs that started since it last
 * looked. An item read from `current` is the owner's until its done
 * callback, which only this thread runs, so it is safe to hand over. */
static void report_starts(pool_t *p) {
  if (!p->cfg.started || !atomic_exchange(&p->starts, false))
    return;
  for (unsigned i = 0; i < p->nslots; i++) {
    pool_work_t *w = atomic_load(&p->slots[i].current);
    if (w && !w->_start_told) {
      w->_start_told = true;
      p->cfg.started(w, p->data);
    }
  }
}

static void on_async(uv_async_t *h) {
  pool_t *p = h->data;
  drain_done(p);
  report_starts(p);
  if (p->cfg.run_inline)
    run_one_inline(p);
}

/* ---- life ---- */

static void free_pool(pool_t *p) {
  if (p->be->fini)
    p->be->fini(p);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->mu);
  free(p->slots);
  free(p);
}

static void on_handle_closed(uv_handle_t *h) {
  pool_t *p = h->data;
  if (--p->open_handles == 0)
    free_pool(p);
}

pool_t *pool_new(uv_loop_t *loop, const pool_config_t *cfg, pool_done_cb done, void *data) {
  assert((cfg->workers >= 1 || cfg->run_inline) && cfg->max_queue >= 1 && done);
  assert(cfg->kind == POOL_THREADS || (cfg->proc.argv && cfg->proc.encode && cfg->proc.decode && !cfg->run_inline));
  pool_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->loop = loop;
  p->done = done;
  p->data = data;
  p->cfg = *cfg;
  p->be = cfg->kind == POOL_PROCS ? &pool_proc_backend : &pool_thread_backend;
  p->nslots = cfg->run_inline ? 1 : cfg->workers;
  p->slots = calloc(p->nslots, sizeof *p->slots);
  if (!p->slots)
    goto fail_slots;
  for (unsigned i = 0; i < p->nslots; i++)
    p->slots[i].id = cfg->first_id + i;
  if (pthread_mutex_init(&p->mu, NULL) != 0)
    goto fail_mu;
  if (pthread_cond_init(&p->cond, NULL) != 0)
    goto fail_cond;
  if (uv_async_init(loop, &p->async, on_async) != 0)
    goto fail_async;
  p->async.data = p;
  uv_timer_init(loop, &p->watchdog);
  p->watchdog.data = p;
  p->open_handles = 2;
  if (p->be->start(p) != 0) {
    pool_free(p); /* stops what started */
    return NULL;
  }
  return p;

fail_async:
  pthread_cond_destroy(&p->cond);
fail_cond:
  pthread_mutex_destroy(&p->mu);
fail_mu:
  free(p->slots);
fail_slots:
  free(p);
  return NULL;
}

void pool__backend_gone(pool_t *p, bool stuck) {
  if (stuck) {
    atomic_store(&p->abandoned, true);
    while (atomic_load(&p->finishing) > 0)
      sched_yield();
  }
  drain_done(p);
  uv_close((uv_handle_t *)&p->watchdog, stuck ? NULL : on_handle_closed);
  uv_close((uv_handle_t *)&p->async, stuck ? NULL : on_handle_closed);
  if (stuck) {
    log_warn("pool: a worker thread is still stuck in a task; leaving it the pool until exit");
    abandoned_pool = p;
  }
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
  p->closing = true;
  watch_update(p);

  /* Items that never ran go back through `done` still marked QUEUED. */
  while (never) {
    pool_work_t *next = never->_next;
    never->_next = never->_prev = NULL;
    watch_drop(p, never);
    p->done(never, p->data);
    never = next;
  }
  p->be->stop(p); /* calls pool__backend_gone, now or once the workers are gone */
}

static int submit(pool_t *p, pool_work_t *w, bool force) {
  assert(w->ctl && (p->cfg.kind == POOL_PROCS || w->run));
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    return OFF_ESTOPPED;
  }
  if (!force && p->depth >= p->cfg.max_queue) {
    pthread_mutex_unlock(&p->mu);
    return OFF_EFULL;
  }
  w->_home = w->ctl;
  w->_cancel_ms = 0;
  w->_start_told = false;
  atomic_store_explicit(&w->ctl->started_ms, 0, memory_order_relaxed);
  atomic_store(&w->ctl->state, POOL_WORK_QUEUED);
  pool_work_t *after = p->tail;
  while (after && after->order > w->order)
    after = after->_prev;
  if (after == p->tail) {
    DLIST_APPEND(p->head, p->tail, w, _prev, _next);
  } else { /* before after->_next (or at the head) */
    pool_work_t *before = after ? after->_next : p->head;
    w->_prev = after;
    w->_next = before;
    before->_prev = w;
    if (after)
      after->_next = w;
    else
      p->head = w;
  }
  p->depth++;
  atomic_store_explicit(&p->depth_pub, p->depth, memory_order_relaxed);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->mu);
  if (w->timeout_ms > 0)
    watch_add(p, w);
  if (p->cfg.run_inline)
    uv_async_send(&p->async);
  else
    p->be->kick(p);
  return 0;
}

int pool_submit(pool_t *p, pool_work_t *w) { return submit(p, w, false); }
int pool_submit_force(pool_t *p, pool_work_t *w) { return submit(p, w, true); }

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
  watch_drop(p, w);
  return 0;
}

void pool_cancel(pool_t *p, pool_work_t *w) {
  atomic_store(&w->ctl->cancel, true);
  pool_work_state_t st = pool_work_state(w);
  if (st == POOL_WORK_DONE || st == POOL_WORK_IDLE || w->_cancel_ms)
    return;
  w->_cancel_ms = (uint64_t)clock_mono_ms();
  watch_add(p, w);
}

size_t pool_worker_info(pool_t *p, pool_worker_info_t *out, size_t max) {
  for (unsigned i = 0; i < p->nslots && i < max; i++) {
    pool_slot_t *s = &p->slots[i];
    pool_worker_info_t *o = &out[i];
    memset(o, 0, sizeof *o);
    o->id = s->id;
    o->kind = p->cfg.kind;
    o->work = atomic_load(&s->current);
    o->jobs_done = atomic_load(&s->jobs_done);
    o->started_at_ms = atomic_load(&s->started_at_ms);
    o->state = o->work ? POOL_W_BUSY : POOL_W_IDLE;
    if (o->work && o->work == s->stuck)
      o->state = POOL_W_STUCK;
    p->be->info(p, s, o);
  }
  return p->nslots;
}

uint64_t pool_restarts(const pool_t *p, pool_restart_t cause) { return cause < POOL_NRESTART ? p->restarts[cause] : 0; }
pool_kind_t pool_kind(const pool_t *p) { return p->cfg.kind; }
unsigned pool_workers(const pool_t *p) { return p->nslots; }
unsigned pool_busy(const pool_t *p) { return atomic_load_explicit(&p->busy, memory_order_relaxed); }
size_t pool_depth(const pool_t *p) { return atomic_load_explicit(&p->depth_pub, memory_order_relaxed); }
size_t pool_capacity(const pool_t *p) { return p->cfg.max_queue; }
