/* server: wiring and lifecycle. See server.h.
 *
 * Shutdown (first SIGTERM/SIGINT): stop accepting, answer new submissions
 * with 503, cancel queued jobs, give running ones --drain-timeout-s, then
 * cancel them too; once no job is in flight, close every handle and let the
 * loop end. A second signal exits at once. */
#include "server_int.h"

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

static void on_stored_row(const store_job_t *row, void *data) {
  server_t *s = data;
  if (registry_restore(s->reg, row) != 0)
    log_error("store: out of memory restoring job %s", row->id);
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

  if (!server_open_store(s)) {
    tasks_catalog_fini(&s->catalog);
    goto out_loop;
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
  /* The node's name and address now that the port is known (GET /nodes;
   * a cluster's store thread starts only then). */
  cluster_names(s, http_server_port(s->http));
  if (s->cluster) {
    cluster_set_listener(s->cluster, api_on_cluster_job, api_cluster_streams, &s->api);
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
