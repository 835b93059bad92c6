/* commands/runner: see run.h. One run, on the worker thread holding the
 * job's pool slot:
 *
 *   <files root>/<job id>/          the job's directory (its outputs land here)
 *   <files root>/<job id>/.run/     the program's working directory, fresh,
 *                                   removed after the run (with its `input`)
 *   <files root>/<job id>/.log      the output's tail, saved at the end
 *
 * The program starts through `offload exec-command` (exec.c: rlimits and a
 * parent-death signal, then execv), detached (setsid: its own process group,
 * pgid = pid), stdin /dev/null, stdout and stderr on pipes read by a private
 * uv loop on this thread; a 20 ms timer checks cancel and timeout. The loop
 * thread is never involved: GET /jobs/<id>/log reads the shared ring.
 *
 * Stopping: on cancel or timeout SIGTERM to the group, SIGKILL when the kill
 * grace has (all but 50 ms) passed, so the group is gone before the pool's
 * watchdog would call this worker stuck. When the program exits the group
 * gets SIGKILL anyway: nothing it started outlives the job. */
#include "commands/run.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "commands/log.h"
#include "store/files.h"
#include "tasks/context.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fault.h"

extern char **environ;

#define TICK_MS 20
#define LINE_MAX_BYTES 4096 /* a line longer than this is parsed by its start */
#define ERR_TAIL 2048       /* stderr's last bytes, for the failure message */
#define PIPE_LINGER_MS 1000 /* after the exit, how long a pipe held by an escapee may stay open */

static const commands_t *cmds;
static unsigned grace_ms = 5000;

void commands_runner_init(commands_t *c, unsigned kill_grace_ms) {
  cmds = c;
  grace_ms = kill_grace_ms;
  for (size_t i = 0; i < c->n; i++) {
    c->tasks[i].def.run = commands_run;
    c->tasks[i].def.isolation = OFFLOAD_ISOLATION_THREAD;
    c->tasks[i].def.timeout_ms = c->tasks[i].timeout_ms;
    c->tasks[i].def.files = true; /* a job directory (the log), and "files" in the job, empty without outputs */
  }
}

typedef struct line {
  char buf[LINE_MAX_BYTES + 1];
  size_t len;
  bool skipping; /* past LINE_MAX_BYTES: drop until the newline */
} line_t;

typedef struct crun {
  offload_task_t *t;
  const commands_task_t *ct;
  uv_loop_t loop;
  uv_process_t proc;
  uv_pipe_t pipes[2]; /* stdout, stderr */
  uv_timer_t tick;
  cmdlog_t *log;
  int pid, open_pipes;
  bool exited, tick_closed;
  int64_t status;
  int signal;
  uint64_t exited_ns, kill_at_ns;
  bool term_sent, kill_sent;
  line_t lines[2];
  char errtail[ERR_TAIL];
  uint64_t errtotal;
  double duration_s; /* ffmpeg: the input's, from its "Duration:" line */
  char buf[64 * 1024];
} crun_t;

/* ---- progress ---- */

static void ffmpeg_line(crun_t *r, int which, const char *s) {
  if (which == 1) { /* stderr: the input's duration, once */
    const char *d = strstr(s, "Duration: ");
    unsigned h, m;
    double sec;
    if (d && r->duration_s <= 0 && sscanf(d + 10, "%u:%u:%lf", &h, &m, &sec) == 3)
      r->duration_s = h * 3600.0 + m * 60.0 + sec;
    return;
  }
  /* stdout: -progress pipe:1 blocks; out_time_us (out_time_ms is
   * microseconds too, misnamed) */
  long long us;
  if (r->duration_s > 0 && sscanf(s, "out_time_us=%lld", &us) == 1 && us >= 0)
    offload_task_progress(r->t, fmin(1.0, (double)us / 1e6 / r->duration_s));
}

