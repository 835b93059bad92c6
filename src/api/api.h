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
 * log.c (a command job's output, GET /jobs/<id>/log), ui.c (the web
 * dashboard, GET / and /ui/<name>, from files compiled into the binary).
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
} api_t;

/* The http_head_cb and http_request_cb; `data` is the api_t. */
void api_on_head(http_req_t *req, void *data);
void api_on_request(http_req_t *req, void *data);

#endif
