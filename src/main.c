/* main: the command line. `offload serve [flags]` parses flags into a
 * server_config_t and runs the server; `offload worker` is the internal
 * subcommand a server starts its worker processes with. No other logic
 * lives here.
 *
 * Flags are one table: name, what they set, range and help, so adding one is
 * one line (and the usage text cannot drift from the parser). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands/run.h"
#include "pool/child.h"
#include "server.h"
#include "util/log.h"

/* F_PLUGIN is repeatable: each use appends to cfg.plugins. */
typedef enum { F_STR, F_I32, F_INT, F_U64, F_UNSIGNED, F_SIZE, F_BOOL, F_LOG, F_ISOLATION, F_CHOICE, F_PLUGIN } flag_kind_t;

typedef struct flag {
  const char *name;
  const char *arg; /* the placeholder in the usage text; NULL for a switch */
  flag_kind_t kind;
  size_t offset; /* into server_config_t */
  int64_t min, max;
  const char *help; /* "(default %s)" is appended from the defaults */
  const char *choices[2]; /* F_CHOICE: the false and the true word of a bool */
} flag_t;

#define OFF(field) offsetof(server_config_t, field)
#define FLAG(n, a, k, off, lo, hi, h) {.name = (n), .arg = (a), .kind = (k), .offset = (off), .min = (lo), .max = (hi), .help = (h)}

static const flag_t flags[] = {
    FLAG("host", "ADDR", F_STR, OFF(host), 0, 0, "address to listen on"),
    FLAG("port", "N", F_I32, OFF(port), 0, 65535, "TCP port, 0 picks a free one"),
    FLAG("workers", "N", F_UNSIGNED, OFF(workers), 1, 1024, "worker threads (and processes); default = online CPUs"),
    FLAG("isolation", "MODE", F_ISOLATION, OFF(isolation_process), 0, 0,
     "thread or process: where jobs run (kinds that declare process always run in processes)"),
    FLAG("process-workers", "N", F_UNSIGNED, OFF(process_workers), 0, 1024,
     "worker processes, 0 = as many as --workers"),
    FLAG("worker-memory-mb", "N", F_U64, OFF(worker_memory_mb), 0, 1 << 20,
     "data-segment cap of each worker process in MiB, 0 = none"),
    FLAG("worker-cpu-s", "N", F_U64, OFF(worker_cpu_s), 0, 86400 * 365, "CPU seconds a job may use in a worker process, 0 = none"),
    FLAG("kill-grace-ms", "N", F_U64, OFF(kill_grace_ms), 0, 3600000,
     "after a cancel or timeout, how long a task may take to stop before its worker is killed (processes) or "
     "reported stuck (threads)"),
    FLAG("max-jobs-per-worker", "N", F_U64, OFF(max_jobs_per_worker), 0, INT64_C(1) << 40,
     "replace a worker process after N jobs, 0 = never"),
    FLAG("retry-backoff-ms", "N", F_INT, OFF(retry_backoff_ms), 1, 3600000,
     "a job's k-th retry waits N x 2^(k-1) ms (plus up to 10% jitter)"),
    {.name = "store", .arg = "KIND", .kind = F_CHOICE, .offset = OFF(store_sqlite), .help = "where jobs are kept: memory or sqlite", .choices = {"memory", "sqlite"}},
    FLAG("data-dir", "DIR", F_STR, OFF(data_dir), 0, 0, "the SQLite store's directory (created when missing)"),
    {.name = "durability", .arg = "MODE", .kind = F_CHOICE, .offset = OFF(durability_relaxed),
     .help = "strict (synchronous=FULL) or relaxed (NORMAL: survives a crash, not a power cut)",
     .choices = {"strict", "relaxed"}},
    FLAG("max-queue", "N", F_SIZE, OFF(max_queue), 1, 100000000, "jobs that may wait for a worker"),
    FLAG("max-iterations", "N", F_INT, OFF(max_iterations), 1, INT64_C(1000000000000000),
     "largest heavyIterations for report jobs"),
    FLAG("max-body", "BYTES", F_SIZE, OFF(max_body), 1, INT64_C(1) << 30, "largest request body"),
    FLAG("max-upload", "BYTES", F_SIZE, OFF(max_upload), 1, INT64_C(1) << 34,
         "largest input body of POST /jobs/<task> (streamed to memory, never held twice)"),
    FLAG("max-image-pixels", "N", F_U64, OFF(max_image_pixels), 1, INT64_C(1) << 40,
         "largest image the image task decodes (width x height, checked from the header)"),
    FLAG("job-timeout-ms", "N", F_INT, OFF(job_timeout_ms), 0, INT64_C(2147483647),
     "default job timeout from start of processing, 0 = none"),
    FLAG("retention-s", "N", F_INT, OFF(retention_s), 1, INT64_C(315360000), "keep finished jobs this long"),
    FLAG("max-finished", "N", F_SIZE, OFF(max_finished), 1, 100000000, "keep at most this many finished jobs"),
    FLAG("cache-finished", "N", F_SIZE, OFF(cache_finished), 1, 100000000,
         "finished jobs whose params and result stay in memory (SQLite store; older ones are read from disk)"),
    FLAG("keepalive-timeout-s", "N", F_INT, OFF(keepalive_timeout_s), 1, 86400,
     "close idle keep-alive connections after N s"),
    FLAG("max-connections", "N", F_SIZE, OFF(max_connections), 1, 10000000,
     "open connections at most; more are closed at once"),
    FLAG("max-event-streams", "N", F_SIZE, OFF(max_event_streams), 0, 1000000,
         "open server-sent event streams (GET /events, /jobs/<id>/events) at most; more get 503, 0 = none"),
    FLAG("drain-timeout-s", "N", F_INT, OFF(drain_timeout_s), 0, 86400,
     "on SIGTERM/SIGINT, let running jobs finish this long"),
    FLAG("request-timeout-ms", "N", F_INT, OFF(request_timeout_ms), 1, 3600000,
     "a request head must arrive within N ms of its first byte (or of the connection opening), its body within "
     "N ms more; else the connection is closed"),
    FLAG("worker-nice", "N", F_I32, OFF(worker_nice), 0, 19, "niceness added to workers, 0..19"),
    FLAG("plugin", "FILE.so", F_PLUGIN, 0, 0, 0,
         "load tasks from a shared object built against include/offload/task.h (repeatable; docs/PLUGINS.md)"),
    FLAG("commands", "FILE", F_STR, OFF(commands), 0, 0,
         "declare command tasks (external programs: no shell, typed params) from a JSON file; docs/COMMANDS.md"),
    FLAG("log-level", "LEVEL", F_LOG, 0, 0, 0, "error, warn, info or debug"),
    FLAG("enable-test-tasks", NULL, F_BOOL, OFF(test_tasks), 0, 0,
     "TESTS ONLY: offer the crash task and spin's ignoreCancel, which break workers on purpose"),
    FLAG("inline", NULL, F_BOOL, OFF(run_inline), 0, 0,
     "DEMONSTRATION ONLY, never for production: run thread-isolated jobs on the event-loop thread, blocking "
     "every other request meanwhile"),
};