static void regex_line(crun_t *r, const char *s) {
  regmatch_t m[2];
  if (regexec(&r->ct->progress_re, s, 2, m, 0) != 0 || m[1].rm_so < 0)
    return;
  char num[64];
  size_t n = (size_t)(m[1].rm_eo - m[1].rm_so);
  if (n == 0 || n >= sizeof num)
    return;
  memcpy(num, s + m[1].rm_so, n);
  num[n] = 0;
  char *end;
  double pct = strtod(num, &end);
  if (*end == 0 && isfinite(pct) && pct >= 0)
    offload_task_progress(r->t, fmin(1.0, pct / 100.0));
}

static void on_line(crun_t *r, int which, const char *s) {
  if (r->ct->progress == COMMANDS_PROGRESS_FFMPEG)
    ffmpeg_line(r, which, s);
  else if (r->ct->progress == COMMANDS_PROGRESS_REGEX)
    regex_line(r, s);
}

/* Splits a piece of one stream into lines (\n or \r: ffmpeg rewrites its
 * status line with \r). */
static void feed_lines(crun_t *r, int which, const char *p, size_t n) {
  line_t *l = &r->lines[which];
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '\n' || c == '\r') {
      if (!l->skipping || l->len) {
        l->buf[l->len] = 0;
        on_line(r, which, l->buf);
      }
      l->len = 0;
      l->skipping = false;
    } else if (l->len < LINE_MAX_BYTES && !l->skipping) {
      l->buf[l->len++] = c ? c : ' ';
    } else if (!l->skipping) {
      l->buf[l->len] = 0;
      on_line(r, which, l->buf); /* the long line's start */
      l->len = 0;
      l->skipping = true;
    }
  }
}

/* ---- the private loop ---- */

static void maybe_finish(crun_t *r) {
  if (r->exited && r->open_pipes == 0 && !r->tick_closed) {
    r->tick_closed = true;
    uv_close((uv_handle_t *)&r->tick, NULL);
  }
}

