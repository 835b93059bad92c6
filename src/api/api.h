/* api: the route table and its handlers; the only place where errors become
 * HTTP statuses and JSON error bodies (docs/API.md is the contract).
 *
 * Threads: loop thread only. Handlers read and change the registry, submit
 * through it, and never block: every reply is built from memory.
 *
 * Files: routes.c (the table, head and request callbacks), errors.c (error
 * table and replies), json.c (job objects, cached when final), params.c
 * (query and path parameters), hold.c (held replies), and one file per
 * resource: jobs.c, seed.c, system.c, workers.c, metrics.c.
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
} api_t;

/* The http_head_cb and http_request_cb; `data` is the api_t. */
void api_on_head(http_req_t *req, void *data);
void api_on_request(http_req_t *req, void *data);

#endif
