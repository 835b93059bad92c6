/* api: the route table and its handlers; the only place where errors become
 * HTTP statuses and JSON error bodies (docs/API.md is the contract).
 *
 * Threads: loop thread only. Handlers read and change the registry, submit
 * through it, and never block: every reply is built from memory.
 *
 * Files: routes.c (the table, head and request callbacks), errors.c (error
 * table and replies), json.c (job objects, cached when final), params.c
 * (query and path parameters), hold.c (held replies), and one file per
 * resource: jobs.c, seed.c, system.c, workers.c, metrics.c, files.c,
 * log.c (a command job's output, GET /jobs/<id>/log), events.c and
 * events_req.c (server-sent events, GET /events and GET
 * /jobs/<id>/events); remote.c (a cluster's replies about other nodes'
 * jobs, GET /nodes); auth.c (bearer
 * tokens: api_on_head refuses a request without one before any handler
 * or body); ui.c (the web dashboard, GET / and /ui/<name>, from files
 * compiled into the binary).
 *
 * Held replies (GET /jobs/<id>?wait=S, GET /fibonacci/<n>) are waiters: a
 * registry watch on the job, the request, and (for wait) a timer. A waiter is
 * freed when its timer handle closes, after whichever comes first of: the job
 * became final, the wait ran out, the client went away. */
#ifndef OFFLOAD_API_API_H
#define OFFLOAD_API_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http/http.h"
#include "offload/pool.h"
#include "registry/registry.h"
#include "tasks/tasks.h"
#include "util/logq.h"
#include "util/looplag.h"

/* The loop's side of running commands' logs (api/log.c): a uv_async_t the
 * writer threads wake (commands/log.h's notify hook) and the requests that
 * follow a log (GET /jobs/<id>/log?follow=1). Loop thread only, but for
 * the hook. */
typedef struct api_logs api_logs_t;

/* Before any worker thread starts (it sets cmdlog_set_notify): NULL on
 * ENOMEM. */
api_logs_t *api_logs_new(uv_loop_t *loop);
/* Shutdown, before http_server_free: every follower's body is ended (a
 * follower sending the saved file is left to the connection's close).
 * A follow request from then on gets the log as it is now. */
void api_logs_stop(api_logs_t *l);
/* Once no writer can run (the pools are freed): clears the hook and closes
 * the handle; the memory goes in its close callback (run the loop once
 * more). NULL is ignored. */
void api_logs_free(api_logs_t *l);
/* Requests following a log now (tests). */
size_t api_logs_followers(const api_logs_t *l);

/* Server-sent events (api/events.c): GET /events and GET
 * /jobs/<id>/events, fed by the registry's observer. Loop thread only. */
typedef struct api_events api_events_t;

/* ---- authentication (auth.c) ----
 * --auth-token-file: bearer tokens, kept only as SHA-256 digests. Loaded
 * at start-up on the main thread; checked on the loop thread. */

#define API_AUTH_TOKEN_MIN 32
#define API_AUTH_DIGEST 32

typedef struct api_auth {
  unsigned char (*digests)[API_AUTH_DIGEST];
  size_t n;
} api_auth_t;

typedef enum {
  API_AUTH_OK = 0,
  API_AUTH_MISSING,    /* no Authorization header */
  API_AUTH_NOT_BEARER, /* another scheme (Basic, ...) */
  API_AUTH_WRONG,      /* a bearer token that is none of ours */
} api_auth_result_t;

/* Reads a token file: one token per line; blank lines and lines whose
 * first non-blank character is '#' are skipped; spaces around a token are
 * trimmed. A token is at least API_AUTH_TOKEN_MIN visible ASCII characters
 * (no space). Returns 0, or OFF_EINVAL / OFF_ESYS / OFF_ENOMEM with `err`
 * naming the file and the line at fault (never a token's text). A file
 * other users may read gets a warning in the log. */
int api_auth_load(api_auth_t *a, const char *path, char *err, size_t errsize);
/* The same over `len` bytes of text; `name` stands for the file in errors. */
int api_auth_parse(api_auth_t *a, const char *text, size_t len, const char *name, char *err, size_t errsize);
void api_auth_fini(api_auth_t *a);
/* Checks an Authorization header's value (NULL: none). The scheme is
 * case-insensitive; the token is compared in constant time against every
 * token (see auth.c). */
api_auth_result_t api_auth_check(const api_auth_t *a, const char *authorization);

/* Built by the server (server.c) before the http server starts; every
 * pointer is borrowed and outlives the api. */
typedef struct api {
  uv_loop_t *loop;
  registry_t *reg;
  pool_t *pools[LANE_N]; /* a lane no kind uses has none */
  http_server_t *http;
  const tasks_catalog_t *cat;
  const looplag_t *lag;
  store_t *store;      /* the registry's store (reads of cold jobs); NULL = none */
  const char *files_root; /* jobs' output files: <root>/<id>/<name>; NULL = none */
  uint64_t max_upload;    /* --max-upload: POST /jobs/<task> bodies */
  uint64_t started_ms; /* monotonic */
  size_t waiters;      /* held replies now */
  api_logs_t *logs;    /* api_logs_new's; NULL: ?follow=1 answers as without it */
  api_events_t *events; /* api_events_new's; NULL: /events answers 503 too_many_streams */
  const api_auth_t *auth;   /* --auth-token-file; NULL: every endpoint is open */
  bool metrics_public;      /* --metrics-public: GET /metrics needs no token */
  const logq_t *access_log; /* for /metrics; NULL: no access log */
  /* A cluster (--store postgres): this node's part, and the state of its
   * replies about other nodes' jobs (api/remote.c). NULL otherwise. */
  struct cluster *cluster;
  struct api_remote_state *remote;
  const char *node_id, *node_url; /* this node's name and address (GET /nodes) */
} api_t;

/* A cluster's remote replies (api/remote.c): start once the api_t is
 * filled in (0 or OFF_ENOMEM); free after http_server_free (the timers go
 * in their close callbacks). */
int api_remote_start(api_t *a);
void api_remote_free(api_t *a);
/* The cluster's listener (cluster_set_listener, data = the api_t): other
 * nodes' job changes for waiters and event streams; open streams for the
 * heartbeat. */
void api_on_cluster_job(const char *id, bool final, bool self, void *data);
size_t api_cluster_streams(void *data);

/* Installs the registry observer (a->reg must outlive it, as `a` must).
 * `max_streams`: open streams at most (--max-event-streams). NULL on
 * ENOMEM. */
api_events_t *api_events_new(api_t *a, size_t max_streams);
/* Shutdown, before http_server_free: every stream gets the events it lacks
 * and its body ends; a request from then on gets 503 shutting_down. */
void api_events_stop(api_events_t *ev);
/* Stops (if not yet), removes the observer (before registry_free) and
 * closes the handles; the memory goes in their close callbacks (run the
 * loop once more). NULL is ignored. */
void api_events_free(api_events_t *ev);
/* Streams open now (tests). */
size_t api_events_streams(const api_events_t *ev);

/* The http_head_cb and http_request_cb; `data` is the api_t. */
void api_on_head(http_req_t *req, void *data);
void api_on_request(http_req_t *req, void *data);

#endif
