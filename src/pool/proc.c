/* pool/proc: the process backend. Each slot is served by one worker process
 * at a time (`offload worker`, pool/child.c), started with uv_spawn: exec'd,
 * never a bare fork of the threaded server.
 *
 * Everything here runs on the loop thread and never blocks: a worker's
 * socket (SOCK_SEQPACKET, non-blocking on our side) is watched with a
 * uv_poll_t; a job goes out as one JOB frame to an idle worker (whose socket
 * buffer is empty, so the send cannot block) and comes back as one RESULT
 * frame; progress and cancel sit in the worker's shared page (pool/page.h)
 * while it runs, and are copied back into the item's own control slot when
 * it ends. uv_spawn itself forks on this thread (libuv has no other way):
 * that costs a fraction of a millisecond, once per worker start.
 *
 * A worker ends in one of four ways, and its slot gets a new process at
 * once in each:
 *   - it dies (signal or exit): its item, if any, ends with fault CRASH, or
 *     OOM when the page says it died at its memory limit;
 *   - we kill it (SIGKILL) because its item ran past deadline or cancel plus
 *     grace: fault KILLED;
 *   - it reaches max_jobs: we close its socket and it exits by itself;
 *   - the pool stops: the same, for every worker.
 * An item is finished only from the exit callback (for a death) or from its
 * RESULT frame, and only then may the slot take the next one, so a slot
 * never has two items. A worker that dies before it says READY is restarted
 * after a growing delay (50 ms doubling to 5 s), so a worker that cannot
 * start (say, a memory cap below what it needs) does not spin.
 *
 * Files: this one (jobs in and out, exits, the backend's operations) and
 * spawn.c (starting a worker), sharing pool/proc_int.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool/frame.h"
#include "pool/page.h"
#include "pool/pool_int.h"
#include "pool/proc_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/procfs.h"


#include "pool/proc_int.h"

static void pr_kick(pool_t *p);


/* ---- teardown of one worker ---- */

void proc_maybe_gone(pool_t *p) {
  proc_backend_t *b = proc_be(p);
  if (b->stopping && !b->gone && b->live == 0 && b->timers_open == 0) {
    b->gone = true;
    pool__backend_gone(p, false);
  }
}

void proc_on_handle_closed(uv_handle_t *h) {
  proc_worker_t *wk = h->data;
  if (--wk->handles > 0)
    return;
  pool_t *p = wk->pool;
  if (wk->page)
    munmap(wk->page, PAGE_SIZE_BYTES);
  free(wk);
  proc_be(p)->live--;
  proc_maybe_gone(p);
}

static void stop_poll(proc_worker_t *wk) {
  if (wk->poll_on) {
    uv_poll_stop(&wk->poll);
    wk->poll_on = false;
  }
}

/* Closes our end of the socket: an idle worker reads EOF and exits. */
static void close_socket(proc_worker_t *wk) {
  stop_poll(wk);
  if (wk->sock >= 0) {
    uv_close((uv_handle_t *)&wk->poll, proc_on_handle_closed);
    close(wk->sock);
    wk->sock = -1;
  }
}

/* Detaches a worker from its slot (it will exit; the slot gets another). */
static void retire(proc_worker_t *wk) {
  if (wk->ps && wk->ps->cur == wk)
    wk->ps->cur = NULL;
  wk->ps = NULL;
  close_socket(wk);
}

/* ---- items ---- */

/* Ends the worker's item: the page's live words go back to the item's own
 * slot, and `done` runs. */
static void finish_item(proc_worker_t *wk) {
  pool_slot_t *s = wk->slot;
  pool_work_t *w = wk->w;
  pool_ctl_t *home = w->_home;
  pool_ctl_t *pg = &wk->page->ctl;
  double prog = atomic_load(&pg->progress);
  if (prog > atomic_load(&home->progress))
    atomic_store(&home->progress, prog);
  if (atomic_load(&pg->timed_out))
    atomic_store(&home->timed_out, true);
  if (atomic_load(&pg->cancel))
    atomic_store(&home->cancel, true);
  atomic_store(&home->deadline_ns, atomic_load(&pg->deadline_ns));
  atomic_store(&home->started_ms, atomic_load(&pg->started_ms));
  atomic_store(&home->state, POOL_WORK_RUNNING);
  w->ctl = home;
  wk->w = NULL;
  pool__finish_here(wk->pool, s, w);
}

