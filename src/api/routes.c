/* api/routes: the route table, and the two callbacks the http layer calls:
 * api_on_head (the token check, then the body plan, before any body byte is
 * read) and api_on_request (401, 404, 405 with Allow, or the handler).
 *
 * With --auth-token-file every request but GET/HEAD /health (and /metrics
 * with --metrics-public) needs a bearer token, checked at the head, before
 * routing: a client without one learns nothing of the routes (an unknown
 * path is a 401 too), and an upload's body is never read (401 at once, the
 * connection closes after it; a body of at most 64 KiB is read and dropped
 * instead, so the connection goes on).
 *
 * Adding an endpoint is one line here plus its handler. HEAD is listed
 * where GET is safe; GETs that start work (/tasks/reports/start,
 * /fibonacci/:n) leave it out, so HEAD there is a 405. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"

#define GET_HEAD (HTTP_M_GET | HTTP_M_HEAD)

/* JSON bodies are buffered up to --max-body (limit 0); uploads stream, up
 * to --max-upload. */
#define ROUTE(h) {(h), HTTP_BODY_BUFFER, 0}
#define LIMIT_UPLOAD ((size_t)-1)

static const api_route_t R_HEALTH = ROUTE(h_health), R_METRICS = ROUTE(h_metrics), R_TASKS = ROUTE(h_tasks), R_WORKERS = ROUTE(h_workers),
                         R_REPORT_START = ROUTE(h_report_start), R_REPORT_STATUS = ROUTE(h_report_status),
                         R_FIBONACCI = ROUTE(h_fibonacci), R_JOBS_LIST = ROUTE(h_jobs_list),
                         R_JOBS_POST = ROUTE(h_jobs_post), R_JOB_GET = ROUTE(h_job_get),
                         R_JOB_DELETE = ROUTE(h_job_delete), R_JOB_FILE = ROUTE(h_job_file),
                         R_JOB_LOG = ROUTE(h_job_log), R_EVENTS = ROUTE(h_events),
                         R_JOB_EVENTS = ROUTE(h_job_events), R_JOBS_UPLOAD = {h_jobs_upload, HTTP_BODY_STREAM, LIMIT_UPLOAD},
                         R_IMAGES = {h_images_process, HTTP_BODY_STREAM, LIMIT_UPLOAD}, R_UI = ROUTE(h_ui), R_NODES = ROUTE(h_nodes);

static const http_route_t routes[] = {
    {GET_HEAD, "/health", &R_HEALTH},
    {GET_HEAD, "/metrics", &R_METRICS},
    {GET_HEAD, "/tasks", &R_TASKS},
    {GET_HEAD, "/workers", &R_WORKERS},
    {GET_HEAD, "/nodes", &R_NODES},
    {HTTP_M_GET, "/tasks/reports/start", &R_REPORT_START},
    {GET_HEAD, "/tasks/reports/:id", &R_REPORT_STATUS},
    {HTTP_M_GET, "/fibonacci/:n", &R_FIBONACCI},
    {GET_HEAD, "/jobs", &R_JOBS_LIST},
    {HTTP_M_POST, "/jobs", &R_JOBS_POST},
    {GET_HEAD, "/jobs/:id", &R_JOB_GET},
    {HTTP_M_DELETE, "/jobs/:id", &R_JOB_DELETE},
    {GET_HEAD, "/jobs/:id/files/:name", &R_JOB_FILE},
    {GET_HEAD, "/jobs/:id/log", &R_JOB_LOG},
    {GET_HEAD, "/events", &R_EVENTS},
    {GET_HEAD, "/jobs/:id/events", &R_JOB_EVENTS},
    {HTTP_M_POST, "/jobs/:id", &R_JOBS_UPLOAD}, /* :id is the task's name here */
    {HTTP_M_POST, "/api/images/process", &R_IMAGES}, /* the seeds' synchronous route */
    {GET_HEAD, "/", &R_UI},                            /* the dashboard (ui.c) and its files */
    {GET_HEAD, "/ui/*", &R_UI},
};

