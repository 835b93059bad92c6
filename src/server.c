/* server: wiring and lifecycle. See server.h.
 *
 * Shutdown (first SIGTERM/SIGINT): stop accepting, answer new submissions
 * with 503, cancel queued jobs, give running ones --drain-timeout-s, then
 * cancel them too; once no job is in flight, close every handle and let the
 * loop end. A second signal exits at once. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "commands/run.h"
#include "http/http.h"
#include "offload/pool.h"
#include "pool/item.h"
#include "registry/registry.h"
#include "cluster/cluster.h"
#include "store/store.h"
#include "tasks/plugin.h"
#include "tasks/tasks.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/logq.h"
#include "util/looplag.h"

typedef struct server {
  uv_loop_t loop;
  const server_config_t *cfg;
  plugin_set_t plugins;     /* --plugin: loaded before the catalog, never unloaded */
  commands_t commands;      /* --commands: loaded before the catalog, freed after it */
  const char **worker_argv; /* `offload worker` and every plug-in (owned array, borrowed strings) */
  tasks_catalog_t catalog;
  registry_t *reg;
  store_t *store;
  pool_t *pools[LANE_N];
  http_server_t *http;
  api_t api;
  api_logs_t *logs;     /* command logs' wake-ups and followers: before the pools, after them */
  api_events_t *events; /* server-sent events (the registry's observer); NULL = --max-event-streams 0 */
  looplag_t lag;
  uv_signal_t sigterm, sigint;
  uv_timer_t drain_timer;
  int signals_seen;
  bool stopped;
  char files_root[4096]; /* where jobs' output files go (registry_config_t.files_root) */
  bool files_temp;       /* the memory store's temp root: removed at exit */
  api_auth_t auth;       /* --auth-token-file's digests (n = 0: none) */
  logq_t *access_log;    /* --access-log's queue and writer thread; NULL = off */
  int access_fd;         /* its file when it is not stderr, else -1 */
  /* A cluster (--store postgres): */
  cluster_t *cluster;
  char node_id[256], node_url[512]; /* filled once the port is known, before the store thread starts */
  char lane_tasks[LANE_N][8192];    /* the tasks each lane claims: JSON arrays */
} server_t;

void server_config_defaults(server_config_t *c) {
  unsigned cpus = uv_available_parallelism();
  *c = (server_config_t){
      .host = "127.0.0.1",
      .port = 3000,
      .workers = cpus ? cpus : 1,
      .max_queue = 10000,
      .max_iterations = INT64_C(100000000000),
      .max_body = 1024 * 1024,
      .max_upload = 64 * 1024 * 1024,
      .max_image_pixels = 40000000,
      .job_timeout_ms = 0,
      .retention_s = 3600,
      .max_finished = 100000,
      .cache_finished = 10000,
      .keepalive_timeout_s = 30,
      .max_connections = 10000,
      .drain_timeout_s = 30,
      .request_timeout_ms = 10000,
      .max_event_streams = 256,
      .worker_nice = 19,
      .kill_grace_ms = 200,
      .retry_backoff_ms = 500,
      .store_sqlite = true,
      .heartbeat_ms = 1000,
      .lease_timeout_ms = 5000,
      .data_dir = "./offload-data",
      .access_log = "stderr",
  };
}

/* --auth-token-file and --access-log, before anything starts: a bad token
 * file or an access log that cannot be opened stops the start-up at once.
 * Returns false after saying why on stderr. */
