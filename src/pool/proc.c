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
 * start (say, a memory cap below what it needs) does not spin. */
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
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/procfs.h"

extern char **environ;

typedef struct proc_worker proc_worker_t;

typedef struct proc_slot {
  pool_t *pool;
  pool_slot_t *slot;
  proc_worker_t *cur; /* the process serving the slot (perhaps still starting) */
  uv_timer_t respawn;      /* the next start after a failure, or the READY deadline */
  unsigned fast_failures; /* deaths before READY in a row */
} proc_slot_t;

struct proc_worker {
  pool_t *pool;
  proc_slot_t *ps; /* NULL once retired (recycled or stopping) */
  pool_slot_t *slot; /* the slot it serves or served; items end through it */
  uv_process_t proc;
  uv_poll_t poll;
  int sock;
  proc_page_t *page;
  int pid;
  int handles; /* open handles; freed when 0 after exit */
  bool ready, exited, poll_on;
  bool killed; /* by the watchdog: its job would not stop (cause timeout_kill) */
  bool doomed; /* we sent it SIGKILL for any reason: never dispatch to it again */
  pool_work_t *w; /* the item it runs */
  uint64_t seq;
  uint64_t jobs;
  int64_t started_at_ms;
};

typedef struct proc_backend {
  proc_slot_t *ps;
  char **env; /* NULL: inherit ours */
  uint8_t *rbuf;
  uint64_t next_seq;
  size_t live; /* workers not yet freed */
  int timers_open;
  bool stopping, gone;
} proc_backend_t;

static void spawn(proc_slot_t *ps);
static void pr_kick(pool_t *p);

/* Ends a worker from the server's side; its exit callback does the rest. */
static void doom(proc_worker_t *wk) {
  if (wk->doomed || wk->exited)
    return;
  wk->doomed = true;
  kill(wk->pid, SIGKILL);
}

static proc_backend_t *be_of(pool_t *p) { return p->be_data; }

/* ---- teardown of one worker ---- */

static void maybe_gone(pool_t *p) {
  proc_backend_t *b = be_of(p);
  if (b->stopping && !b->gone && b->live == 0 && b->timers_open == 0) {
    b->gone = true;
    pool__backend_gone(p, false);
  }
}

static void on_worker_handle_closed(uv_handle_t *h) {
  proc_worker_t *wk = h->data;
  if (--wk->handles > 0)
    return;
  pool_t *p = wk->pool;
  if (wk->page)
    munmap(wk->page, PAGE_SIZE_BYTES);
  free(wk);
  be_of(p)->live--;
  maybe_gone(p);
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
    uv_close((uv_handle_t *)&wk->poll, on_worker_handle_closed);
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
  proc_backend_t *b = be_of(p);
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
      doom(wk);
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
  proc_backend_t *b = be_of(p);
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
    doom(wk);
    return;
  }
  if (p->cfg.proc.decode(wk->w, payload, h->len, fd) != 0) {
    log_warn("pool: worker pid %d sent an unreadable result; replacing it", wk->pid);
    doom(wk); /* the exit callback ends the item as a crash */
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
    if (!be_of(p)->stopping)
      spawn(ps);
    return;
  }
  finish_item(wk);
  kick_slot(ps);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  proc_worker_t *wk = h->data;
  proc_backend_t *b = be_of(wk->pool);
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
      doom(wk);
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
      doom(wk);
    }
    if (fd >= 0)
      close(fd);
  }
}

/* ---- exits ---- */

static void on_respawn(uv_timer_t *t) { spawn(t->data); }

/* A worker that has not said READY this long after its start is killed
 * (and, through its exit, replaced with the usual backoff). */
#define READY_TIMEOUT_MS 10000

static void on_ready_timeout(uv_timer_t *t) {
  proc_slot_t *ps = t->data;
  proc_worker_t *wk = ps->cur;
  if (wk && !wk->ready && !wk->exited) {
    log_error("pool: worker %u (pid %d) did not start within %d ms; killing it", ps->slot->id, wk->pid,
              READY_TIMEOUT_MS);
    doom(wk);
  }
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
  proc_worker_t *wk = proc->data;
  pool_t *p = wk->pool;
  proc_backend_t *b = be_of(p);
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
  uv_close((uv_handle_t *)&wk->proc, on_worker_handle_closed);
  if (!ps || b->stopping)
    return;
  if (!was_ready && ++ps->fast_failures > 1) {
    uint64_t delay = (uint64_t)50 << (ps->fast_failures < 9 ? ps->fast_failures - 2 : 7);
    if (delay > 5000)
      delay = 5000;
    log_error("pool: worker %u keeps dying before it is ready; next try in %llu ms", ps->slot->id,
              (unsigned long long)delay);
    uv_timer_start(&ps->respawn, on_respawn, delay, 0);
    return;
  }
  spawn(ps);
}

/* ---- starting a worker ---- */

/* The worker's environment: ours, plus (in sanitizer builds) the options
 * that let its own crash handling and memory cap work. NULL = inherit. */
