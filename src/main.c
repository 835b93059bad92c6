/* main: the command line. `offload serve [flags]` parses flags into a
 * server_config_t and runs the server; `offload worker` is the internal
 * subcommand a server starts its worker processes with; `offload
 * --version` prints the version. No other logic lives here.
 *
 * Flags are one table: name, what they set, range and help, so adding one is
 * one line (and the usage text cannot drift from the parser). Each flag can
 * also come from the environment, OFFLOAD_<FLAG> (upper case, '-' → '_'):
 * defaults, then variables, then the command line, so a flag beats its
 * variable. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "commands/run.h"
#include "pool/child.h"
#include "server.h"
#include "util/log.h"

#ifndef OFFLOAD_VERSION
#define OFFLOAD_VERSION "unknown" /* CMake defines it from project(VERSION) */
#endif

/* F_PLUGIN is repeatable: each use appends to cfg.plugins. */
typedef enum { F_STR, F_I32, F_INT, F_U64, F_UNSIGNED, F_SIZE, F_BOOL, F_LOG, F_ISOLATION, F_CHOICE, F_PLUGIN, F_STORE } flag_kind_t;

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
    {.name = "store", .arg = "KIND", .kind = F_STORE, .offset = OFF(store_sqlite),
     .help = "where jobs are kept: memory, sqlite, or postgres (a cluster of nodes sharing one database; docs/CLUSTER.md)"},
    FLAG("data-dir", "DIR", F_STR, OFF(data_dir), 0, 0, "the SQLite store's directory (created when missing)"),
    {.name = "durability", .arg = "MODE", .kind = F_CHOICE, .offset = OFF(durability_relaxed),
     .help = "strict (synchronous=FULL) or relaxed (NORMAL: survives a crash, not a power cut)",
     .choices = {"strict", "relaxed"}},
    FLAG("pg-url", "URL", F_STR, OFF(pg_url), 0, 0,
         "--store postgres: a libpq connection string or postgresql:// URL (the password from PGPASSWORD or "
         "PGPASSFILE; never printed)"),
    FLAG("node-id", "ID", F_STR, OFF(node_id), 0, 0, "--store postgres: this node's unique name (default: host name:port)"),
    FLAG("advertise-url", "URL", F_STR, OFF(advertise_url), 0, 0,
         "--store postgres: how the other nodes and clients reach this node (default: http://host:port)"),
    FLAG("heartbeat-ms", "N", F_INT, OFF(heartbeat_ms), 50, 600000, "--store postgres: how often the node heartbeats"),
    FLAG("lease-timeout-ms", "N", F_INT, OFF(lease_timeout_ms), 100, 3600000,
         "--store postgres: a node silent this long is dead, and its running jobs are queued again"),
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
    /* Operations: the access log, the log format, authentication. */
    FLAG("access-log", "PATH", F_STR, OFF(access_log), 0, 0,
         "one line per request (time, client, method, path, status, bytes, duration): stderr, off, or a file to "
         "append to"),
    {.name = "log-format", .arg = "FORMAT", .kind = F_CHOICE, .offset = OFF(log_json),
     .help = "text or json (one object per line): the access log and the server's own log lines",
     .choices = {"text", "json"}},
    FLAG("auth-token-file", "FILE", F_STR, OFF(auth_token_file), 0, 0,
         "require Authorization: Bearer <token> on every endpoint but GET /health; FILE holds one token (32+ "
         "characters) per line, # comments"),
    FLAG("metrics-public", NULL, F_BOOL, OFF(metrics_public), 0, 0,
         "with --auth-token-file: GET /metrics needs no token"),
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
  case F_STR: snprintf(buf, size, "%s", *(const char *const *)base ? *(const char *const *)base : ""); break;
  case F_I32: snprintf(buf, size, "%d", *(const int *)base); break;
  case F_INT: snprintf(buf, size, "%" PRId64, *(const int64_t *)base); break;
  case F_U64: snprintf(buf, size, "%" PRIu64, *(const uint64_t *)base); break;
  case F_UNSIGNED: snprintf(buf, size, "%u", *(const unsigned *)base); break;
  case F_SIZE: snprintf(buf, size, "%zu", *(const size_t *)base); break;
  case F_ISOLATION: snprintf(buf, size, "%s", *(const bool *)base ? "process" : "thread"); break;
  case F_CHOICE: snprintf(buf, size, "%s", f->choices[*(const bool *)base ? 1 : 0]); break;
  case F_STORE: snprintf(buf, size, "%s", d->store_postgres ? "postgres" : *(const bool *)base ? "sqlite" : "memory"); break;
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
  fprintf(out, "  %-26s %s\n", "-h, --help", "this text");
  fprintf(out, "  %-26s %s\n\n", "--version", "print the version");
  fprintf(out, "Every flag can also come from an environment variable OFFLOAD_<FLAG>, upper case with '_' for\n"
               "'-' (OFFLOAD_PORT=3001, OFFLOAD_AUTH_TOKEN_FILE=/etc/offload/tokens, OFFLOAD_METRICS_PUBLIC=1,\n"
               "OFFLOAD_PLUGIN=a.so:b.so); a flag on the command line beats its variable. An empty variable\n"
               "is unset.\n\n");
  fprintf(out, "`offload worker` is internal: the command a server starts its worker processes with.\n");
  cli_usage_commands(out);
}