#define NFLAGS (sizeof flags / sizeof flags[0])

/* The default of one flag as text, for the usage. */
static void default_text(const flag_t *f, const server_config_t *d, char *buf, size_t size) {
  const char *base = (const char *)d + f->offset;
  switch (f->kind) {
  case F_STR: snprintf(buf, size, "%s", *(const char *const *)base); break;
  case F_I32: snprintf(buf, size, "%d", *(const int *)base); break;
  case F_INT: snprintf(buf, size, "%" PRId64, *(const int64_t *)base); break;
  case F_U64: snprintf(buf, size, "%" PRIu64, *(const uint64_t *)base); break;
  case F_UNSIGNED: snprintf(buf, size, "%u", *(const unsigned *)base); break;
  case F_SIZE: snprintf(buf, size, "%zu", *(const size_t *)base); break;
  case F_ISOLATION: snprintf(buf, size, "%s", *(const bool *)base ? "process" : "thread"); break;
  case F_CHOICE: snprintf(buf, size, "%s", f->choices[*(const bool *)base ? 1 : 0]); break;
  case F_LOG: snprintf(buf, size, "info"); break;
  case F_BOOL:
  case F_PLUGIN: buf[0] = '\0'; break;
  }
}

static void usage(FILE *out) {
  server_config_t d;
  server_config_defaults(&d);
  fprintf(out, "usage: offload serve [flags]\n"
               "\n"
               "Runs the offload HTTP job server: CPU-heavy jobs run on a pool of workers (threads or\n"
               "isolated processes) while the event loop keeps answering every other request.\n"
               "\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    const flag_t *f = &flags[i];
    char left[48], dflt[64];
    snprintf(left, sizeof left, "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
    default_text(f, &d, dflt, sizeof dflt);
    fprintf(out, "  %-26s %s%s%s%s\n", left, f->help, dflt[0] ? " (default " : "", dflt, dflt[0] ? ")" : "");
  }
  fprintf(out, "  %-26s %s\n\n", "-h, --help", "this text");
  fprintf(out, "`offload worker` is internal: the command a server starts its worker processes with.\n");
}

/* Parses a decimal integer in [min, max] or exits with a message naming the flag. */
static int64_t int_flag(const char *flag, const char *text, int64_t min, int64_t max) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < min || v > max) {
    fprintf(stderr, "offload: --%s must be an integer from %" PRId64 " to %" PRId64 "; got \"%s\"\n", flag, min, max,
            text);
    exit(2);
  }
  return v;
}

