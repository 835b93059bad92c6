/* api/api_int: what the api's files share — private to src/api.
 * Loop thread only, like the rest of the api. */
#ifndef OFFLOAD_API_API_INT_H
#define OFFLOAD_API_API_INT_H

#include <jansson.h>

#include "api/api.h"
#include "http/query.h"
#include "http/router.h"

/* ---- routes (routes.c) ---- */

typedef void (*api_handler_cb)(api_t *a, http_req_t *req, const router_match_t *m);

typedef struct api_route {
  api_handler_cb handler;
  http_body_mode_t body; /* how the route takes a body */
  size_t body_limit;     /* 0: the server's --max-body */
} api_route_t;

/* ---- errors (errors.c): one table of code → status ---- */

typedef enum {
  API_E_BAD_REQUEST,
  API_E_INVALID_PARAM,
  API_E_MISSING_PARAM,
  API_E_UNKNOWN_PARAM,
  API_E_INVALID_JSON,
  API_E_INVALID_BODY,
  API_E_UNKNOWN_TASK,
  API_E_UNAUTHORIZED, /* 401: no valid bearer token (--auth-token-file) */
  API_E_NOT_FOUND,
  API_E_NO_LOG, /* 404: the job's task keeps no log (not a command task) */
  API_E_METHOD_NOT_ALLOWED,
  API_E_ALREADY_FINISHED,
  API_E_PAYLOAD_TOO_LARGE,
  API_E_UNSUPPORTED_MEDIA_TYPE,
  API_E_HEADER_TOO_LARGE,
  API_E_QUEUE_FULL,
  API_E_SHUTTING_DOWN,
  API_E_STORE_UNAVAILABLE,
  API_E_TOO_MANY_STREAMS, /* 503: --max-event-streams are open */
  API_E_IDEMPOTENCY_CONFLICT,
  API_E_INTERNAL,
} api_err_t;

/* Replies {"error":{"code","message"[,"param"]}} with the code's status.
 * Every text is made valid UTF-8 first (client bytes are echoed), so a
 * client error is always a 4xx with valid JSON. `headers` may be NULL. */