static bool open_ops(server_t *s) {
  const server_config_t *cfg = s->cfg;
  if (cfg->auth_token_file) {
    char err[512];
    if (api_auth_load(&s->auth, cfg->auth_token_file, err, sizeof err) != 0) {
      fprintf(stderr, "offload: --auth-token-file: %s\n", err);
      return false;
    }
  }
  const char *path = cfg->access_log;
  if (!path || strcmp(path, "off") == 0)
    return true;
  int fd = STDERR_FILENO;
  if (strcmp(path, "stderr") != 0 && strcmp(path, "-") != 0) {
    fd = s->access_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      fprintf(stderr, "offload: --access-log %s: %s\n", path, strerror(errno));
      return false;
    }
  }
  s->access_log = logq_new(fd, LOGQ_MAX_PENDING_DEFAULT);
  if (!s->access_log) {
    fprintf(stderr, "offload: --access-log: cannot start its writer thread\n");
    return false;
  }
  return true;
}

/* After the loop ended: no line can come any more. */
static void close_ops(server_t *s) {
  logq_free(s->access_log);
  s->access_log = NULL;
  if (s->access_fd >= 0)
    close(s->access_fd);
  s->access_fd = -1;
  api_auth_fini(&s->auth);
}

static void stop_everything(server_t *s) {
  if (s->stopped)
    return;
  s->stopped = true;
  log_info("drained; shutting down");
  api_logs_stop(s->logs);     /* followers' bodies end before their connections close */
  api_events_stop(s->events); /* so do event streams' */
  http_server_free(s->http);
  s->http = NULL;
  api_remote_free(&s->api); /* its requests are gone with the connections */
  uv_close((uv_handle_t *)&s->drain_timer, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  looplag_stop(&s->lag);
  for (int l = 0; l < LANE_N; l++) { /* no job in flight: the workers are idle */
    if (s->pools[l])
      pool_free(s->pools[l]);
    s->pools[l] = NULL;
  }
  api_logs_free(s->logs); /* no writer is left to wake it */
  s->logs = NULL;
  api_events_free(s->events); /* no job changes any more */
  s->events = s->api.events = NULL;
  registry_save_unsaved(s->reg); /* one last try for writes that failed */
  store_close(s->store);         /* the last transitions: one commit at most */
  s->store = NULL;
  cluster_free(s->cluster); /* after the store's last callbacks */
  s->cluster = s->api.cluster = NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* The memory store's files root at exit (the loop has stopped). */
static void remove_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void on_stored_row(const store_job_t *row, void *data) {
  server_t *s = data;
  if (registry_restore(s->reg, row) != 0)
    log_error("store: out of memory restoring job %s", row->id);
}

/* The plug-ins, then the catalog: the built-in kinds and the plug-ins'
 * (after them), and the command line of a worker process, which loads the
 * same plug-ins (by their resolved paths: a worker may not share our idea
 * of the working directory). Returns false after saying why on stderr. */
static bool load_tasks(server_t *s) {
  const server_config_t *cfg = s->cfg;
  char err[1024];
  if (plugins_load(&s->plugins, cfg->plugins, cfg->nplugins, err, sizeof err) != 0) {
    fprintf(stderr, "offload: %s\n", err);
    return false;
  }
  if (cfg->commands) {
    if (commands_load(cfg->commands, &s->commands, err, sizeof err) != 0) {
      fprintf(stderr, "offload: %s\n", err);
      return false;
    }
    for (size_t i = 0; i < s->commands.n; i++) {
      const char *name = s->commands.tasks[i].def.name;
      const plugin_t *p = NULL;
      if (plugins_find(&s->plugins, name, &p) && p) {
        fprintf(stderr,
                "offload: %s: task \"%s\": the name is taken by a task of plug-in %s; rename the command task "
                "(a dotted prefix such as \"cmd.%s\" keeps them apart)\n",
                cfg->commands, name, p->path, name);
        return false;
      }
    }
    commands_runner_init(&s->commands, (unsigned)cfg->kill_grace_ms);
  }
  size_t nextra = plugins_count(&s->plugins);
  const offload_task_def_t **extra = calloc(nextra + 1, sizeof *extra);
  const offload_task_def_t **pinned = calloc(s->commands.n + 1, sizeof *pinned);
  s->worker_argv = calloc(3 + 2 * s->plugins.n, sizeof *s->worker_argv);
  if (!extra || !pinned || !s->worker_argv) {
    free(extra);
    free(pinned);
    fprintf(stderr, "offload: out of memory\n");
    return false;
  }
  for (size_t i = 0; i < nextra; i++)
    extra[i] = plugins_task(&s->plugins, i);
  for (size_t i = 0; i < s->commands.n; i++)
    pinned[i] = &s->commands.tasks[i].def;
  size_t k = 0;
  s->worker_argv[k++] = "offload";
  s->worker_argv[k++] = "worker";
  for (size_t i = 0; i < s->plugins.n; i++) {
    s->worker_argv[k++] = "--plugin";
    s->worker_argv[k++] = s->plugins.v[i].path;
  }
  s->worker_argv[k] = NULL;
  tasks_options_t to = {
      .isolation = cfg->isolation_process ? OFFLOAD_ISOLATION_PROCESS : OFFLOAD_ISOLATION_THREAD,
      .test_tasks = cfg->test_tasks,
      .extra = extra,
      .nextra = nextra,
      .pinned = pinned,
      .npinned = s->commands.n,
  };
  int rc = tasks_catalog_init_with(&s->catalog, &to);
  free(extra); /* the catalog holds copies */
  free(pinned);
  if (rc != 0) {
    fprintf(stderr, "offload: cannot build the task catalog: %s\n", err_str(rc));
    return false;
  }
  for (size_t i = 0; i < s->plugins.n; i++)
    log_info("plug-in %s: %zu task(s)", s->plugins.v[i].path, s->plugins.v[i].ntasks);
  if (cfg->commands)
    log_info("commands %s: %zu task(s)", cfg->commands, s->commands.n);
  return true;
}

/* The pool's started callback: a durable store writes `processing` while
 * the job runs, and event streams show the start as it happens. Without
 * either, a start is filed when someone asks (no wake-up per job). */
static pool_started_cb started_cb(const server_config_t *cfg) {
  return cfg->store_sqlite || cfg->store_postgres || cfg->max_event_streams ? registry_on_started : NULL;
}

/* A cluster's node: its name and address (the port once listening), the
 * tasks it claims. */
static void cluster_names(server_t *s, int port) {
  const server_config_t *cfg = s->cfg;
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  if (cfg->node_id)
    snprintf(s->node_id, sizeof s->node_id, "%s", cfg->node_id);
  else
    snprintf(s->node_id, sizeof s->node_id, "%.200s:%d", host, port);
  const char *h = cfg->host;
  bool any = strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || !h[0];
  if (cfg->advertise_url)
    snprintf(s->node_url, sizeof s->node_url, "%s", cfg->advertise_url);
  else
    snprintf(s->node_url, sizeof s->node_url, "http://%s%s%s:%d", !any && strchr(h, ':') ? "[" : "",
             any ? host : h, !any && strchr(h, ':') ? "]" : "", port);
  for (int l = 0; l < LANE_N; l++) {
    char *t = s->lane_tasks[l];
    size_t k = (size_t)snprintf(t, sizeof s->lane_tasks[l], "[");
    for (size_t i = 0; i < s->catalog.n && k + 200 < sizeof s->lane_tasks[l]; i++) {
      const offload_task_def_t *d = &s->catalog.defs[i];
      if ((d->isolation == OFFLOAD_ISOLATION_PROCESS ? LANE_PROCESS : LANE_THREAD) == (lane_t)l)
        k += (size_t)snprintf(t + k, sizeof s->lane_tasks[l] - k, "%s\"%s\"", k > 1 ? "," : "", d->name);
    }
    snprintf(t + k, sizeof s->lane_tasks[l] - k, "]");
  }
}

/* The pools the catalog needs: threads for kinds that run in threads,
 * processes for kinds that run in processes. Returns false on failure. */
static bool start_pools(server_t *s) {
  const server_config_t *cfg = s->cfg;
  /* What the image task reads in its worker processes (they inherit the
   * environment; no thread runs yet, so setenv is safe here). */
  char v[32];
  snprintf(v, sizeof v, "%llu", (unsigned long long)cfg->max_image_pixels);
  setenv("OFFLOAD_MAX_IMAGE_PIXELS", v, 1);
  snprintf(v, sizeof v, "%u", cfg->process_workers ? cfg->process_workers : cfg->workers);
  setenv("OFFLOAD_IMAGE_WORKERS", v, 1);
  unsigned next_id = 0;
  if (tasks_catalog_uses(&s->catalog, OFFLOAD_ISOLATION_THREAD)) {
    pool_config_t pc = {
        .kind = POOL_THREADS,
        .workers = cfg->workers,
        .run_inline = cfg->run_inline,
        .max_queue = cfg->max_queue,
        .nice = cfg->worker_nice,
        .kill_grace_ms = cfg->kill_grace_ms,
        .stall = registry_on_stall,
        .started = started_cb(cfg), /* files `processing` at once */
    };
    if (cfg->run_inline)
      log_warn("--inline: jobs run on the event-loop thread and block every request while they run "
               "(a demonstration of what offload avoids; never use it in production)");
    s->pools[LANE_THREAD] = pool_new(&s->loop, &pc, registry_on_done, s->reg);
    if (!s->pools[LANE_THREAD])
      return false;
    next_id = pool_workers(s->pools[LANE_THREAD]);
  }
  if (tasks_catalog_uses(&s->catalog, OFFLOAD_ISOLATION_PROCESS)) {
    pool_config_t pc = {
        .kind = POOL_PROCS,
        .workers = cfg->process_workers ? cfg->process_workers : cfg->workers,
        .max_queue = cfg->max_queue,
        .nice = cfg->worker_nice,
        .kill_grace_ms = cfg->kill_grace_ms,
        .first_id = next_id,
        .stall = registry_on_stall,
        .started = started_cb(cfg), /* files `processing` at once */
        .proc =
            {
                .argv = s->worker_argv,
                .encode = item_encode,
                .decode = item_decode,
                .memory_mb = cfg->worker_memory_mb,
                .cpu_s = cfg->worker_cpu_s,
                .max_jobs = cfg->max_jobs_per_worker,
            },
    };
    s->pools[LANE_PROCESS] = pool_new(&s->loop, &pc, registry_on_done, s->reg);
    if (!s->pools[LANE_PROCESS])
      return false;
  }
  registry_attach(s->reg, s->pools[LANE_THREAD], s->pools[LANE_PROCESS]);
  return true;
}

static unsigned total_workers(const server_t *s) {
  unsigned n = 0;
  for (int l = 0; l < LANE_N; l++)
    n += s->pools[l] ? pool_workers(s->pools[l]) : 0;
  return n;
}

static void on_stop_timer(uv_timer_t *t) { stop_everything(t->data); }

/* The registry reports idle from inside its callbacks, which can run in the
 * middle of a request (a DELETE during the drain cancels the last job): tear
 * down from a fresh loop turn, never from under a handler. */
static void on_idle(void *data) {
  server_t *s = data;
  uv_timer_stop(&s->drain_timer);
  uv_timer_start(&s->drain_timer, on_stop_timer, 0, 0);
}

static void on_drain_timeout(uv_timer_t *t) {
  server_t *s = t->data;
  log_warn("drain timeout: canceling %zu running job(s)", registry_in_flight(s->reg));
  registry_cancel_running(s->reg);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  if (++s->signals_seen > 1) {
    log_warn("second signal: exiting now");
    _exit(128 + signum);
  }
  log_info("signal %d: draining (%zu job(s) in flight, up to %lld s)", signum, registry_in_flight(s->reg),
           (long long)s->cfg->drain_timeout_s);
  http_server_stop_accepting(s->http);
  cluster_stop(s->cluster); /* no more claims: what is queued is for the other nodes */
  registry_drain(s->reg);
  uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)s->cfg->drain_timeout_s * 1000, 0);
  registry_on_idle(s->reg, on_idle, s);
}