static void on_pipe_closed(uv_handle_t *h) {
  crun_t *r = h->data;
  r->open_pipes--;
  maybe_finish(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  crun_t *r = h->data;
  (void)suggested;
  *buf = uv_buf_init(r->buf, sizeof r->buf); /* one read at a time on this loop */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  crun_t *r = s->data;
  int which = s == (uv_stream_t *)&r->pipes[1];
  if (n > 0) {
    cmdlog_write(r->log, buf->base, (size_t)n);
    if (which == 1)
      for (ssize_t i = 0; i < n; i++)
        r->errtail[r->errtotal++ % ERR_TAIL] = buf->base[i];
    if (r->ct->progress != COMMANDS_PROGRESS_NONE)
      feed_lines(r, which, buf->base, (size_t)n);
  } else if (n < 0 && !uv_is_closing((uv_handle_t *)s)) {
    uv_close((uv_handle_t *)s, on_pipe_closed);
  }
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig) {
  crun_t *r = p->data;
  r->exited = true;
  r->status = status;
  r->signal = sig;
  r->exited_ns = clock_mono_ns();
  kill(-r->pid, SIGKILL); /* whatever it left in its group */
  uv_close((uv_handle_t *)p, NULL);
  maybe_finish(r);
}

static void on_tick(uv_timer_t *tm) {
  crun_t *r = tm->data;
  uint64_t now = clock_mono_ns();
  if (!r->exited && !r->term_sent && offload_task_canceled(r->t)) {
    r->term_sent = true;
    kill(-r->pid, SIGTERM);
    uint64_t early = grace_ms / 2 < 50 ? grace_ms / 2 : 50;
    r->kill_at_ns = now + (uint64_t)(grace_ms - early) * 1000000u;
  }
  if (!r->exited && r->term_sent && !r->kill_sent && now >= r->kill_at_ns) {
    r->kill_sent = true;
    kill(-r->pid, SIGKILL);
  }
  /* A pipe still open long after the exit: something escaped the group
   * (setsid) with it; stop reading. */
  if (r->exited && now - r->exited_ns > (uint64_t)PIPE_LINGER_MS * 1000000u)
    for (int i = 0; i < 2; i++)
      if (!uv_is_closing((uv_handle_t *)&r->pipes[i]))
        uv_close((uv_handle_t *)&r->pipes[i], on_pipe_closed);
}

/* ---- the job's directories ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int write_all(const char *path, const void *data, size_t len) {
  int fd = FAULT_HIT(FAULT_CMD_DISK) ? (errno = ENOSPC, -1)
                                     : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return -1;
  const char *p = data;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      int e = w < 0 ? errno : ENOSPC;
      close(fd);
      errno = e;
      return -1;
    }
    p += w, len -= (size_t)w;
  }
  return close(fd);
}

/* The last lines of stderr, for a failure's message (at most `cap`). */
static void err_lines(const crun_t *r, char *out, size_t cap) {
  size_t n = r->errtotal < ERR_TAIL ? (size_t)r->errtotal : ERR_TAIL, start = (size_t)(r->errtotal - n);
  size_t want = n < 600 ? n : 600, k = 0;
  for (size_t i = n - want; i < n && k + 1 < cap; i++) {
    char c = r->errtail[(start + i) % ERR_TAIL];
    out[k++] = c == '\r' ? '\n' : c;
  }
  while (k > 0 && (out[k - 1] == '\n' || out[k - 1] == ' '))
    k--;
  out[k] = 0;
}

/* ---- the run ---- */

static void finish(crun_t *r) {
  offload_task_t *t = r->t;
  const commands_task_t *ct = r->ct;
  if (offload_task_canceled(t))
    return; /* canceled or timed out: the pool says which */
  char tail[640];
  err_lines(r, tail, sizeof tail);
  const char *prog = ct->args[0].text;
  if (r->signal) {
    offload_task_fail(t, "command_failed", "%s was killed by signal %d (%s)%s%s", prog, r->signal, strsignal(r->signal),
                      tail[0] ? ". Its last output: " : ".", tail);
    return;
  }
  if (r->status != 0) {
    offload_task_fail(t, "command_failed", "%s exited with status %" PRId64 "%s%s", prog, r->status,
                      tail[0] ? ". Its last output: " : ".", tail);
    return;
  }
  for (size_t i = 0; i < ct->noutputs; i++)
    if (task_file_adopt(t, ct->outputs[i].name, ct->outputs[i].content_type) != 0) {
      if (errno == ENOENT)
        offload_task_fail(t, "missing_output", "%s exited with status 0 but did not write %s.", prog,
                          ct->outputs[i].name);
      else
        offload_task_fail(t, "invalid_output", "Output %s of %s is not a regular file in the job's directory (%s).",
                          ct->outputs[i].name, prog, strerror(errno));
      return;
    }
  offload_task_result_json(t, "{\"exitCode\":0}");
}

static int start(crun_t *r, char **argv, char **envp, const char *cwd) {
  char mem[24], cpu[24];
  snprintf(mem, sizeof mem, "%" PRIu64, r->ct->memory_mb);
  snprintf(cpu, sizeof cpu, "%" PRIu64, r->ct->cpu_seconds);
  size_t argc = 0;
  while (argv[argc])
    argc++;
  char **args = calloc(argc + 6, sizeof *args);
  if (!args)
    return UV_ENOMEM;
  args[0] = "offload";
  args[1] = "exec-command";
  args[2] = mem;
  args[3] = cpu;
  args[4] = (char *)r->ct->program;
  for (size_t i = 0; i < argc; i++)
    args[5 + i] = argv[i];
  uv_stdio_container_t io[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->pipes[0]},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->pipes[1]},
  };
  uv_process_options_t o = {
      .exit_cb = on_proc_exit,
      .file = "/proc/self/exe",
      .args = args,
      .env = envp,
      .cwd = cwd,
      .flags = UV_PROCESS_DETACHED, /* setsid: its own process group */
      .stdio_count = 3,
      .stdio = io,
  };
  r->proc.data = r;
  int rc = uv_spawn(&r->loop, &r->proc, &o);
  free(args);
  if (rc == 0)
    r->pid = r->proc.pid;
  return rc;
}

