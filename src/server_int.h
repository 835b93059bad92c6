/* server_int: the server's state and the steps that build it, shared by
 * server.c (the lifecycle: run, drain, stop) and server_setup.c (what a
 * server is built from: operations, tasks, the store, pools, a cluster
 * node's names). Main thread while building; the loop thread after. */
#ifndef OFFLOAD_SERVER_INT_H
#define OFFLOAD_SERVER_INT_H

#include "server.h"

#include <uv.h>

#include "api/api.h"
#include "cluster/cluster.h"
#include "commands/commands.h"
#include "http/http.h"
#include "offload/pool.h"
#include "registry/registry.h"
#include "store/store.h"
#include "tasks/plugin.h"
#include "tasks/tasks.h"
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

/* ---- server_setup.c ---- */
/* --auth-token-file and --access-log: false after saying why on stderr. */
bool open_ops(server_t *s);
/* After the loop ended. */
void close_ops(server_t *s);
/* Plug-ins, command tasks, the catalog, the worker command line. False
 * after saying why on stderr. */
bool load_tasks(server_t *s);
bool server_open_store(server_t *s);
/* The pools (threads, and processes when a kind runs there). */
bool start_pools(server_t *s);
unsigned total_workers(const server_t *s);
/* The node's name, address and each lane's tasks (a cluster's claims). */
void cluster_names(server_t *s, int port);
/* Removes a dir and what is in it (the memory store's files, at exit). */
void remove_tree(const char *dir);

#endif
