/* pool/proc_int: what the process backend's two files share: proc.c (jobs
 * in and out, exits, the backend's operations) and spawn.c (starting a
 * worker: its socketpair, shared page, environment and uv_spawn). Loop
 * thread only, like all of the process backend. */
#ifndef OFFLOAD_POOL_PROC_INT_H
#define OFFLOAD_POOL_PROC_INT_H

#include "pool/page.h"
#include "pool/pool_int.h"

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

static inline proc_backend_t *proc_be(pool_t *p) { return p->be_data; }

/* ---- spawn.c ---- */
/* Starts a process for the slot (on failure: retries after a growing delay). */
void proc_spawn(proc_slot_t *ps);
/* The workers' environment (NULL: inherit). */
char **proc_worker_env(const pool_config_t *cfg);
void proc_on_respawn(uv_timer_t *t);
/* Ends a worker from the server's side (SIGKILL, once); its exit does the rest. */
void proc_doom(proc_worker_t *wk);

/* ---- proc.c: the callbacks spawn.c installs ---- */
void proc_on_readable(uv_poll_t *h, int status, int events);
void proc_on_exit(uv_process_t *proc, int64_t status, int term_signal);
void proc_on_handle_closed(uv_handle_t *h);
void proc_maybe_gone(pool_t *p);

#endif
