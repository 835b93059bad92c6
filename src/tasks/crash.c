/* crash: a test-only task (offered only under --enable-test-tasks) that
 * breaks its worker on purpose, so the suite can prove the server survives:
 *   segv           writes to a page it may not touch (a real SIGSEGV)
 *   abort          abort() (SIGABRT)
 *   exit           _exit(3) in the middle of the job
 *   oom            allocates and touches 1 MiB blocks until malloc fails,
 *                  then aborts the way glib's g_malloc does; it refuses to
 *                  start in a worker without a memory cap (--worker-memory-mb)
 *   hang           loops forever, but honours cancellation and timeouts
 *   ignore-cancel  loops forever and never checks for cancellation
 * It always runs in a worker process (isolation PROCESS), whatever
 * --isolation says: these would take a threaded server down with them. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tasks/tasks.h"

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static bool memory_capped(void) {
#ifdef __SANITIZE_ADDRESS__
  const char *o = getenv("ASAN_OPTIONS");
  return o && strstr(o, "soft_rss_limit_mb=");
#else
  struct rlimit rl;
  return getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY;
#endif
}

static void eat_memory(offload_task_t *t) {
  if (!memory_capped()) {
    offload_task_fail(t, "no_memory_limit", "crash mode oom needs a worker memory cap (--worker-memory-mb).");
    return;
  }
  enum { BLOCK = 1 << 20 };
  void **blocks = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (offload_task_canceled(t))
      break;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 256;
      void **nb = realloc(blocks, ncap * sizeof *nb);
      if (!nb)
        abort();
      blocks = nb;
      cap = ncap;
    }
    void *b = malloc(BLOCK);
    if (!b)
      abort(); /* what g_malloc does on failure */
    memset(b, 0xA5, BLOCK);
    blocks[n++] = b;
  }
  for (size_t i = 0; i < n; i++)
    free(blocks[i]);
  free(blocks);
}

static void crash_run(offload_task_t *t) {
  const char *mode = offload_task_param_str(t, "mode", "");
  offload_task_progress(t, 0.5);
  if (strcmp(mode, "segv") == 0) {
    volatile char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
      p[0] = 1;
    raise(SIGSEGV); /* not reached */
  } else if (strcmp(mode, "abort") == 0) {
    abort();
  } else if (strcmp(mode, "exit") == 0) {
    _exit(3);
  } else if (strcmp(mode, "oom") == 0) {
    eat_memory(t);
  } else if (strcmp(mode, "hang") == 0) {
    while (!offload_task_canceled(t))
      nap_ms(1);
  } else if (strcmp(mode, "ignore-cancel") == 0) {
    for (;;)
      nap_ms(10);
  }
}

static const char *const crash_modes[] = {"segv", "abort", "exit", "oom", "hang", "ignore-cancel", NULL};

static const offload_param_spec_t crash_params[] = {
    {.name = "mode", .type = OFFLOAD_PARAM_STRING, .required = true, .choices = crash_modes},
};

const offload_task_def_t task_crash = {
    .name = "crash",
    .description = "Test only: breaks its worker process on purpose (mode: segv, abort, exit, oom, hang, "
                   "ignore-cancel).",
    .run = crash_run,
    .params = crash_params,
    .nparams = 1,
    .isolation = OFFLOAD_ISOLATION_PROCESS,
    .test_only = true,
};
