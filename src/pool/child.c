/* pool/child: a worker process. See pool/child.h.
 *
 * Limits: the data segment (RLIMIT_DATA: heap and private mappings, not the
 * shared libraries' text or reserved address space, so a worker with all its
 * libraries starts under a small cap) and CPU seconds per job (a soft
 * RLIMIT_CPU moved forward before each job: SIGXCPU ends the process).
 *
 * Out of memory: a worker that runs out dies the way its code does on a
 * failed allocation (abort, or a fault on NULL). Its fatal-signal handler
 * (on an alternate stack) checks whether the process sits within
 * OOM_SLACK_BYTES of its cap and, if so, sets page->oom before dying, so
 * the server reports out_of_memory rather than a plain crash. Under
 * AddressSanitizer (whose shadow memory cannot live under RLIMIT_DATA) the
 * server sets ASan's own soft RSS limit instead, and the check compares the
 * resident size. */
#include "pool/child.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pool/frame.h"
#include "pool/page.h"
#include "pool/wire.h"
#include "tasks/context.h"
#include "tasks/plugin.h"
#include "tasks/tasks.h"

#define OOM_SLACK_BYTES (16u << 20)

static proc_page_t *page;
static char altstack[64 * 1024];

/* Async-signal-safe: the data (or, under ASan, resident) size in bytes from
 * /proc/self/statm, or 0. */
static uint64_t measured_bytes(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char b[128];
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  if (n <= 0)
    return 0;
  b[n] = '\0';
  /* size resident shared text lib data dt */
#ifdef __SANITIZE_ADDRESS__
  int want = 1;
#else
  int want = 5;
#endif
  int field = 0;
  uint64_t v = 0;
  for (char *p = b; *p && field <= want; p++) {
    if (*p == ' ') {
      field++;
      continue;
    }
    if (field == want && *p >= '0' && *p <= '9')
      v = v * 10 + (uint64_t)(*p - '0');
  }
  return v * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void on_fatal(int sig) {
  if (page && page->memory_mb) {
    uint64_t cap = page->memory_mb << 20;
    if (measured_bytes() + OOM_SLACK_BYTES >= cap)
      atomic_store(&page->oom, 1);
  }
  raise(sig); /* SA_RESETHAND: now with the default action */
}

static void install_fatal_handlers(void) {
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction(sigs[i], &sa, NULL);
}

static int apply_limits(void) {
  if (page->nice > 0) { /* added to the server's own, as for threads */
    struct sched_param sp = {.sched_priority = 0};
    sched_setscheduler(0, SCHED_BATCH, &sp);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, 0);
    if (errno == 0)
      setpriority(PRIO_PROCESS, 0, cur + page->nice);
  }
#ifndef __SANITIZE_ADDRESS__
  if (page->memory_mb) {
    rlim_t cap = (rlim_t)(page->memory_mb << 20);
    struct rlimit rl = {cap, cap};
    if (setrlimit(RLIMIT_DATA, &rl) != 0) {
      fprintf(stderr, "offload worker: setrlimit(RLIMIT_DATA): %s\n", strerror(errno));
      return -1;
    }
  }
#endif
  return 0;
}

/* Moves the soft CPU limit to cpu_s seconds past what this process used so far. */
static void cpu_limit_for_job(void) {
  if (!page->cpu_s)
    return;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return;
  rlim_t used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1);
  struct rlimit rl;
  if (getrlimit(RLIMIT_CPU, &rl) != 0)
    return;
  rl.rlim_cur = used + (rlim_t)page->cpu_s;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
    rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_CPU, &rl);
}