void commands_run(offload_task_t *t) {
  const commands_task_t *ct = cmds && t->def ? commands_find(cmds, t->def->name) : NULL;
  if (!ct) {
    offload_task_fail(t, "internal", "No command task by this name is loaded.");
    return;
  }
  char jobdir[4096], cwd[4200], input[4300], logpath[4200];
  if (!t->files_root || !t->job_id || files_path(t->files_root, t->job_id, NULL, jobdir, sizeof jobdir) != 0) {
    offload_task_fail(t, "internal", "The job has no directory for its command.");
    return;
  }
  snprintf(cwd, sizeof cwd, "%s/.run", jobdir);
  snprintf(input, sizeof input, "%s/input", cwd);
  snprintf(logpath, sizeof logpath, "%s/" CMDLOG_FILE, jobdir);
  mkdir(t->files_root, 0755);
  mkdir(jobdir, 0755);
  rm_tree(cwd); /* an earlier attempt's */
  if (mkdir(cwd, 0700) != 0) {
    offload_task_fail(t, "internal", "The command's working directory could not be made: %s.", strerror(errno));
    return;
  }
  char **argv = NULL, **envp = NULL;
  crun_t *r = NULL;
  size_t in_len = 0;
  const void *in = offload_task_input(t, &in_len, NULL);
  if (ct->input && write_all(input, in ? in : "", in ? in_len : 0) != 0) {
    offload_task_fail(t, "internal", "The input could not be written for the command: %s.", strerror(errno));
    goto out;
  }
  int rc = commands_render_argv(ct, t->params, ct->input ? input : NULL, jobdir, &argv);
  if (rc == 0)
    rc = commands_render_env(cmds, environ, &envp);
  if (rc != 0 || !(r = calloc(1, sizeof *r))) {
    offload_task_fail(t, rc == OFF_EINVAL ? "invalid_param" : "out_of_memory", "The command line could not be made.");
    goto out;
  }
  r->t = t;
  r->ct = ct;
  if (!(r->log = cmdlog_open(t->job_id)) || uv_loop_init(&r->loop) != 0) {
    offload_task_fail(t, "out_of_memory", "No memory for the command's log.");
    cmdlog_unref(r->log);
    r->log = NULL;
    goto out;
  }
  for (int i = 0; i < 2; i++) {
    uv_pipe_init(&r->loop, &r->pipes[i], 0);
    r->pipes[i].data = r;
  }
  r->open_pipes = 2;
  uv_timer_init(&r->loop, &r->tick);
  r->tick.data = r;
  rc = start(r, argv, envp, cwd);
  if (rc != 0) {
    offload_task_fail(t, "command_failed", "%s could not be started: %s.", ct->program, uv_strerror(rc));
    uv_close((uv_handle_t *)&r->pipes[0], NULL);
    uv_close((uv_handle_t *)&r->pipes[1], NULL);
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
  } else {
    uv_read_start((uv_stream_t *)&r->pipes[0], on_alloc, on_read);
    uv_read_start((uv_stream_t *)&r->pipes[1], on_alloc, on_read);
    uv_timer_start(&r->tick, on_tick, 0, TICK_MS);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    /* Trailing partial lines count too. */
    for (int i = 0; i < 2; i++)
      if (r->lines[i].len && ct->progress != COMMANDS_PROGRESS_NONE)
        feed_lines(r, i, "\n", 1);
    finish(r);
  }
  uv_loop_close(&r->loop);
  if (cmdlog_save(r->log, logpath) != 0 && !offload_task_canceled(t) && !t->result->failed)
    offload_task_fail(t, "internal", "The command's log could not be saved: %s.", strerror(errno));
  cmdlog_close(r->log);
out:
  rm_tree(cwd);
  free(r);
  free(argv);
  free(envp);
}