static void dispatch(proc_worker_t *wk) {
  pool_t *p = wk->pool;
  pool_slot_t *s = wk->ps->slot;
  pool_work_t *w = pool__pop(p, s);
  if (!w)
    return;
  proc_backend_t *b = proc_be(p);
  pool_ctl_t *home = w->ctl, *pg = &wk->page->ctl;
  atomic_store(&pg->progress, atomic_load(&home->progress));
  atomic_store(&pg->cancel, atomic_load(&home->cancel));
  atomic_store(&pg->timed_out, false);
  atomic_store(&pg->deadline_ns, atomic_load(&home->deadline_ns));
  atomic_store(&pg->started_ms, atomic_load(&home->started_ms));
  atomic_store(&pg->fault, 0);
  atomic_store(&pg->state, POOL_WORK_RUNNING);
  w->ctl = pg;
  wk->w = w;
  wk->seq = ++b->next_seq;

  void *payload = NULL;
  size_t len = 0;
  int fd = -1;
  int rc = p->cfg.proc.encode(w, &payload, &len, &fd);
  if (rc == 0) {
    rc = frame_send(wk->sock, FRAME_JOB, wk->seq, payload, len, fd);
    if (rc != 0) {
      /* The worker is gone or broken (it died before we noticed): the job
       * never reached it. It goes back to the front of the queue for the
       * next worker, and this one is replaced. */
      log_warn("pool: worker %u (pid %d) cannot take a job (%s); replacing it", s->id, wk->pid, strerror(errno));
      w->ctl = w->_home;
      wk->w = NULL;
      pool__unpop(p, s, w);
      proc_doom(wk);
      pr_kick(p); /* another worker may be free for it now */
    }
  } else {
    /* The item cannot be put in a frame (out of memory): it ends as its
     * worker's fault would, and the worker stays. */
    log_warn("pool: cannot encode a job for worker %u: %s", s->id, err_str(rc));
    atomic_store(&w->_home->fault, POOL_FAULT_CRASH);
    atomic_store(&w->_home->fault_signal, 0);
    atomic_store(&w->_home->fault_status, -1);
    finish_item(wk);
  }
  free(payload);
  if (fd >= 0)
    close(fd);
}

static void kick_slot(proc_slot_t *ps) {
  proc_worker_t *wk = ps->cur;
  if (wk && wk->ready && !wk->w && !wk->exited && !wk->doomed && wk->sock >= 0)
    dispatch(wk);
}

static void pr_kick(pool_t *p) {
  proc_backend_t *b = proc_be(p);
  for (unsigned i = 0; i < p->nslots && pool_depth(p) > 0; i++)
    kick_slot(&b->ps[i]);
}

/* ---- frames from a worker ---- */

static void on_result(proc_worker_t *wk, const frame_hdr_t *h, const uint8_t *payload, int fd) {
  pool_t *p = wk->pool;
  if (wk->doomed)
    return; /* killed already (its job ran past grace): the exit decides */
  if (!wk->w || h->seq != wk->seq || !wk->ps) {
    log_warn("pool: worker pid %d sent a result for no job; replacing it", wk->pid);
    proc_doom(wk);
    return;
  }
  if (p->cfg.proc.decode(wk->w, payload, h->len, fd) != 0) {
    log_warn("pool: worker pid %d sent an unreadable result; replacing it", wk->pid);
    proc_doom(wk); /* the exit callback ends the item as a crash */
    return;
  }
  proc_slot_t *ps = wk->ps;
  wk->jobs++;
  if (p->cfg.proc.max_jobs && wk->jobs >= p->cfg.proc.max_jobs) {
    /* Retire it before `done` runs, so nothing is dispatched to it. The
     * item still ends through this slot. */
    p->restarts[POOL_RESTART_RECYCLED]++;
    proc_worker_t *old = wk;
    pool_work_t *w = wk->w;
    retire(old);
    old->w = w;
    finish_item(old);
    if (!proc_be(p)->stopping)
      proc_spawn(ps);
    return;
  }
  finish_item(wk);
  kick_slot(ps);
}