/* Parses a decimal integer in [min, max] or exits with a message naming
 * where it came from (`src`: "--port" or "OFFLOAD_PORT"). */
static int64_t int_flag(const char *src, const char *text, int64_t min, int64_t max) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < min || v > max) {
    fprintf(stderr, "offload: %s must be an integer from %" PRId64 " to %" PRId64 "; got \"%s\"\n", src, min, max,
            text);
    exit(2);
  }
  return v;
}

/* Sets one flag from `arg`; a bad value exits with a message naming `src`
 * (the flag, or the variable it came from). */
static void set_flag(const flag_t *f, server_config_t *cfg, const char *arg, const char *src) {
  char *base = (char *)cfg + f->offset;
  switch (f->kind) {
  case F_STR: *(const char **)base = arg; break;
  case F_I32: *(int *)base = (int)int_flag(src, arg, f->min, f->max); break;
  case F_INT: *(int64_t *)base = int_flag(src, arg, f->min, f->max); break;
  case F_U64: *(uint64_t *)base = (uint64_t)int_flag(src, arg, f->min, f->max); break;
  case F_UNSIGNED: *(unsigned *)base = (unsigned)int_flag(src, arg, f->min, f->max); break;
  case F_SIZE: *(size_t *)base = (size_t)int_flag(src, arg, f->min, f->max); break;
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
      fprintf(stderr, "offload: %s must be thread or process; got \"%s\"\n", src, arg);
      exit(2);
    }
    *(bool *)base = strcmp(arg, "process") == 0;
    break;
  case F_CHOICE:
    if (strcmp(arg, f->choices[0]) != 0 && strcmp(arg, f->choices[1]) != 0) {
      fprintf(stderr, "offload: %s must be %s or %s; got \"%s\"\n", src, f->choices[0], f->choices[1], arg);
      exit(2);
    }
    *(bool *)base = strcmp(arg, f->choices[1]) == 0;
    break;
  case F_STORE:
    if (strcmp(arg, "memory") != 0 && strcmp(arg, "sqlite") != 0 && strcmp(arg, "postgres") != 0) {
      fprintf(stderr, "offload: %s must be memory, sqlite or postgres; got \"%s\"\n", src, arg);
      exit(2);
    }
    cfg->store_sqlite = strcmp(arg, "sqlite") == 0;
    cfg->store_postgres = strcmp(arg, "postgres") == 0;
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
      fprintf(stderr, "offload: %s must be error, warn, info or debug; got \"%s\"\n", src, arg);
      exit(2);
    }
    break;
  }
}

/* ---- OFFLOAD_<FLAG> environment variables ---- */

static void env_name(const flag_t *f, char *out, size_t size) {
  size_t k = (size_t)snprintf(out, size, "OFFLOAD_");
  for (const char *p = f->name; *p && k + 1 < size; p++)
    out[k++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
  out[k] = '\0';
}

/* A switch's variable: 1/true/yes/on or 0/false/no/off. */
static bool env_bool(const char *var, const char *v) {
  static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0)
      return true;
    if (strcasecmp(v, no[i]) == 0)
      return false;
  }
  fprintf(stderr, "offload: %s must be 1, true, yes, on or 0, false, no, off; got \"%s\"\n", var, v);
  exit(2);
}

/* Applies every OFFLOAD_<FLAG> that is set, not empty, and whose flag is
 * not on the command line (`given`): a flag beats its variable, which is
 * then not even read. OFFLOAD_PLUGIN holds a colon-separated list. */
