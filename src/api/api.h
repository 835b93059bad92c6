/* api: the route table and its handlers; the only place where errors become
 * HTTP statuses and JSON error bodies (docs/API.md is the contract).
 *
 * Threads: loop thread only. Handlers read and change the registry, submit
 * through it, and never block: every reply is built from memory.
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

typedef struct api {
  uv_loop_t *loop;
  registry_t *reg;            /* borrowed */
  pool_t *pool;               /* borrowed */
  http_server_t *http;        /* borrowed */
  const tasks_catalog_t *cat; /* borrowed */
  const looplag_t *lag;       /* borrowed */
  uint64_t started_ms;        /* monotonic */
  bool draining;              /* new submissions get 503 */
  size_t waiters;             /* held replies now */
} api_t;

/* The http_request_cb; `data` is the api_t. */
void api_on_request(http_req_t *req, void *data);

#endif
