/* server: builds the whole server from a configuration (loop, pool,
 * registry, http, api, loop-lag monitor, signals), runs it, drains it on
 * SIGTERM/SIGINT, and tears it down. Call from the main thread. */
#ifndef OFFLOAD_SERVER_H
#define OFFLOAD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tasks/plugin.h"

typedef struct server_config {
  const char *host;
  int port;
  unsigned workers;
  size_t max_queue;
  int64_t max_iterations;
  size_t max_body;
  size_t max_upload; /* --max-upload */
  uint64_t max_image_pixels; /* --max-image-pixels */
  int64_t job_timeout_ms;
  int64_t retention_s;
  size_t max_finished;
  size_t cache_finished;        /* --cache-finished: finished jobs kept whole in memory (SQLite store) */
  int64_t keepalive_timeout_s;
  size_t max_connections;
  int64_t drain_timeout_s;
  int64_t request_timeout_ms;
  size_t max_event_streams; /* --max-event-streams: open GET /events streams at most (0 = none) */
  int worker_nice;
  bool run_inline; /* --inline: demonstration only, jobs block the loop */
  /* Isolation (see docs/ARCHITECTURE.md). */
  bool isolation_process;       /* --isolation process: every kind in worker processes */
  unsigned process_workers;     /* 0 = as many as --workers */
  uint64_t worker_memory_mb;    /* 0 = none */
  uint64_t worker_cpu_s;        /* 0 = none; per job */
  uint64_t kill_grace_ms;
  uint64_t max_jobs_per_worker; /* 0 = never recycle */
  int64_t retry_backoff_ms;
  bool test_tasks;              /* --enable-test-tasks */
  /* --plugin FILE, in the order given (borrowed: main's argv). */
  const char *plugins[PLUGIN_MAX];
  size_t nplugins;
  const char *commands; /* --commands FILE (NULL = none) */
  /* The job store. */
  bool store_sqlite;            /* --store sqlite (the default; else memory) */
  const char *data_dir;         /* --data-dir */
  bool durability_relaxed;      /* --durability relaxed (else strict) */
  /* A cluster (--store postgres). */
  bool store_postgres;
  const char *pg_url;        /* --pg-url */
  const char *node_id;       /* --node-id (NULL: host name:port) */
  const char *advertise_url; /* --advertise-url (NULL: http://host:port) */
  int64_t heartbeat_ms;      /* --heartbeat-ms */
  int64_t lease_timeout_ms;  /* --lease-timeout-ms */
  /* Operations. */
  const char *auth_token_file; /* --auth-token-file (NULL = every endpoint is open) */
  bool metrics_public;         /* --metrics-public: GET /metrics needs no token */
  const char *access_log;      /* --access-log: "stderr" (or "-"), "off", or a file (appended to) */
  bool log_json;               /* --log-format json (else text): the access log's lines */
} server_config_t;

/* Fills in every default (workers = online CPUs). */
void server_config_defaults(server_config_t *cfg);

/* Runs until drained after a signal. Prints "offload listening on
 * http://HOST:PORT (...)" to stdout once it listens, then "auth: on (N
 * tokens)" or "auth: off (...)". Returns the process exit code. */
int server_run(const server_config_t *cfg);

#endif