static char **worker_env(const pool_config_t *cfg) {
#ifdef __SANITIZE_ADDRESS__
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 2, sizeof *env);
  if (!env)
    return NULL;
  const char *old = getenv("ASAN_OPTIONS");
  char limit[96] = "";
  if (cfg->proc.memory_mb)
    snprintf(limit, sizeof limit, ":soft_rss_limit_mb=%llu:allocator_may_return_null=1",
             (unsigned long long)cfg->proc.memory_mb);
  char opts[1024];
  snprintf(opts, sizeof opts,
           "ASAN_OPTIONS=%.512s%shandle_segv=0:handle_sigbus=0:handle_abort=0:handle_sigfpe=0:handle_sigill=0"
           ":allow_user_segv_handler=1%s",
           old ? old : "", old && *old ? ":" : "", limit);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0)
      env[k++] = strdup(environ[i]);
  env[k++] = strdup(opts);
  env[k] = NULL;
  return env;
#else
  (void)cfg;
  return NULL;
#endif
}

static void on_failed_spawn_closed(uv_handle_t *h) { free(h->data); }

static void spawn(proc_slot_t *ps) {
  pool_t *p = ps->pool;
  proc_backend_t *b = be_of(p);
  int sv[2] = {-1, -1}, mfd = -1;
  void *page = MAP_FAILED;
  proc_worker_t *wk = calloc(1, sizeof *wk);
  if (!wk)
    goto fail;
  wk->pool = p;
  wk->sock = -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    goto fail;
  mfd = memfd_create("offload-worker-page", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, PAGE_SIZE_BYTES) != 0)
    goto fail;
  page = mmap(NULL, PAGE_SIZE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (page == MAP_FAILED)
    goto fail;
  wk->page = page;
  wk->page->magic = PAGE_MAGIC;
  wk->page->parent_pid = (int32_t)getpid();
  wk->page->memory_mb = p->cfg.proc.memory_mb;
  wk->page->cpu_s = p->cfg.proc.cpu_s;
  wk->page->nice = p->cfg.nice;

  uv_stdio_container_t stdio[5] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = 1},
      {.flags = UV_INHERIT_FD, .data.fd = 2},
      {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
      {.flags = UV_INHERIT_FD, .data.fd = mfd},
  };
  uv_process_options_t opts = {
      .exit_cb = on_exit_cb,
      .file = p->cfg.proc.exe ? p->cfg.proc.exe : "/proc/self/exe",
      .args = (char **)p->cfg.proc.argv,
      .env = b->env,
      .stdio_count = 5,
      .stdio = stdio,
  };
  wk->proc.data = wk;
  int rc = uv_spawn(p->loop, &wk->proc, &opts);
  if (rc != 0) {
    log_error("pool: cannot start a worker process: %s", uv_strerror(rc));
    /* uv_spawn leaves the handle initialized even when it fails. */
    uv_close((uv_handle_t *)&wk->proc, on_failed_spawn_closed);
    wk = NULL;
    goto fail;
  }
  close(sv[1]);
  close(mfd);
  wk->sock = sv[0];
  fcntl(wk->sock, F_SETFL, fcntl(wk->sock, F_GETFL) | O_NONBLOCK);
  wk->pid = wk->proc.pid;
  wk->handles = 2;
  wk->started_at_ms = clock_wall_ms();
  uv_poll_init(p->loop, &wk->poll, wk->sock);
  wk->poll.data = wk;
  uv_poll_start(&wk->poll, UV_READABLE | UV_DISCONNECT, on_readable);
  wk->poll_on = true;
  wk->ps = ps;
  wk->slot = ps->slot;
  ps->cur = wk;
  b->live++;
  atomic_store(&ps->slot->started_at_ms, wk->started_at_ms);
  uv_timer_start(&ps->respawn, on_ready_timeout, READY_TIMEOUT_MS, 0);
  return;

fail:
  if (page != MAP_FAILED)
    munmap(page, PAGE_SIZE_BYTES);
  if (mfd >= 0)
    close(mfd);
  if (sv[0] >= 0) {
    close(sv[0]);
    close(sv[1]);
  }
  free(wk);
  ps->fast_failures++;
  uint64_t delay = (uint64_t)50 << (ps->fast_failures < 8 ? ps->fast_failures - 1 : 7);
  uv_timer_start(&ps->respawn, on_respawn, delay > 5000 ? 5000 : delay, 0);
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
  b->env = worker_env(&p->cfg);
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
    spawn(&b->ps[i]);
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
  doom(wk);
  return true;
}

static void on_timer_closed(uv_handle_t *h) {
  proc_slot_t *ps = h->data;
  proc_backend_t *b = be_of(ps->pool);
  b->timers_open--;
  maybe_gone(ps->pool);
}

static void pr_stop(pool_t *p) {
  proc_backend_t *b = be_of(p);
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
      doom(wk); /* a job still running at stop: it ends as crashed */
    /* Keep it attached until it exits, so its item finishes on this slot. */
    stop_poll(wk);
    if (!wk->w)
      retire(wk);
  }
  maybe_gone(p);
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
  proc_backend_t *b = be_of(p);
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
