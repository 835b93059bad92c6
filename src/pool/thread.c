/* pool/thread: the thread backend. One thread per slot pops items, runs them
 * and pushes them onto the done list (pool.c). Threads lower their own CPU
 * priority (nice + SCHED_BATCH) so the loop thread wins the CPU when every
 * core is busy.
 *
 * Nothing can stop a thread from outside: a task that ignores its cancel
 * flag past the grace period leaves its slot `stuck` (force_stop returns
 * false, and the owner finishes the job itself) until the task returns. At
 * pool_free such a thread is not joined. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool_int.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/procfs.h"

typedef struct thread_slot {
  pool_t *pool;
  pool_slot_t *slot;
  pthread_t thread;
  bool started;
} thread_slot_t;

typedef struct thread_backend {
  thread_slot_t *ts;
} thread_backend_t;

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

static void *worker_main(void *arg) {
  thread_slot_t *t = arg;
  pool_t *p = t->pool;
  set_worker_priority(p->cfg.nice);
  pool__set_current(p); /* pool_parallel from a task joins this pool's idle workers */
  pool_work_t *w;
  while ((w = pool__pop_wait(p, t->slot)) != NULL) {
    w->run(w);
    pool__finish_async(p, t->slot, w);
    atomic_store(&t->slot->in_task, false); /* set by the pop, under the queue lock */
  }
  return NULL;
}

static int th_start(pool_t *p) {
  thread_backend_t *b = calloc(1, sizeof *b);
  if (!b)
    return -1;
  p->be_data = b;
  b->ts = calloc(p->nslots, sizeof *b->ts);
  if (!b->ts)
    return -1;
  int64_t now = clock_wall_ms();
  for (unsigned i = 0; i < p->nslots; i++) {
    thread_slot_t *t = &b->ts[i];
    t->pool = p;
    t->slot = &p->slots[i];
    p->slots[i].be = t;
    atomic_store(&p->slots[i].started_at_ms, now);
    if (p->cfg.run_inline)
      continue; /* the loop thread is the worker */
    int rc = pthread_create(&t->thread, NULL, worker_main, t);
    if (rc != 0) {
      log_error("pool: cannot start worker thread %u: %s", i, strerror(rc));
      return -1;
    }
    t->started = true;
  }
  return 0;
}

static void th_kick(pool_t *p) { (void)p; /* pool_submit signalled the condvar */ }

static bool th_force_stop(pool_t *p, pool_slot_t *s) {
  (void)p;
  /* `seen` is the item the watchdog judged; the thread may have moved on. */
  if (atomic_load(&s->current) != s->seen)
    return true;
  s->stuck = s->seen;
  log_warn("pool: worker %u is stuck: its task ignores cancellation past the grace period", s->id);
  return false;
}

/* Joins `t` if it ends within ms milliseconds; true when it did. */
static bool join_within(thread_slot_t *t, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_timedjoin_np(t->thread, NULL, &ts) == 0;
}

static void th_stop(pool_t *p) {
  thread_backend_t *b = p->be_data;
  /* A running item is waited for (offload/pool.h), unless it was told to
   * stop (canceled, or past its deadline): then only until its grace ends,
   * and not at all once stuck. Such a task may not return for a long time
   * (the owner has let go of it), so joining it could block the loop that
   * long: its thread is detached instead, and the pool is left to it (never
   * freed). A thread is busy from its pop (under the queue lock) until
   * after its finish, so one that is just finishing is either seen busy or
   * joined, never freed under it. */
  bool detached = false;
  for (unsigned i = 0; b && b->ts && i < p->nslots; i++) {
    thread_slot_t *t = &b->ts[i];
    if (!t->started)
      continue;
    pool_work_t *w = atomic_load(&t->slot->current);
    if (atomic_load(&t->slot->in_task) && w) {
      uint64_t deadline = atomic_load(&w->ctl->deadline_ns);
      bool told = w->_cancel_ms || atomic_load(&w->ctl->cancel) || (deadline && clock_mono_ns() >= deadline);
      if (w == t->slot->stuck || (told && !join_within(t, p->cfg.kill_grace_ms))) {
        log_warn("pool: worker %u still runs a task that was told to stop; not waiting for it", t->slot->id);
        pthread_detach(t->thread);
        detached = true;
        continue;
      }
      if (told) {
        t->started = false; /* joined within the grace */
        continue;
      }
    }
    pthread_join(t->thread, NULL);
    t->started = false;
  }
  pool__backend_gone(p, detached);
}

static void th_info(pool_t *p, pool_slot_t *s, pool_worker_info_t *out) {
  thread_slot_t *t = s->be;
  out->pid = (int)getpid();
  struct timespec ts;
  clockid_t cid;
  if (t && t->started && pthread_getcpuclockid(t->thread, &cid) == 0 && clock_gettime(cid, &ts) == 0)
    out->cpu_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  else if (p->cfg.run_inline && clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
    out->cpu_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  uint64_t cpu;
  procfs_usage(0, &cpu, &out->rss_bytes); /* the process's: threads share it */
}

static void th_fini(pool_t *p) {
  thread_backend_t *b = p->be_data;
  if (b)
    free(b->ts);
  free(b);
  p->be_data = NULL;
}

const pool_backend_t pool_thread_backend = {
    .start = th_start,
    .kick = th_kick,
    .force_stop = th_force_stop,
    .stop = th_stop,
    .info = th_info,
    .fini = th_fini,
};