void proc_on_readable(uv_poll_t *h, int status, int events) {
  proc_worker_t *wk = h->data;
  proc_backend_t *b = proc_be(wk->pool);
  (void)events;
  if (status < 0) {
    stop_poll(wk); /* the exit callback follows */
    return;
  }
  /* At most a few frames per wake-up: a worker sends one per job. */
  for (int k = 0; k < 8 && wk->sock >= 0; k++) {
    frame_hdr_t fh;
    int fd;
    int n = frame_recv(wk->sock, b->rbuf, FRAME_HDR_SIZE + FRAME_MAX_PAYLOAD, &fh, &fd);
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) {
      /* EOF (it is exiting, or sent an empty packet) or a malformed frame:
       * either way this worker is done; its exit callback follows. */
      if (n < 0)
        log_warn("pool: bad frame from worker pid %d; replacing it", wk->pid);
      stop_poll(wk);
      proc_doom(wk);
      return;
    }
    if (fh.type == FRAME_READY && !wk->ready) {
      wk->ready = true;
      if (wk->ps) {
        uv_timer_stop(&wk->ps->respawn);
        wk->ps->fast_failures = 0;
        kick_slot(wk->ps);
      }
    } else if (fh.type == FRAME_RESULT) {
      on_result(wk, &fh, b->rbuf + FRAME_HDR_SIZE, fd);
    } else {
      log_warn("pool: unexpected frame %d from worker pid %d; replacing it", fh.type, wk->pid);
      proc_doom(wk);
    }
    if (fd >= 0)
      close(fd);
  }
}

/* ---- exits ---- */

void proc_on_exit(uv_process_t *proc, int64_t status, int term_signal) {
  proc_worker_t *wk = proc->data;
  pool_t *p = wk->pool;
  proc_backend_t *b = proc_be(p);
  wk->exited = true;
  proc_slot_t *ps = wk->ps;
  bool was_ready = wk->ready;
  pool_restart_t cause = POOL_RESTART_CRASH;
  if (wk->killed)
    cause = POOL_RESTART_TIMEOUT_KILL;
  else if (atomic_load(&wk->page->oom))
    cause = POOL_RESTART_OOM;
  if (ps && !b->stopping) /* not one we retired ourselves */
    p->restarts[cause]++;
  if (wk->w) {
    pool_ctl_t *home = wk->w->_home;
    atomic_store(&home->fault, cause == POOL_RESTART_TIMEOUT_KILL ? POOL_FAULT_KILLED
                               : cause == POOL_RESTART_OOM        ? POOL_FAULT_OOM
                                                                  : POOL_FAULT_CRASH);
    atomic_store(&home->fault_signal, term_signal);
    atomic_store(&home->fault_status, term_signal ? -1 : (int)status);
    finish_item(wk);
  }
  if (ps && !b->stopping)
    log_warn("pool: worker %u (pid %d) %s %d%s; starting another", ps->slot->id, wk->pid,
             term_signal ? "died on signal" : "exited with status", term_signal ? term_signal : (int)status,
             wk->killed ? " (killed: its job would not stop)" : "");
  if (ps)
    retire(wk);
  else
    close_socket(wk);
  uv_close((uv_handle_t *)&wk->proc, proc_on_handle_closed);
  if (!ps || b->stopping)
    return;
  if (!was_ready && ++ps->fast_failures > 1) {
    uint64_t delay = (uint64_t)50 << (ps->fast_failures < 9 ? ps->fast_failures - 2 : 7);
    if (delay > 5000)
      delay = 5000;
    log_error("pool: worker %u keeps dying before it is ready; next try in %llu ms", ps->slot->id,
              (unsigned long long)delay);
    uv_timer_start(&ps->respawn, proc_on_respawn, delay, 0);
    return;
  }
  proc_spawn(ps);
}