/* --host is an address (else a name, whose address the log names). */
static bool is_ip_literal(const char *host) {
  unsigned char a[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int server_run(const server_config_t *cfg) {
  server_t *s = calloc(1, sizeof *s);
  if (!s)
    return 1;
  int code = 1;
  s->cfg = cfg;
  s->access_fd = -1;
  if (!open_ops(s))
    goto out_free;
  if (uv_loop_init(&s->loop) != 0)
    goto out_free;
  if (!load_tasks(s))
    goto out_loop;
  if (cfg->test_tasks)
    log_warn("--enable-test-tasks: the crash task (and spin's ignoreCancel) can break workers on purpose; "
             "for tests only");
  tasks_catalog_set_max(&s->catalog, "report", "heavyIterations", cfg->max_iterations);

  store_config_t stc = {
      .kind = cfg->store_postgres ? STORE_POSTGRES : cfg->store_sqlite ? STORE_SQLITE : STORE_MEMORY,
      .data_dir = cfg->data_dir,
      .strict = !cfg->durability_relaxed,
      .retention_ms = cfg->retention_s * 1000,
      .max_finished = cfg->max_finished,
      .pg_url = cfg->pg_url,
      .files_dir = s->files_root,
      .node_id = s->node_id,
      .node_url = s->node_url,
      .heartbeat_ms = cfg->heartbeat_ms,
      .lease_ms = cfg->lease_timeout_ms,
  };
  if (cfg->store_postgres) {
    if (!cfg->pg_url || !cfg->pg_url[0]) {
      fprintf(stderr, "offload: --store postgres needs --pg-url (a libpq connection string, e.g. "
                      "\"host=/run/postgresql dbname=offload\", or a postgresql:// URL)\n");
      tasks_catalog_fini(&s->catalog);
      goto out_loop;
    }
    bool id_ok = !cfg->node_id || (cfg->node_id[0] && strlen(cfg->node_id) <= 200);
    for (const char *c = cfg->node_id; id_ok && c && *c; c++)
      id_ok = *c > 0x20 && *c < 0x7f;
    if (!id_ok) {
      fprintf(stderr, "offload: --node-id must be 1 to 200 visible ASCII characters without spaces\n");
      tasks_catalog_fini(&s->catalog);
      goto out_loop;
    }
    if (cfg->lease_timeout_ms < 2 * cfg->heartbeat_ms) {
      fprintf(stderr, "offload: --lease-timeout-ms (%lld) must be at least twice --heartbeat-ms (%lld), or a "
                      "live node would be judged dead between two heartbeats\n",
              (long long)cfg->lease_timeout_ms, (long long)cfg->heartbeat_ms);
      tasks_catalog_fini(&s->catalog);
      goto out_loop;
    }
    /* The node's files: inputs it accepted and outputs it made. */
    mkdir(cfg->data_dir, 0755);
    snprintf(s->files_root, sizeof s->files_root, "%s/files", cfg->data_dir);
    cluster_names(s, cfg->port); /* the port may change once listening (--port 0) */
    cluster_config_t cc = {.node_id = s->node_id};
    s->cluster = cluster_new(&s->loop, &cc);
    if (!s->cluster) {
      tasks_catalog_fini(&s->catalog);
      goto out_loop;
    }
    stc.on_event = cluster_on_event;
    stc.event_data = s->cluster;
  }
  char serr[768];
  s->store = store_open(&s->loop, &stc, serr, sizeof serr);
  if (!s->store) {
    fprintf(stderr, "offload: %s\n", serr);
    cluster_free(s->cluster);
    s->cluster = NULL;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    tasks_catalog_fini(&s->catalog);
    goto out_loop;
  }

  /* Output files: beside the database (the store removes them with their
   * job's row), or, with the memory store, in a temp dir removed at exit. */
  if (cfg->store_postgres) {
    /* (set above) */
  } else if (cfg->store_sqlite) {
    snprintf(s->files_root, sizeof s->files_root, "%s/files", cfg->data_dir);
  } else {
    const char *tmp = getenv("TMPDIR");
    snprintf(s->files_root, sizeof s->files_root, "%s/offload-files-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(s->files_root)) {
      fprintf(stderr, "offload: cannot create a temp dir for job files in %s (%s); set TMPDIR\n",
              tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
      store_close(s->store);
      s->store = NULL;
      uv_run(&s->loop, UV_RUN_DEFAULT);
      tasks_catalog_fini(&s->catalog);
      goto out_loop;
    }
    s->files_temp = true;
  }

  registry_config_t rc = {
      .files_root = s->files_root,
      .catalog = &s->catalog,
      .max_finished = cfg->max_finished,
      .retention_ms = cfg->retention_s * 1000,
      .default_timeout_ms = cfg->job_timeout_ms,
      .retry_backoff_ms = cfg->retry_backoff_ms,
      .memory_mb = cfg->worker_memory_mb,
      .store = s->store,
      .cache_finished = cfg->cache_finished,
      .cluster = cfg->store_postgres,
      .node_id = s->node_id,
      .slot_free = s->cluster ? cluster_slot_free : NULL,
      .slot_data = s->cluster,
  };
  s->reg = registry_new(&s->loop, &rc);
  if (!s->reg)
    goto out_catalog;
  s->logs = api_logs_new(&s->loop); /* its hook is set before any worker runs */
  if (!s->logs)
    goto out_pool;
  if (!start_pools(s))
    goto out_pool;
  if (s->cluster) {
    cluster_config_t cc = {.node_id = s->node_id,
                           .workers = total_workers(s),
                           .lane_tasks = {s->lane_tasks[LANE_THREAD], s->lane_tasks[LANE_PROCESS]}};
    cluster_configure(s->cluster, &cc);
    cluster_attach(s->cluster, s->reg, s->store);
  } else if (store_load(s->store, on_stored_row, s) != 0) {
    fprintf(stderr, "offload: cannot read the jobs in %s/offload.db\n", cfg->data_dir);
    goto out_pool;
  }
  registry_restored(s->reg);

  http_config_t hc = {
      .max_header_bytes = 16 * 1024,
      .max_body = cfg->max_body,
      .request_timeout_ms = (uint64_t)cfg->request_timeout_ms,
      .keepalive_timeout_ms = (uint64_t)cfg->keepalive_timeout_s * 1000,
      .max_connections = cfg->max_connections,
      .access_log = s->access_log,
      .access_log_json = cfg->log_json,
  };
  s->api = (api_t){
      .loop = &s->loop,
      .reg = s->reg,
      .pools = {s->pools[LANE_THREAD], s->pools[LANE_PROCESS]},
      .cat = &s->catalog,
      .lag = &s->lag,
      .store = s->store,
      .files_root = s->files_root,
      .max_upload = cfg->max_upload,
      .logs = s->logs,
      .started_ms = (uint64_t)clock_mono_ms(),
      .auth = cfg->auth_token_file ? &s->auth : NULL,
      .metrics_public = cfg->metrics_public,
      .access_log = s->access_log,
      .cluster = s->cluster,
      .node_id = s->node_id,
      .node_url = s->node_url,
  };
  if (!s->cluster)
    cluster_names(s, cfg->port); /* GET /nodes names this one node too */
  if (s->cluster && api_remote_start(&s->api) != 0)
    goto out_pool;
  if (cfg->max_event_streams) { /* after the restore: restored jobs are not news */
    s->events = api_events_new(&s->api, cfg->max_event_streams);
    if (!s->events)
      goto out_pool;
    s->api.events = s->events;
  }
  s->http = http_server_new(&s->loop, &hc, api_on_head, api_on_request, &s->api);
  if (!s->http)
    goto out_pool;
  s->api.http = s->http;
  char lerr[512];
  if (http_server_listen(s->http, cfg->host, cfg->port, lerr, sizeof lerr) != 0) {
    log_error("cannot listen on %s:%d: %s", cfg->host, cfg->port, lerr);
    http_server_free(s->http);
    goto out_pool;
  }
  if (!is_ip_literal(cfg->host)) /* a name: which of its addresses */
    log_info("--host %s: listening on %s", cfg->host, http_server_address(s->http));
  if (!s->cluster)
    cluster_names(s, http_server_port(s->http));
  if (s->cluster) {
    cluster_set_listener(s->cluster, api_on_cluster_job, api_cluster_streams, &s->api); /* its name and address now that the port is known; then the store thread starts */
    cluster_names(s, http_server_port(s->http));
    if (store_load(s->store, NULL, NULL) != 0) {
      log_error("cannot start the store thread");
      http_server_free(s->http);
      goto out_pool;
    }
    log_info("cluster: node %s (%s) on PostgreSQL; heartbeat %lld ms, lease %lld ms", s->node_id, s->node_url,
             (long long)cfg->heartbeat_ms, (long long)cfg->lease_timeout_ms);
  }

  looplag_start(&s->lag, &s->loop, 100);
  uv_timer_init(&s->loop, &s->drain_timer);
  s->drain_timer.data = s;
  uv_signal_init(&s->loop, &s->sigterm);
  uv_signal_init(&s->loop, &s->sigint);
  s->sigterm.data = s->sigint.data = s;
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_signal_start(&s->sigint, on_signal, SIGINT);

  printf("offload listening on http://%s%s%s:%d (%u %s%s)\n", cfg->host[0] && strchr(cfg->host, ':') ? "[" : "",
         cfg->host, strchr(cfg->host, ':') ? "]" : "", http_server_port(s->http), total_workers(s),
         cfg->run_inline ? "inline, blocking" : total_workers(s) == 1 ? "worker" : "workers",
         s->pools[LANE_PROCESS] ? (s->pools[LANE_THREAD] ? ", threads and processes" : ", processes") : "");
  if (cfg->auth_token_file)
    printf("auth: on (%zu token%s)\n", s->auth.n, s->auth.n == 1 ? "" : "s");
  else
    printf("auth: off (every endpoint is open; --auth-token-file FILE to require a token)\n");
  fflush(stdout);

  uv_run(&s->loop, UV_RUN_DEFAULT);
  registry_free(s->reg);
  s->reg = NULL;
  uv_run(&s->loop, UV_RUN_DEFAULT); /* close callbacks */
  code = 0;
  goto out_catalog;

out_pool:
  api_remote_free(&s->api);
  for (int l = 0; l < LANE_N; l++)
    if (s->pools[l])
      pool_free(s->pools[l]);
  api_logs_free(s->logs);
  api_events_free(s->events);
  if (s->store)
    store_close(s->store);
  s->store = NULL;
  cluster_free(s->cluster);
  s->cluster = NULL;
  uv_run(&s->loop, UV_RUN_DEFAULT); /* worker processes exit, handles close */
  registry_free(s->reg);
  uv_run(&s->loop, UV_RUN_DEFAULT);
out_catalog:
  tasks_catalog_fini(&s->catalog);
  tasks_libraries_fini(); /* every worker thread is gone */
  if (s->files_temp)
    remove_tree(s->files_root);
out_loop:
  if (uv_loop_close(&s->loop) != 0)
    log_warn("event loop closed with handles still open");
  plugins_fini(&s->plugins); /* their code stays mapped: see tasks/plugin.h */
  commands_free(&s->commands); /* after the catalog: its defs pointed in */
  free(s->worker_argv);
out_free:
  close_ops(s);
  free(s);
  return code;
}