void api_error(http_req_t *req, api_err_t e, const http_headers_t *headers, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same with an explicit status and code (a failed job's own code). */
void api_error_as(http_req_t *req, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Replies `body` (consumed) as JSON with a trailing newline. */
void api_reply_json(http_req_t *req, int status, const http_headers_t *headers, json_t *body);
/* OFF_EFULL → 429 queue_full, OFF_ESTOPPED → 503, else 500. */
void api_reply_submit_error(http_req_t *req, int rc);
/* A request the http layer rejected (req->error). */
void api_reply_http_error(http_req_t *req);

/* ---- job objects (json.c) ---- */

json_t *api_job_json(const job_t *j, size_t pos);      /* GET /jobs/<id> shape */
json_t *api_seed_job_json(const job_t *j, size_t pos); /* GET /tasks/reports/<id> shape */
/* Replies 200 with the job (at its current queue place). */
void api_reply_job(api_t *a, http_req_t *req, int status, const http_headers_t *headers, job_t *j);
/* Appends the job's JSON text to `out` (cached once final). 0 or OFF_ENOMEM. */
int api_job_text(const job_t *j, size_t pos, buf_t *out);

/* ---- parameters (params.c): helpers that fail have already replied ---- */

bool api_parse_query(http_req_t *req, query_t *q, const char *const *allowed);
bool api_no_query(http_req_t *req);
bool api_int_param(http_req_t *req, const char *name, const char *text, size_t len, int64_t min, int64_t max,
                   int64_t *out);
/* The job named by the route's :id, or NULL after answering 404. */
job_t *api_find_job_or_404(api_t *a, http_req_t *req, const router_match_t *m);
/* Submits a one-integer-parameter job from a query/path value. */
/* `keyed`: honour an Idempotency-Key header (the seed's start URL). */
job_t *api_submit_int_job(api_t *a, http_req_t *req, const char *task, const char *param, const char *text,
                          size_t len, bool keyed);
bool api_media_type_is_json(const char *ct);
/* The request's Idempotency-Key (NULL when absent); false after a 400. */
bool api_idempotency_key(http_req_t *req, const char **key);
/* A job already submitted with `key`: true after replying 200 with it (the
 * same task and params) or 409 idempotency_conflict (different ones);
 * false when there is none. `seed`: answer in the seed's shape. */
bool api_reply_existing(api_t *a, http_req_t *req, const char *key, const offload_task_def_t *def,
                        const json_t *params, bool seed);
/* The 200 for a repeated request: the job, or the seed's short form. */
void api_reply_same(api_t *a, http_req_t *req, job_t *j, bool seed);

/* ---- cold jobs (cold.c) ---- */

/* A job's reply read back from the store (job_is_cold(j)): `status` with
 * the job (or, `seed`, the seed's shape) once its row arrives, 404 if
 * retention deleted it meanwhile. `location`: a Location header, or NULL. */
void api_reply_cold(api_t *a, http_req_t *req, int status, const char *location, job_t *j, bool seed);
/* GET /jobs/<id>/events of a cold job: an event stream of its one job
 * event (id `event_id`), then the end; 404 if retention deleted it. */
void api_reply_cold_event(api_t *a, http_req_t *req, job_t *j, uint64_t event_id);

/* One job of a listing: its text now (hot), or what the row needs (cold). */
typedef struct api_list_entry {
  char *text; /* owned, NUL-terminated; NULL when cold */
  bool cold;
  job_t meta; /* cold: the job's fields (pointers cleared) */
} api_list_entry_t;
int api_list_entry_set(api_list_entry_t *e, const job_t *j, size_t place);
void api_list_entries_free(api_list_entry_t *e, size_t n);
/* Answers a listing whose entries include cold jobs; takes `e`. */
void api_reply_list_cold(api_t *a, http_req_t *req, api_list_entry_t *e, size_t n);

/* ---- another node's jobs (remote.c; a cluster) ---- */

typedef enum { API_REMOTE_GET, API_REMOTE_DELETE, API_REMOTE_EVENTS, API_REMOTE_FILE, API_REMOTE_LOG } api_remote_t;
/* In a cluster, a job this node does not hold is read from (or canceled
 * in) the store: true when the reply is taken care of that way (the
 * route's :id names no job held here); false when the caller goes on with
 * the local job. `wait_s`: GET's ?wait. */
bool api_remote_try(api_t *a, http_req_t *req, const router_match_t *m, api_remote_t what, int64_t wait_s);
/* GET /jobs in a cluster: from the store. */
void api_remote_list(api_t *a, http_req_t *req, const char *status, int64_t limit);
/* A submission whose Idempotency-Key another node's job holds (`row`):
 * the 200 with that job, or 409 when the task or params differ. */
void api_reply_existing_row(api_t *a, http_req_t *req, const store_job_t *row, const offload_task_def_t *def,
                            const json_t *params);
/* The JSON text of a stored job (malloc'd), or NULL. */
char *api_row_text(api_t *a, const store_job_t *row, size_t pos);
void h_nodes(api_t *a, http_req_t *req, const router_match_t *m);
/* events.c: another node's job in the event streams. */
void api_events_remote(api_events_t *ev, const char *id, const char *text, bool final);
void api_events_open_remote(api_t *a, http_req_t *req, const char *id, const char *text, bool final);

/* ---- held replies (hold.c) ---- */

/* HOLD_JOB: GET /jobs/<id>?wait; HOLD_FIB: GET /fibonacci/<n>; the two
 * HOLD_ACCEPT kinds answer a submission's 202 once the store kept its job
 * (or 503 store_unavailable if it could not). */
/* HOLD_SAME_*: a request repeating the Idempotency-Key of a job whose row
 * is on the way to the store gets the 200 for that job once it is kept. */
/* HOLD_IMAGE: POST /api/images/process, answered with the first output file. */
typedef enum { HOLD_JOB, HOLD_FIB, HOLD_ACCEPT_JOB, HOLD_ACCEPT_SEED, HOLD_SAME_JOB, HOLD_SAME_SEED, HOLD_IMAGE } hold_kind_t;
/* Replies when `j` is final (or after timeout_ms, when not 0). Returns 0 or
 * OFF_ENOMEM (nothing was replied). */
int api_hold(api_t *a, http_req_t *req, job_t *j, hold_kind_t kind, uint64_t timeout_ms);
/* The 202 of POST /jobs (Location + job) and of /tasks/reports/start. */
void api_reply_job_accepted(api_t *a, http_req_t *req, job_t *j);
void api_reply_seed_accepted(http_req_t *req, job_t *j);
void api_reply_fib(http_req_t *req, job_t *j);

/* ---- handlers ---- */

void h_health(api_t *a, http_req_t *req, const router_match_t *m);
void h_tasks(api_t *a, http_req_t *req, const router_match_t *m);

/* Every pool's figures summed (system.c): what /health and /metrics show. */
typedef struct api_pool_totals {
  uint64_t workers, busy, depth, capacity;
  uint64_t restarts[POOL_NRESTART];
} api_pool_totals_t;
void api_pool_totals(api_t *a, api_pool_totals_t *t);
void h_workers(api_t *a, http_req_t *req, const router_match_t *m);
void h_metrics(api_t *a, http_req_t *req, const router_match_t *m);
void h_report_start(api_t *a, http_req_t *req, const router_match_t *m);
void h_report_status(api_t *a, http_req_t *req, const router_match_t *m);
void h_fibonacci(api_t *a, http_req_t *req, const router_match_t *m);
void h_jobs_list(api_t *a, http_req_t *req, const router_match_t *m);
void h_jobs_post(api_t *a, http_req_t *req, const router_match_t *m);
void h_job_get(api_t *a, http_req_t *req, const router_match_t *m);
void h_job_file(api_t *a, http_req_t *req, const router_match_t *m);    /* files.c */
void h_jobs_upload(api_t *a, http_req_t *req, const router_match_t *m); /* upload.c */
void h_images_process(api_t *a, http_req_t *req, const router_match_t *m); /* upload.c */
/* Streams one of a complete job's files (200, or 304 on If-None-Match). */
void api_send_file(api_t *a, http_req_t *req, const job_t *j, const store_file_t *f);
/* The held reply of POST /api/images/process once its job is final. */
void api_reply_image(api_t *a, http_req_t *req, job_t *j);
void h_job_delete(api_t *a, http_req_t *req, const router_match_t *m);
void h_job_log(api_t *a, http_req_t *req, const router_match_t *m); /* log.c */
void h_events(api_t *a, http_req_t *req, const router_match_t *m);     /* events.c */
void h_job_events(api_t *a, http_req_t *req, const router_match_t *m); /* events.c */
void h_ui(api_t *a, http_req_t *req, const router_match_t *m);      /* ui.c: GET / and /ui/<name> */

#endif