/* ---- the backend ---- */

static int pr_start(pool_t *p) {
  proc_backend_t *b = calloc(1, sizeof *b);
  if (!b)
    return OFF_ENOMEM;
  p->be_data = b;
  b->ps = calloc(p->nslots, sizeof *b->ps);
  b->rbuf = malloc(FRAME_HDR_SIZE + FRAME_MAX_PAYLOAD);
  if (!b->ps || !b->rbuf)
    return OFF_ENOMEM;
  b->env = proc_worker_env(&p->cfg);
  for (unsigned i = 0; i < p->nslots; i++) {
    proc_slot_t *ps = &b->ps[i];
    ps->pool = p;
    ps->slot = &p->slots[i];
    p->slots[i].be = ps;
    uv_timer_init(p->loop, &ps->respawn);
    ps->respawn.data = ps;
    b->timers_open++;
  }
  for (unsigned i = 0; i < p->nslots; i++)
    proc_spawn(&b->ps[i]);
  return 0;
}

static bool pr_force_stop(pool_t *p, pool_slot_t *s) {
  (void)p;
  proc_slot_t *ps = s->be;
  proc_worker_t *wk = ps->cur;
  if (!wk || !wk->w || wk->w != atomic_load(&s->current) || wk->exited)
    return true; /* it is already ending */
  log_warn("pool: worker %u (pid %d): its job did not stop within the grace period; killing it", s->id, wk->pid);
  wk->killed = true;
  proc_doom(wk);
  return true;
}

static void on_timer_closed(uv_handle_t *h) {
  proc_slot_t *ps = h->data;
  proc_backend_t *b = proc_be(ps->pool);
  b->timers_open--;
  proc_maybe_gone(ps->pool);
}

static void pr_stop(pool_t *p) {
  proc_backend_t *b = proc_be(p);
  if (!b) {
    pool__backend_gone(p, false);
    return;
  }
  b->stopping = true;
  for (unsigned i = 0; b->ps && i < p->nslots; i++) {
    proc_slot_t *ps = &b->ps[i];
    if (ps->pool && !uv_is_closing((uv_handle_t *)&ps->respawn))
      uv_close((uv_handle_t *)&ps->respawn, on_timer_closed);
    proc_worker_t *wk = ps->cur;
    if (!wk)
      continue;
    if (wk->w)
      proc_doom(wk); /* a job still running at stop: it ends as crashed */
    /* Keep it attached until it exits, so its item finishes on this slot. */
    stop_poll(wk);
    if (!wk->w)
      retire(wk);
  }
  proc_maybe_gone(p);
}

static void pr_info(pool_t *p, pool_slot_t *s, pool_worker_info_t *out) {
  (void)p;
  proc_slot_t *ps = s->be;
  proc_worker_t *wk = ps ? ps->cur : NULL;
  if (!wk) { /* between processes (a start is being retried) */
    out->state = POOL_W_STARTING;
    out->pid = 0;
    out->jobs_done = 0;
    return;
  }
  out->pid = wk->pid;
  out->started_at_ms = wk->started_at_ms;
  out->jobs_done = wk->jobs; /* this process's, like its cpu and start time */
  if (!wk->ready)
    out->state = POOL_W_STARTING;
  procfs_usage(wk->pid, &out->cpu_ms, &out->rss_bytes);
}

static void pr_fini(pool_t *p) {
  proc_backend_t *b = proc_be(p);
  if (!b)
    return;
  if (b->env) {
    for (char **e = b->env; *e; e++)
      free(*e);
    free(b->env);
  }
  free(b->rbuf);
  free(b->ps);
  free(b);
  p->be_data = NULL;
}

const pool_backend_t pool_proc_backend = {
    .start = pr_start,
    .kick = pr_kick,
    .force_stop = pr_force_stop,
    .stop = pr_stop,
    .info = pr_info,
    .fini = pr_fini,
};