#define NROUTES (sizeof routes / sizeof routes[0])

/* req->user of a request refused for its token (api_on_head → api_on_request). */
#define AUTH_DRAIN_MAX (64 * 1024) /* bodies read and dropped to keep the connection */
static const char unauthorized_mark;

/* The endpoints open without a token. */
static bool auth_exempt(const api_t *a, const http_req_t *req) {
  if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD)
    return false;
  /* The dashboard's own files hold no data and must load for the page to
   * ask for its token (a browser cannot put a header on a page load); every
   * call the page makes for data carries the token. */
  if (strcmp(req->path, "/") == 0 || strncmp(req->path, "/ui/", 4) == 0)
    return true;
  return strcmp(req->path, "/health") == 0 || (a->metrics_public && strcmp(req->path, "/metrics") == 0);
}

static void reply_unauthorized(http_req_t *req) {
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "WWW-Authenticate", "Bearer");
  /* The header is never echoed: it may hold a real token (of another server). */
  if (!http_req_header(req, "Authorization"))
    api_error(req, API_E_UNAUTHORIZED, &h, NULL, "This server needs a token: send Authorization: Bearer <token>.");
  else
    api_error(req, API_E_UNAUTHORIZED, &h, NULL,
              "The Authorization header holds no valid bearer token: send Authorization: Bearer <token>.");
  http_headers_fini(&h);
}

void api_on_head(http_req_t *req, void *data) {
  api_t *a = data;
  if (a->auth && !auth_exempt(a, req) &&
      api_auth_check(a->auth, http_req_header(req, "Authorization")) != API_AUTH_OK) {
    req->user = (void *)&unauthorized_mark;
    /* A large or chunked body: answered now, the body never read (the
     * connection closes after the 401). A small one is read and dropped, so
     * the connection goes on (unless the client waits for 100 Continue:
     * then it is answered at once too). */
    bool big = req->chunked || req->content_length > AUTH_DRAIN_MAX;
    http_req_plan(req, big ? HTTP_BODY_STREAM : HTTP_BODY_REFUSE, big ? SIZE_MAX : AUTH_DRAIN_MAX);
    return;
  }
  router_match_t m;
  if (router_match(routes, NROUTES, req->method, req->path, &m) != ROUTER_FOUND) {
    http_req_plan(req, HTTP_BODY_REFUSE, 0); /* answered without its body */
    return;
  }
  const api_route_t *r = m.route->data;
  req->user = (void *)m.route; /* api_on_request needs no second table scan */
  http_req_plan(req, r->body, r->body_limit == LIMIT_UPLOAD ? (size_t)a->max_upload : r->body_limit);
}

void api_on_request(http_req_t *req, void *data) {
  api_t *a = data;
  if (req->error != HTTP_ERR_NONE) {
    api_reply_http_error(req);
    return;
  }
  if (req->user == &unauthorized_mark) {
    reply_unauthorized(req);
    return;
  }
  router_match_t m;
  if (req->user && router_match_one(req->user, req->path, &m)) {
    ((const api_route_t *)m.route->data)->handler(a, req, &m);
    return;
  }
  switch (router_match(routes, NROUTES, req->method, req->path, &m)) {
  case ROUTER_FOUND: ((const api_route_t *)m.route->data)->handler(a, req, &m); return;
  case ROUTER_NOT_FOUND:
    api_error(req, API_E_NOT_FOUND, NULL, NULL, "There is no endpoint at %.200s.", req->path);
    return;
  case ROUTER_NOT_ALLOWED: {
    char allow[96];
    router_allow_text(m.allowed, allow, sizeof allow);
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Allow", allow);
    api_error(req, API_E_METHOD_NOT_ALLOWED, &h, NULL, "%s is not allowed on %.200s; allowed: %s.",
              req->method_name, req->path, allow);
    http_headers_fini(&h);
    return;
  }
  }
}
