/* pool/spawn: starting a worker process for a slot of the process backend
 * (see pool/proc.c): its socketpair, its shared page, its environment, and
 * uv_spawn of this binary's `worker` subcommand. A start that fails, or a
 * worker that dies before READY, is retried after a growing delay (50 ms
 * doubling to 5 s); a worker not READY within READY_TIMEOUT_MS is killed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool/proc_int.h"
#include "util/clock.h"
#include "util/log.h"

extern char **environ;

/* Ends a worker from the server's side; its exit callback does the rest. */
void proc_doom(proc_worker_t *wk) {
  if (wk->doomed || wk->exited)
    return;
  wk->doomed = true;
  kill(wk->pid, SIGKILL);
}

void proc_on_respawn(uv_timer_t *t) { proc_spawn(t->data); }

/* A worker that has not said READY this long after its start is killed
 * (and, through its exit, replaced with the usual backoff). */
#define READY_TIMEOUT_MS 10000

static void on_ready_timeout(uv_timer_t *t) {
  proc_slot_t *ps = t->data;
  proc_worker_t *wk = ps->cur;
  if (wk && !wk->ready && !wk->exited) {
    log_error("pool: worker %u (pid %d) did not start within %d ms; killing it", ps->slot->id, wk->pid,
              READY_TIMEOUT_MS);
    proc_doom(wk);
  }
}

/* ---- starting a worker ---- */

/* The worker's environment: ours, plus (in sanitizer builds) the options
 * that let its own crash handling and memory cap work. NULL = inherit. */
char **proc_worker_env(const pool_config_t *cfg) {
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

void proc_spawn(proc_slot_t *ps) {
  pool_t *p = ps->pool;
  proc_backend_t *b = proc_be(p);
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
      .exit_cb = proc_on_exit,
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
  uv_poll_start(&wk->poll, UV_READABLE | UV_DISCONNECT, proc_on_readable);
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
  uv_timer_start(&ps->respawn, proc_on_respawn, delay > 5000 ? 5000 : delay, 0);
}