static void set_flag(const flag_t *f, server_config_t *cfg, const char *arg) {
  char *base = (char *)cfg + f->offset;
  switch (f->kind) {
  case F_STR: *(const char **)base = arg; break;
  case F_I32: *(int *)base = (int)int_flag(f->name, arg, f->min, f->max); break;
  case F_INT: *(int64_t *)base = int_flag(f->name, arg, f->min, f->max); break;
  case F_U64: *(uint64_t *)base = (uint64_t)int_flag(f->name, arg, f->min, f->max); break;
  case F_UNSIGNED: *(unsigned *)base = (unsigned)int_flag(f->name, arg, f->min, f->max); break;
  case F_SIZE: *(size_t *)base = (size_t)int_flag(f->name, arg, f->min, f->max); break;
  case F_BOOL: *(bool *)base = true; break;
  case F_PLUGIN:
    if (cfg->nplugins == PLUGIN_MAX) {
      fprintf(stderr, "offload: at most %d --plugin flags\n", PLUGIN_MAX);
      exit(2);
    }
    cfg->plugins[cfg->nplugins++] = arg;
    break;
  case F_ISOLATION:
    if (strcmp(arg, "thread") != 0 && strcmp(arg, "process") != 0) {
      fprintf(stderr, "offload: --isolation must be thread or process; got \"%s\"\n", arg);
      exit(2);
    }
    *(bool *)base = strcmp(arg, "process") == 0;
    break;
  case F_CHOICE:
    if (strcmp(arg, f->choices[0]) != 0 && strcmp(arg, f->choices[1]) != 0) {
      fprintf(stderr, "offload: --%s must be %s or %s; got \"%s\"\n", f->name, f->choices[0], f->choices[1], arg);
      exit(2);
    }
    *(bool *)base = strcmp(arg, f->choices[1]) == 0;
    break;
  case F_LOG:
    if (strcmp(arg, "error") == 0)
      log_level = LOG_ERROR;
    else if (strcmp(arg, "warn") == 0)
      log_level = LOG_WARN;
    else if (strcmp(arg, "info") == 0)
      log_level = LOG_INFO;
    else if (strcmp(arg, "debug") == 0)
      log_level = LOG_DEBUG;
    else {
      fprintf(stderr, "offload: --log-level must be error, warn, info or debug\n");
      exit(2);
    }
    break;
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "worker") == 0)
    return pool_child_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "exec-command") == 0)
    return commands_exec_main(argc, argv);
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      usage(stdout);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  server_config_t cfg;
  server_config_defaults(&cfg);

  struct option opts[NFLAGS + 2];
  for (size_t i = 0; i < NFLAGS; i++)
    opts[i] = (struct option){flags[i].name, flags[i].arg ? required_argument : no_argument, NULL, 256 + (int)i};
  opts[NFLAGS] = (struct option){"help", no_argument, NULL, 'h'};
  opts[NFLAGS + 1] = (struct option){NULL, 0, NULL, 0};
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c >= 256 && c < 256 + (int)NFLAGS) {
      set_flag(&flags[c - 256], &cfg, optarg);
      continue;
    }
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "offload: unexpected argument \"%s\"\n", argv[optind]);
    return 2;
  }
  /* A client that hangs up mid-reply must not kill the server. */
  signal(SIGPIPE, SIG_IGN);
  return server_run(&cfg);
}
