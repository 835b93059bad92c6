/* api/metrics: GET /metrics in the Prometheus text format (0.0.4). Each
 * subsystem's figures are written by one function here, in the order a
 * reader scans them: jobs, queue and workers, http, the access log, the
 * store, the loop. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_int.h"
#include "cluster/cluster.h"
#include "util/clock.h"

static void put_metric(FILE *f, const char *type, const char *name, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_hist(FILE *f, const char *name, const char *help, const hist_t *h) {
  put_metric(f, "histogram", name, help);
  uint64_t cum = 0;
  for (size_t i = 0; i < h->nbounds; i++) {
    cum += h->counts[i];
    fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, h->bounds[i], cum);
  }
  cum += h->counts[h->nbounds];
  fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.9g\n%s_count %" PRIu64 "\n", name, cum, name, h->sum, name,
          h->count);
}

static void put_u64(FILE *f, const char *type, const char *name, const char *help, uint64_t v) {
  put_metric(f, type, name, help);
  fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void write_jobs(FILE *f, api_t *a) {
  const registry_stats_t *rs = registry_stats(a->reg);
  put_metric(f, "counter", "offload_jobs_total", "Jobs that reached a final status, by task and status.");
  for (size_t i = 0; i < a->cat->n; i++)
    for (int s = JOB_COMPLETE; s < JOB_NSTATUS; s++)
      fprintf(f, "offload_jobs_total{task=\"%s\",status=\"%s\"} %" PRIu64 "\n", a->cat->defs[i].name,
              job_status_name((job_status_t)s), rs->finals[i][s]);
  put_u64(f, "counter", "offload_jobs_submitted_total", "Jobs accepted.", rs->submitted);
  put_u64(f, "counter", "offload_job_attempts_total", "Runs started (a retried job runs more than once).",
          rs->attempts);
  put_u64(f, "counter", "offload_job_retries_total", "Runs scheduled again after a worker fault or a timeout.",
          rs->retries);
  put_u64(f, "gauge", "offload_jobs_retained", "Jobs held in memory (live and finished).", rs->jobs);
  put_hist(f, "offload_job_duration_seconds", "Run time of jobs that ran (start to final status).", &rs->run_seconds);
}

static void write_pool(FILE *f, api_t *a) {
  api_pool_totals_t t;
  api_pool_totals(a, &t);
  put_u64(f, "gauge", "offload_queue_depth", "Jobs waiting for a worker.", t.depth);
  put_u64(f, "gauge", "offload_queue_capacity", "Most jobs that may wait.", t.capacity);
  put_u64(f, "gauge", "offload_workers", "Workers (threads and processes).", t.workers);
  put_u64(f, "gauge", "offload_workers_busy", "Workers running a job now.", t.busy);
  put_metric(f, "counter", "offload_worker_restarts_total", "Worker processes replaced, by cause.");
  for (int c = 0; c < POOL_NRESTART; c++)
    fprintf(f, "offload_worker_restarts_total{cause=\"%s\"} %" PRIu64 "\n", pool_restart_name((pool_restart_t)c),
            t.restarts[c]);
}

static void write_http(FILE *f, api_t *a) {
  const http_stats_t *hs = http_server_stats(a->http);
  put_u64(f, "gauge", "offload_http_connections", "Open client connections.", hs->connections);
  put_u64(f, "counter", "offload_http_connections_accepted_total", "Connections accepted.", hs->accepted);
  put_u64(f, "counter", "offload_http_connections_rejected_total",
          "Connections closed at once (over --max-connections).", hs->rejected);
  put_u64(f, "counter", "offload_http_accept_failures_total",
          "Connections accepted and closed at once because serving them failed (no memory, no file descriptor, a "
          "socket option).",
          hs->accept_failures);
  put_u64(f, "counter", "offload_http_slow_clients_dropped_total",
          "Connections dropped because the client stopped reading a streamed reply.", hs->dropped_slow);
  put_u64(f, "counter", "offload_http_output_paused_total",
          "Times a connection stopped parsing because its unsent replies were over the high-water mark.",
          hs->paused_output);
  put_u64(f, "gauge", "offload_held_replies", "Requests waiting for a job to finish.", a->waiters);
  put_metric(f, "counter", "offload_http_requests_total", "Replies sent, by status code.");
  for (int code = 100; code < 600; code++)
    if (hs->by_status[code])
      fprintf(f, "offload_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code, hs->by_status[code]);
}

static void write_access_log(FILE *f, api_t *a) {
  logq_stats_t st = {0, 0};
  if (a->access_log)
    logq_stats(a->access_log, &st);
  put_u64(f, "counter", "offload_access_log_lines_total", "Access-log lines written.", st.lines);
  put_u64(f, "counter", "offload_access_log_dropped_total",
          "Access-log lines dropped: more than 1 MiB waited for a slow or stuck reader, or the write failed.",
          st.dropped);
}

static void write_store(FILE *f, api_t *a) {
  if (!a->store || store_kind(a->store) == STORE_MEMORY)
    return;
  const store_stats_t *ss = store_stats(a->store);
  put_u64(f, "counter", "offload_store_commits_total", "Transactions the job store committed (group commits).",
          ss->commits);
  put_u64(f, "counter", "offload_store_writes_total", "Job rows written (inserts, state changes, deletes).",
          ss->writes);
  put_u64(f, "counter", "offload_store_write_failures_total",
          "Writes the store could not commit (disk full or I/O error).", ss->failures);
  put_u64(f, "counter", "offload_store_reads_total", "Reads of old finished jobs' rows (cold jobs).", ss->reads);
  put_u64(f, "counter", "offload_store_expired_total", "Rows deleted by the store's own retention sweep.",
          ss->expired);
  put_u64(f, "gauge", "offload_jobs_cold",
          "Finished jobs whose params and result are only on disk (beyond --cache-finished).",
          registry_stats(a->reg)->cold);
}

/* A cluster's figures (--store postgres). */
static void write_cluster(FILE *f, api_t *a) {
  if (!a->cluster)
    return;
  const store_stats_t *ss = store_stats(a->store);
  const cluster_stats_t *cs = cluster_stats(a->cluster);
  put_u64(f, "counter", "offload_cluster_claims_total", "Jobs this node claimed from the shared queue.", ss->claimed);
  put_u64(f, "counter", "offload_cluster_claim_statements_total", "Claim statements this node sent.", cs->claims);
  put_u64(f, "counter", "offload_cluster_lease_expiries_total",
          "Nodes this node found dead (their lease lapsed) and took the running jobs of.", cs->lease_expiries);
  put_u64(f, "counter", "offload_cluster_requeued_total",
          "Running jobs of dead nodes this node queued again (or failed when out of attempts).", cs->requeued);
  put_u64(f, "counter", "offload_cluster_fenced_writes_total",
          "Writes refused because another node holds the job now (this node's claim had lapsed).", ss->fenced);
  put_u64(f, "counter", "offload_cluster_lease_lost_total",
          "Times this node learned that the others had presumed it dead.", cs->lost);
  put_u64(f, "counter", "offload_cluster_notifications_total", "Notifications received from the database.",
          cs->notifications);
  put_u64(f, "gauge", "offload_store_up", "1 while the database answers.", store_ok(a->store) ? 1 : 0);
  hist_t rtt;
  store_roundtrip(a->store, &rtt);
  put_hist(f, "offload_store_roundtrip_seconds", "Database round trips (one statement sent and answered).", &rtt);
}

static void write_loop(FILE *f, api_t *a) {
  put_hist(f, "offload_event_loop_lag_seconds", "How late the event loop ran a timer (sampled every 100 ms).",
           &a->lag->hist);
  put_metric(f, "gauge", "offload_event_loop_lag_max_seconds", "Largest loop lag seen.");
  fprintf(f, "offload_event_loop_lag_max_seconds %.9g\n", a->lag->max_s);
  put_metric(f, "gauge", "offload_uptime_seconds", "Seconds since start.");
  fprintf(f, "offload_uptime_seconds %.3f\n", (double)(clock_mono_ms() - (int64_t)a->started_ms) / 1000.0);
}

void h_metrics(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  write_jobs(f, a);
  write_pool(f, a);
  write_http(f, a);
  write_access_log(f, a);
  write_store(f, a);
  write_cluster(f, a);
  write_loop(f, a);
  if (fclose(f) != 0 || !text) {
    free(text);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
}