static void apply_env(server_config_t *cfg, const bool *given) {
  for (size_t i = 0; i < NFLAGS; i++) {
    const flag_t *f = &flags[i];
    char var[64];
    env_name(f, var, sizeof var);
    const char *v = getenv(var);
    if (given[i] || !v || !v[0])
      continue;
    if (f->kind == F_BOOL) {
      *(bool *)((char *)cfg + f->offset) = env_bool(var, v);
    } else if (f->kind == F_PLUGIN) {
      char *list = strdup(v); /* borrowed by cfg until exit, like argv */
      if (!list) {
        fprintf(stderr, "offload: out of memory\n");
        exit(1);
      }
      for (char *save = NULL, *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save))
        set_flag(f, cfg, p, var);
    } else {
      set_flag(f, cfg, v, var);
    }
  }
}

static void version(void) { printf("offload %s\n", OFFLOAD_VERSION); }

/* One line naming what was not understood, and where help is: the usage
 * itself would bury it. */
static int unknown_flag(const char *arg, const char *help) {
  const char *eq = strchr(arg, '=');
  int n = eq ? (int)(eq - arg) : (int)strlen(arg);
  fprintf(stderr, "offload: unknown flag %.*s (see %s)\n", n, arg, help);
  return 2;
}

/* `offload serve [flags]`: the command line is read first (help, version
 * and unknown flags end here), then the defaults, the OFFLOAD_<FLAG>
 * variables of the flags not given, and the flags in their order. */
static int serve_main(int argc, char **argv) {
  struct option opts[NFLAGS + 3];
  for (size_t i = 0; i < NFLAGS; i++)
    opts[i] = (struct option){flags[i].name, flags[i].arg ? required_argument : no_argument, NULL, 256 + (int)i};
  opts[NFLAGS] = (struct option){"help", no_argument, NULL, 'h'};
  opts[NFLAGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
  opts[NFLAGS + 2] = (struct option){NULL, 0, NULL, 0};
  bool given[NFLAGS] = {false};
  struct {
    size_t flag;
    const char *arg;
  } *seen = calloc((size_t)argc, sizeof *seen); /* at most one flag per argument */
  if (!seen) {
    fprintf(stderr, "offload: out of memory\n");
    return 1;
  }
  size_t nseen = 0;
  optind = 2;
  opterr = 0; /* our own one-line messages below */
  int c, rc = -1;
  while (rc < 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c >= 256 && c < 256 + (int)NFLAGS) {
      given[c - 256] = true;
      seen[nseen].flag = (size_t)(c - 256);
      seen[nseen++].arg = optarg;
    } else if (c == 'h') {
      usage(stdout);
      rc = 0;
    } else if (c == 'V') {
      version();
      rc = 0;
    } else if (c == ':') {
      fprintf(stderr, "offload: %s needs a value (see offload serve --help)\n", argv[optind - 1]);
      rc = 2;
    } else if (optopt >= 256 || optopt == 'h' || optopt == 'V') { /* "--inline=1": a switch given a value */
      const char *arg = argv[optind - 1], *eq = strchr(arg, '=');
      fprintf(stderr, "offload: %.*s takes no value (see offload serve --help)\n",
              eq ? (int)(eq - arg) : (int)strlen(arg), arg);
      rc = 2;
    } else if (optopt) { /* an unknown short option */
      char name[3] = {'-', (char)optopt, '\0'};
      rc = unknown_flag(name, "offload serve --help");
    } else {
      rc = unknown_flag(argv[optind - 1], "offload serve --help");
    }
  }
  if (rc < 0 && optind < argc) {
    fprintf(stderr, "offload: unexpected argument \"%s\" (see offload serve --help)\n", argv[optind]);
    rc = 2;
  }
  if (rc >= 0) {
    free(seen);
    return rc;
  }
  server_config_t cfg;
  server_config_defaults(&cfg);
  apply_env(&cfg, given);
  for (size_t i = 0; i < nseen; i++) {
    const flag_t *f = &flags[seen[i].flag];
    char src[64];
    snprintf(src, sizeof src, "--%s", f->name);
    set_flag(f, &cfg, seen[i].arg, src);
  }
  free(seen);
  log_format = cfg.log_json ? LOG_JSON : LOG_TEXT;
  /* A client that hangs up mid-reply must not kill the server. */
  signal(SIGPIPE, SIG_IGN);
  return server_run(&cfg);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "worker") == 0)
    return pool_child_main(argc, argv);
  if (cli_handles(argc, argv)) /* submit, status, wait, ...: the HTTP client (src/cli, docs/CLI.md) */
    return cli_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "exec-command") == 0)
    return commands_exec_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "serve") == 0)
    return serve_main(argc, argv);
  /* No subcommand matched: help, the version, or one line about what is wrong. */
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    version();
    return 0;
  }
  if (argv[1][0] == '-')
    return unknown_flag(argv[1], "offload --help");
  fprintf(stderr, "offload: unknown command %s (see offload --help)\n", argv[1]);
  return 2;
}