static int run_job(int sock, const plugin_set_t *plugins, const frame_hdr_t *h, const uint8_t *payload, int fd) {
  char name[OFFLOAD_TASK_NAME_MAX + 1];
  json_t *params = NULL;
  task_result_t res;
  memset(&res, 0, sizeof res);
  wire_where_t where;
  if (wire_decode_job(payload, h->len, fd, name, sizeof name, &where, &params) != 0) {
    res.failed = true;
    snprintf(res.err_code, sizeof res.err_code, "internal");
    res.err_message = strdup("The worker could not read the job it was sent.");
  } else {
    const offload_task_def_t *def = tasks_find_builtin(name);
    if (!def)
      def = plugins_find(plugins, name, NULL);
    if (!def) {
      res.failed = true;
      snprintf(res.err_code, sizeof res.err_code, "unknown_task");
      res.err_message = strdup("The worker has no task by this name.");
    } else {
      offload_task_t t = {
          .params = params,
          .progress = &page->ctl.progress,
          .cancel = &page->ctl.cancel,
          .timed_out = &page->ctl.timed_out,
          .deadline_ns = atomic_load(&page->ctl.deadline_ns),
          .result = &res,
          .files_root = where.files_root[0] ? where.files_root : NULL,
          .job_id = where.job_id[0] ? where.job_id : NULL,
          .parallel = pool_parallel, /* not a pool thread here: helper threads, one per core */
      };
      cpu_limit_for_job();
      task_files_clear(&t);
      if (where.has_input && task_input_map(&t, fd, (size_t)where.input_len, where.input_type) != 0)
        offload_task_fail(&t, "internal", "The worker could not map the job's input.");
      else
        task_run(&t, def);
      task_input_unmap(&t);
    }
  }
  json_decref(params);
  void *out = NULL;
  size_t len = 0;
  int rc = wire_encode_result(&res, &out, &len);
  task_result_fini(&res);
  if (rc == 0)
    rc = frame_send(sock, FRAME_RESULT, h->seq, out, len, -1);
  free(out);
  return rc;
}

/* The plug-ins named on our command line (`--plugin FILE` pairs after
 * `worker`), loaded as the server loaded them. Returns 0 or -1 (said on
 * stderr: the server then sees a worker that exits before READY). */
static int load_plugins(int argc, char **argv, plugin_set_t *set) {
  const char *paths[PLUGIN_MAX];
  size_t n = 0;
  for (int i = 2; i < argc; i += 2) {
    if (strcmp(argv[i], "--plugin") != 0 || i + 1 == argc || n == PLUGIN_MAX) {
      fprintf(stderr, "offload worker: unexpected argument \"%s\"\n", argv[i]);
      return -1;
    }
    paths[n++] = argv[i + 1];
  }
  char err[1024];
  if (plugins_load(set, paths, n, err, sizeof err) != 0) {
    fprintf(stderr, "offload worker: %s\n", err);
    return -1;
  }
  return 0;
}

int pool_child_main(int argc, char **argv) {
  /* Die with the server, and close the race where it died before this line. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  void *m = mmap(NULL, PAGE_SIZE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, PAGE_CHILD_PAGE_FD, 0);
  if (m == MAP_FAILED) {
    fprintf(stderr, "offload worker: no shared page on fd %d (this command is started by the server)\n",
            PAGE_CHILD_PAGE_FD);
    return 2;
  }
  page = m;
  close(PAGE_CHILD_PAGE_FD);
  if (page->magic != PAGE_MAGIC || getppid() != page->parent_pid || !atomic_is_lock_free(&page->ctl.progress))
    return 2;
  /* The server handles the terminal's and the service manager's signals for
   * the whole group and stops its workers itself. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  install_fatal_handlers();
  /* Before the limits: a plug-in's libraries load under no cap, as the
   * server's own did. */
  plugin_set_t plugins;
  if (load_plugins(argc, argv, &plugins) != 0)
    return 7;
  if (apply_limits() != 0) {
    plugins_fini(&plugins);
    return 3;
  }

  int sock = PAGE_CHILD_SOCK_FD;
  fcntl(sock, F_SETFD, FD_CLOEXEC);
  size_t cap = FRAME_HDR_SIZE + FRAME_MAX_PAYLOAD;
  uint8_t *buf = malloc(cap);
  if (!buf || frame_send(sock, FRAME_READY, 0, NULL, 0, -1) != 0) {
    free(buf); /* the server let go of us before we were ready */
    munmap(page, PAGE_SIZE_BYTES);
    plugins_fini(&plugins);
    return 4;
  }
  int code = 0;
  for (;;) {
    frame_hdr_t h;
    int fd;
    int n = frame_recv(sock, buf, cap, &h, &fd);
    if (n == 0)
      break; /* the server closed our socket: retire */
    if (n < 0 || h.type != FRAME_JOB) {
      code = 5; /* a broken protocol: let the server replace us */
      if (fd >= 0)
        close(fd);
      break;
    }
    int rc = run_job(sock, &plugins, &h, buf + FRAME_HDR_SIZE, fd);
    if (fd >= 0)
      close(fd);
    if (rc != 0) {
      code = 6;
      break;
    }
  }
  free(buf);
  munmap(page, PAGE_SIZE_BYTES);
  tasks_libraries_fini(); /* this process ran its last task */
  plugins_fini(&plugins); /* their code stays mapped: see tasks/plugin.h */
  return code;
}
