/* server_setup: what a server is built from (server_int.h): its
 * operations (token file, access log), its tasks (plug-ins, command
 * tasks, the catalog), its job store and files root, its pools, and a
 * cluster node's names. Main thread, before the loop serves. */
#include "server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/run.h"
#include "pool/item.h"
#include "util/err.h"
#include "util/log.h"

/* --auth-token-file and --access-log, before anything starts: a bad token
 * file or an access log that cannot be opened stops the start-up at once.
 * Returns false after saying why on stderr. */
bool open_ops(server_t *s) {
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
void close_ops(server_t *s) {
  logq_free(s->access_log);
  s->access_log = NULL;
  if (s->access_fd >= 0)
    close(s->access_fd);
  s->access_fd = -1;
  api_auth_fini(&s->auth);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* The memory store's files root at exit (the loop has stopped). */
void remove_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* The job store the flags name, and the files root that goes with it
 * (beside the database; a cluster node's own dir; with the memory store a
 * temp dir removed at exit). A cluster's node also gets its cluster
 * module (the store tells it its events). False after saying why on
 * stderr, with nothing of it left open. */
bool server_open_store(server_t *s) {
  const server_config_t *cfg = s->cfg;
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
      return false;
    }
    bool id_ok = !cfg->node_id || (cfg->node_id[0] && strlen(cfg->node_id) <= 200);
    for (const char *c = cfg->node_id; id_ok && c && *c; c++)
      id_ok = *c > 0x20 && *c < 0x7f;
    if (!id_ok) {
      fprintf(stderr, "offload: --node-id must be 1 to 200 visible ASCII characters without spaces\n");
      return false;
    }
    if (cfg->lease_timeout_ms < 2 * cfg->heartbeat_ms) {
      fprintf(stderr, "offload: --lease-timeout-ms (%lld) must be at least twice --heartbeat-ms (%lld), or a "
                      "live node would be judged dead between two heartbeats\n",
              (long long)cfg->lease_timeout_ms, (long long)cfg->heartbeat_ms);
      return false;
    }
    /* The node's files: inputs it accepted and outputs it made. */
    mkdir(cfg->data_dir, 0755);
    snprintf(s->files_root, sizeof s->files_root, "%s/files", cfg->data_dir);
    cluster_names(s, cfg->port); /* the port may change once listening (--port 0) */
    cluster_config_t cc = {.node_id = s->node_id};
    s->cluster = cluster_new(&s->loop, &cc);
    if (!s->cluster) {
      return false;
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
    return false;
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
      return false;
    }
    s->files_temp = true;
  }

  return true;
}

/* The plug-ins, then the catalog: the built-in kinds and the plug-ins'
 * (after them), and the command line of a worker process, which loads the
 * same plug-ins (by their resolved paths: a worker may not share our idea
 * of the working directory). Returns false after saying why on stderr. */
bool load_tasks(server_t *s) {
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
void cluster_names(server_t *s, int port) {
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
bool start_pools(server_t *s) {
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

unsigned total_workers(const server_t *s) {
  unsigned n = 0;
  for (int l = 0; l < LANE_N; l++)
    n += s->pools[l] ? pool_workers(s->pools[l]) : 0;
  return n;
}

