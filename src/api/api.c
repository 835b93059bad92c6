/* api: routes and handlers. See api.h and docs/API.md. */
#include "api/api.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/query.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define WAIT_MAX_S 60
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define TIMEOUT_MAX_MS INT64_C(2147483647)

/* ---- replies ---- */

static void reply_json(http_req_t *req, int status, const char *headers, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(body);
  if (!text) {
    static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"Out of memory.\"}}\n";
    http_reply(req, 500, "application/json", NULL, oom, sizeof oom - 1);
    return;
  }
  size_t len = strlen(text);
  /* A trailing newline keeps terminals tidy; JSON allows it. */
  char *withnl = realloc(text, len + 2);
  if (withnl) {
    text = withnl;
    text[len++] = '\n';
    text[len] = '\0';
  }
  http_reply(req, status, "application/json", headers, text, len);
  free(text);
}

static void reply_error(http_req_t *req, int status, const char *headers, const char *code, const char *param,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void reply_error(http_req_t *req, int status, const char *headers, const char *code, const char *param,
                        const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
  if (err && param)
    json_object_set_new(err, "param", json_string(param));
  reply_json(req, status, headers, json_pack("{s:o}", "error", err));
}

static void reply_submit_error(http_req_t *req, int rc) {
  if (rc == OFF_EFULL)
    reply_error(req, 429, "Retry-After: 1\r\n", "queue_full", NULL, "The job queue is full; retry after a short wait.");
  else if (rc == OFF_ESTOPPED)
    reply_error(req, 503, NULL, "shutting_down", NULL, "The server is shutting down and accepts no new jobs.");
  else
    reply_error(req, 500, NULL, "internal", NULL, "The job could not be created: %s.", err_str(rc));
}

/* ---- job objects ---- */

static json_t *job_error_json(const job_t *j) {
  if (!j->err_code)
    return json_null();
  return json_pack("{s:s, s:s}", "code", j->err_code, "message", j->err_message ? j->err_message : "");
}

static json_t *time_json(int64_t ms) { return ms ? json_integer(ms) : json_null(); }

/* The fields both job shapes share. `pos` is the 1-based queue place or 0. */
static int job_common(json_t *o, const job_t *j, size_t pos) {
  return json_object_set_new(o, "status", json_string(job_status_name(j->status))) |
         json_object_set_new(o, "progress", json_real(j->progress)) |
         json_object_set_new(o, "result", j->result ? json_incref(j->result) : json_null()) |
         json_object_set_new(o, "error", job_error_json(j)) |
         json_object_set_new(o, "queuePosition", pos ? json_integer((json_int_t)pos) : json_null()) |
         json_object_set_new(o, "createdAt", time_json(j->created_at)) |
         json_object_set_new(o, "startedAt", time_json(j->started_at)) |
         json_object_set_new(o, "finishedAt", time_json(j->finished_at));
}

/* GET /jobs/<id> shape. */
static json_t *job_json(const job_t *j, size_t pos) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "id", json_string(j->id));
  json_object_set_new(o, "task", json_string(j->def->name));
  json_object_set(o, "params", j->params);
  job_common(o, j, pos);
  return o;
}

/* GET /tasks/reports/<id> shape (the seeds' field names). */
static json_t *seed_job_json(const job_t *j, size_t pos) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "jobId", json_string(j->id));
  job_common(o, j, pos);
  return o;
}

static json_t *job_json_now(api_t *a, job_t *j) { return job_json(j, registry_position(a->reg, j)); }

/* ---- waiters (held replies) ---- */

typedef enum { WAIT_JOB, WAIT_FIB } wait_kind_t;

typedef struct waiter {
  job_watch_t watch; /* first: the registry hands this back */
  api_t *api;
  http_req_t *req;
  job_t *job;
  wait_kind_t kind;
  uv_timer_t timer;
  bool done;
} waiter_t;

static void on_waiter_closed(uv_handle_t *h) { free(h->data); }

static void waiter_finish(waiter_t *w) {
  w->done = true;
  w->api->waiters--;
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
}

static void reply_fib(http_req_t *req, job_t *j) {
  switch (j->status) {
  case JOB_COMPLETE:
    reply_json(req, 200, NULL, json_pack("{s:O, s:O}", "n", json_object_get(j->params, "n"), "result", j->result));
    return;
  case JOB_CANCELED:
    /* Shutdown: the service went away (503). A DELETE from someone holding the
     * job id: this request's job is gone, a conflict with that (409). */
    reply_error(req, j->canceled_by_shutdown ? 503 : 409, NULL, j->err_code, NULL, "%s", j->err_message);
    return;
  default:
    reply_error(req, 500, NULL, j->err_code ? j->err_code : "internal", NULL, "%s",
                j->err_message ? j->err_message : "The job failed.");
  }
}

static void on_waited_final(job_t *j, job_watch_t *watch) {
  waiter_t *w = (waiter_t *)watch;
  if (w->kind == WAIT_FIB)
    reply_fib(w->req, j);
  else
    reply_json(w->req, 200, NULL, job_json(j, 0));
  waiter_finish(w);
}

static void on_wait_timeout(uv_timer_t *t) {
  waiter_t *w = t->data;
  registry_unwatch(w->job, &w->watch);
  registry_refresh(w->api->reg, w->job);
  reply_json(w->req, 200, NULL, job_json_now(w->api, w->job));
  waiter_finish(w);
}

static void on_wait_abort(http_req_t *req, void *data) {
  waiter_t *w = data;
  (void)req;
  registry_unwatch(w->job, &w->watch);
  /* Nobody is left to read a synchronous answer: stop the work. */
  if (w->kind == WAIT_FIB)
    registry_cancel(w->api->reg, w->job);
  waiter_finish(w);
}

static int wait_for(api_t *a, http_req_t *req, job_t *j, wait_kind_t kind, uint64_t timeout_ms) {
  waiter_t *w = calloc(1, sizeof *w);
  if (!w)
    return OFF_ENOMEM;
  w->watch.cb = on_waited_final;
  w->api = a;
  w->req = req;
  w->job = j;
  w->kind = kind;
  uv_timer_init(a->loop, &w->timer);
  w->timer.data = w;
  if (timeout_ms)
    uv_timer_start(&w->timer, on_wait_timeout, timeout_ms, 0);
  registry_watch(j, &w->watch);
  http_req_on_abort(req, on_wait_abort, w);
  a->waiters++;
  return 0;
}

/* ---- helpers for handlers ---- */

static bool parse_query(http_req_t *req, query_t *q, const char *const *allowed) {
  if (!query_parse(q, req->query)) {
    reply_error(req, 400, NULL, "invalid_param", q->bad[0] ? q->bad : NULL,
                "The query string is malformed (a bad %%-escape, over %d bytes, or over %d names).", QUERY_MAX_TEXT,
                QUERY_MAX_PARAMS);
    return false;
  }
  const query_param_t *u = query_unknown(q, allowed);
  if (u) {
    reply_error(req, 400, NULL, "unknown_param", u->name, "This endpoint has no query parameter named \"%.64s\".",
                u->name);
    return false;
  }
  for (size_t i = 0; i < q->n; i++) {
    if (q->params[i].count > 1) {
      reply_error(req, 400, NULL, "invalid_param", q->params[i].name, "%.64s must be given only once.",
                  q->params[i].name);
      return false;
    }
  }
  return true;
}

/* An integer query/path value within [min, max]; replies 400 otherwise. */
static bool int_param(http_req_t *req, const char *name, const char *text, size_t len, int64_t min, int64_t max,
                      int64_t *out) {
  if (!text) {
    reply_error(req, 400, NULL, "missing_param", name, "%s is required: an integer from %" PRId64 " to %" PRId64 ".",
                name, min, max);
    return false;
  }
  if (!tasks_parse_int(text, len, out) || *out < min || *out > max) {
    reply_error(req, 400, NULL, "invalid_param", name,
                "%s must be an integer from %" PRId64 " to %" PRId64 "; got \"%.40s\".", name, min, max, text);
    return false;
  }
  return true;
}

static const offload_param_spec_t *spec_of(const offload_task_def_t *def, const char *name) {
  for (size_t i = 0; i < def->nparams; i++)
    if (strcmp(def->params[i].name, name) == 0)
      return &def->params[i];
  return NULL;
}

/* Submits a one-integer-parameter job from a query/path value. */
static job_t *submit_int_job(api_t *a, http_req_t *req, const char *task, const char *param, const char *text,
                             size_t len) {
  const offload_task_def_t *def = tasks_catalog_find(a->cat, task);
  const offload_param_spec_t *spec = def ? spec_of(def, param) : NULL;
  if (!spec) {
    reply_error(req, 500, NULL, "internal", NULL, "The %s task is not available.", task);
    return NULL;
  }
  int64_t v;
  if (!int_param(req, param, text, len, spec->min, spec->max, &v))
    return NULL;
  if (a->draining) {
    reply_submit_error(req, OFF_ESTOPPED);
    return NULL;
  }
  json_t *params = json_pack("{s:I}", param, (json_int_t)v);
  job_t *j = NULL;
  int rc = params ? registry_submit(a->reg, def, params, -1, &j) : OFF_ENOMEM;
  json_decref(params);
  if (rc != 0) {
    reply_submit_error(req, rc);
    return NULL;
  }
  return j;
}

/* ---- handlers ---- */

static bool no_query(http_req_t *req);

static void h_health(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  if (!no_query(req))
    return;
  reply_json(req, 200, NULL,
             json_pack("{s:s, s:{s:i, s:i}, s:{s:I, s:I}, s:I}", "status", "ok", "workers", "total",
                       (int)pool_workers(a->pool), "busy", (int)pool_busy(a->pool), "queue", "depth",
                       (json_int_t)pool_depth(a->pool), "capacity", (json_int_t)pool_capacity(a->pool), "uptimeMs",
                       (json_int_t)(clock_mono_ms() - (int64_t)a->started_ms)));
}

static void h_report_start(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  static const char *const allowed[] = {"heavyIterations", NULL};
  query_t q;
  if (!parse_query(req, &q, allowed))
    return;
  const query_param_t *p = query_get(&q, "heavyIterations");
  job_t *j = submit_int_job(a, req, "report", "heavyIterations", p ? p->value : NULL, p ? p->value_len : 0);
  if (!j)
    return;
  char url[64], loc[96];
  snprintf(url, sizeof url, "/tasks/reports/%s", j->id);
  snprintf(loc, sizeof loc, "Location: %s\r\n", url);
  /* Accepted just now: it is queued from the client's point of view. */
  reply_json(req, 202, loc, json_pack("{s:s, s:s, s:s}", "jobId", j->id, "status", "queued", "statusUrl", url));
}

static bool no_query(http_req_t *req) {
  static const char *const none[] = {NULL};
  query_t q;
  return parse_query(req, &q, none);
}

/* The job with this id, or NULL after answering 404. */
static job_t *find_job(api_t *a, http_req_t *req, const char *id) {
  job_t *j = registry_get(a->reg, id);
  if (!j)
    reply_error(req, 404, NULL, "not_found", NULL, "No job with that id (it may never have existed or has expired).");
  return j;
}

static void h_report_status(api_t *a, http_req_t *req, const char *id) {
  if (!no_query(req))
    return;
  job_t *j = find_job(a, req, id);
  if (!j)
    return;
  reply_json(req, 200, NULL, seed_job_json(j, registry_position(a->reg, j)));
}

static void h_fibonacci(api_t *a, http_req_t *req, const char *n) {
  if (!no_query(req))
    return;
  job_t *j = submit_int_job(a, req, "fibonacci", "n", n, strlen(n));
  if (!j)
    return;
  if (wait_for(a, req, j, WAIT_FIB, 0) != 0) {
    registry_cancel(a->reg, j);
    reply_error(req, 500, NULL, "internal", NULL, "Out of memory.");
  }
}

static bool media_type_is_json(const char *ct) {
  if (!ct)
    return false;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  size_t n = strcspn(ct, "; \t");
  return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* Valid JSON whose number does not fit an int64: jansson refuses it. Parse
 * again with integers as doubles to name the field at fault, so the client
 * gets invalid_param with a param rather than a misleading invalid_json. */
/* The first member of `obj` holding a number beyond int64 (parsed as a
 * double), named "<prefix><key>" into `field`. */
static bool huge_member(const json_t *obj, const char *prefix, char *field, size_t size) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    if (json_is_real(v) && fabs(json_real_value(v)) >= 9.2233720368547758e18) {
      snprintf(field, size, "%s%.64s", prefix, key);
      return true;
    }
  }
  return false;
}

static bool find_huge_number(http_req_t *req, char *field, size_t size) {
  json_t *body = json_loadb(req->body, req->body_len, JSON_DECODE_INT_AS_REAL | JSON_DECODE_ANY, NULL);
  json_t *params = json_object_get(body, "params");
  bool found = json_is_object(body) && (huge_member(body, "", field, size) ||
                                        (json_is_object(params) && huge_member(params, "params.", field, size)));
  json_decref(body);
  return found;
}

static void h_jobs_post(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  if (!no_query(req))
    return;
  if (!media_type_is_json(req->content_type)) {
    reply_error(req, 415, NULL, "unsupported_media_type", NULL,
                "POST /jobs takes a JSON body: send Content-Type: application/json.");
    return;
  }
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (!body) {
    char field[80];
    if (json_error_code(&jerr) == json_error_numeric_overflow && find_huge_number(req, field, sizeof field)) {
      reply_error(req, 400, NULL, "invalid_param", field, "%s is out of range (beyond 64-bit integers).", field);
      return;
    }
    reply_error(req, 400, NULL, "invalid_json", NULL, "Malformed JSON at line %d, column %d: %s.", jerr.line,
                jerr.column, jerr.text);
    return;
  }
  if (!json_is_object(body)) {
    json_decref(body);
    reply_error(req, 400, NULL, "invalid_body", NULL,
                "The body must be a JSON object: {\"task\": ..., \"params\": {...}, \"timeoutMs\": ...}.");
    return;
  }
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (strcmp(key, "task") && strcmp(key, "params") && strcmp(key, "timeoutMs")) {
      reply_error(req, 400, NULL, "unknown_param", key,
                  "Unknown field \"%.64s\"; a job has task, params and timeoutMs.", key);
      goto out;
    }
  }
  json_t *task = json_object_get(body, "task");
  char names[256];
  tasks_catalog_names(a->cat, names, sizeof names);
  if (!task) {
    reply_error(req, 400, NULL, "missing_param", "task", "The body needs \"task\", one of: %s.", names);
    goto out;
  }
  if (!json_is_string(task)) {
    reply_error(req, 400, NULL, "invalid_param", "task", "\"task\" must be a string, one of: %s.", names);
    goto out;
  }
  const offload_task_def_t *def = tasks_catalog_find(a->cat, json_string_value(task));
  if (!def) {
    reply_error(req, 400, NULL, "unknown_task", "task", "Unknown task \"%.64s\"; known tasks: %s.",
                json_string_value(task), names);
    goto out;
  }
  json_t *params = json_object_get(body, "params");
  json_t *empty = NULL;
  if (!params) {
    params = empty = json_object();
  } else if (!json_is_object(params)) {
    reply_error(req, 400, NULL, "invalid_param", "params", "\"params\" must be a JSON object.");
    goto out;
  }
  int64_t timeout_ms = -1;
  json_t *t = json_object_get(body, "timeoutMs");
  if (t) {
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > TIMEOUT_MAX_MS) {
      json_decref(empty);
      reply_error(req, 400, NULL, "invalid_param", "timeoutMs",
                  "\"timeoutMs\" must be an integer number of milliseconds from 1 to %" PRId64 ".", TIMEOUT_MAX_MS);
      goto out;
    }
    timeout_ms = json_integer_value(t);
  }
  param_error_t perr;
  if (!tasks_validate(def, params, &perr)) {
    json_decref(empty);
    static const char *const codes[] = {"", "missing_param", "invalid_param", "unknown_param"};
    reply_error(req, 400, NULL, codes[perr.problem], perr.param, "%s", perr.message);
    goto out;
  }
  if (a->draining) {
    json_decref(empty);
    reply_submit_error(req, OFF_ESTOPPED);
    goto out;
  }
  job_t *j = NULL;
  int rc = registry_submit(a->reg, def, params, timeout_ms, &j);
  json_decref(empty);
  if (rc != 0) {
    reply_submit_error(req, rc);
    goto out;
  }
  char loc[96];
  snprintf(loc, sizeof loc, "Location: /jobs/%s\r\n", j->id);
  reply_json(req, 202, loc, job_json(j, registry_position(a->reg, j)));
out:
  json_decref(body);
}

static void h_job_get(api_t *a, http_req_t *req, const char *id) {
  static const char *const allowed[] = {"wait", NULL};
  query_t q;
  if (!parse_query(req, &q, allowed))
    return;
  const query_param_t *wp = query_get(&q, "wait");
  int64_t wait_s = 0;
  if (wp && !int_param(req, "wait", wp->value, wp->value_len, 1, WAIT_MAX_S, &wait_s))
    return;
  job_t *j = find_job(a, req, id);
  if (!j)
    return;
  if (wait_s && !job_is_final(j) && wait_for(a, req, j, WAIT_JOB, (uint64_t)wait_s * 1000) == 0)
    return;
  reply_json(req, 200, NULL, job_json_now(a, j));
}

static void h_job_delete(api_t *a, http_req_t *req, const char *id) {
  if (!no_query(req))
    return;
  job_t *j = find_job(a, req, id);
  if (!j)
    return;
  int rc = registry_cancel(a->reg, j);
  if (rc == OFF_EBUSY) {
    reply_error(req, 409, NULL, "already_finished", NULL, "The job is already %s.", job_status_name(j->status));
    return;
  }
  /* rc 0: it was queued and is canceled now; 1: running, cancel requested.
   * `j` is still valid: a job canceled just now is the newest finished one,
   * and eviction takes the oldest. */
  reply_json(req, rc == 0 ? 200 : 202, NULL, job_json_now(a, j));
}

static void h_jobs_list(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  static const char *const allowed[] = {"status", "limit", NULL};
  query_t q;
  if (!parse_query(req, &q, allowed))
    return;
  int64_t limit = LIST_DEFAULT;
  const query_param_t *lp = query_get(&q, "limit");
  if (lp && !int_param(req, "limit", lp->value, lp->value_len, 1, LIST_MAX, &limit))
    return;
  int want = -1;
  const query_param_t *sp = query_get(&q, "status");
  if (sp) {
    for (int s = 0; s < JOB_NSTATUS; s++)
      if (strcmp(sp->value, job_status_name((job_status_t)s)) == 0)
        want = s;
    if (want < 0) {
      reply_error(req, 400, NULL, "invalid_param", "status",
                  "status must be one of queued, processing, complete, failed, canceled.");
      return;
    }
  }
  /* O(workers) to catch up with the workers, then O(limit): a status list
   * (or the creation list) is walked newest first. Queued jobs meet in reverse
   * queue order, so their places count down from the number queued. */
  size_t queued = registry_sync(a->reg), seen_queued = 0;
  json_t *arr = json_array();
  int64_t n = 0;
  job_t *j = want >= 0 ? registry_first_with(a->reg, (job_status_t)want) : registry_newest(a->reg);
  while (j && n < limit) {
    job_t *next = want >= 0 ? registry_next_with(j, (job_status_t)want) : registry_older(j);
    registry_refresh(a->reg, j);
    if (want < 0 || (int)j->status == want) {
      size_t place = 0;
      if (j->status == JOB_QUEUED && seen_queued < queued)
        place = queued - seen_queued++;
      json_array_append_new(arr, job_json(j, place));
      n++;
    }
    j = next;
  }
  reply_json(req, 200, NULL, json_pack("{s:o}", "jobs", arr));
}

static void h_tasks(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  if (!no_query(req))
    return;
  json_t *arr = json_array();
  for (size_t i = 0; i < a->cat->n; i++) {
    const offload_task_def_t *d = &a->cat->defs[i];
    json_t *ps = json_array();
    for (size_t k = 0; k < d->nparams; k++) {
      const offload_param_spec_t *s = &d->params[k];
      json_array_append_new(ps, json_pack("{s:s, s:s, s:b, s:I, s:I}", "name", s->name, "type", "integer", "required",
                                          s->required, "min", (json_int_t)s->min, "max", (json_int_t)s->max));
    }
    json_array_append_new(arr,
                          json_pack("{s:s, s:s, s:o}", "name", d->name, "description", d->description, "params", ps));
  }
  reply_json(req, 200, NULL, json_pack("{s:o}", "tasks", arr));
}

/* ---- /metrics (Prometheus text format 0.0.4) ---- */

static void put_hist(FILE *f, const char *name, const char *help, const hist_t *h) {
  fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < h->nbounds; i++) {
    cum += h->counts[i];
    fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, h->bounds[i], cum);
  }
  cum += h->counts[h->nbounds];
  fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.9g\n%s_count %" PRIu64 "\n", name, cum, name, h->sum, name,
          h->count);
}

static void h_metrics(api_t *a, http_req_t *req, const char *arg) {
  (void)arg;
  if (!no_query(req))
    return;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) {
    reply_error(req, 500, NULL, "internal", NULL, "Out of memory.");
    return;
  }
  const registry_stats_t *rs = registry_stats(a->reg);
  const http_stats_t *hs = http_server_stats(a->http);
  fputs("# HELP offload_jobs_total Jobs that reached a final status, by task and status.\n"
        "# TYPE offload_jobs_total counter\n",
        f);
  for (size_t i = 0; i < a->cat->n; i++)
    for (int s = JOB_COMPLETE; s < JOB_NSTATUS; s++)
      fprintf(f, "offload_jobs_total{task=\"%s\",status=\"%s\"} %" PRIu64 "\n", a->cat->defs[i].name,
              job_status_name((job_status_t)s), rs->finals[i][s]);
  fprintf(f,
          "# HELP offload_jobs_submitted_total Jobs accepted.\n# TYPE offload_jobs_submitted_total counter\n"
          "offload_jobs_submitted_total %" PRIu64 "\n"
          "# HELP offload_jobs_retained Jobs held in memory (live and finished).\n# TYPE offload_jobs_retained gauge\n"
          "offload_jobs_retained %zu\n"
          "# HELP offload_queue_depth Jobs waiting for a worker.\n# TYPE offload_queue_depth gauge\n"
          "offload_queue_depth %zu\n"
          "# HELP offload_queue_capacity Most jobs that may wait.\n# TYPE offload_queue_capacity gauge\n"
          "offload_queue_capacity %zu\n"
          "# HELP offload_workers Worker threads.\n# TYPE offload_workers gauge\n"
          "offload_workers %u\n"
          "# HELP offload_workers_busy Workers running a job now.\n# TYPE offload_workers_busy gauge\n"
          "offload_workers_busy %u\n"
          "# HELP offload_http_connections Open client connections.\n# TYPE offload_http_connections gauge\n"
          "offload_http_connections %zu\n"
          "# HELP offload_http_connections_accepted_total Connections accepted.\n"
          "# TYPE offload_http_connections_accepted_total counter\n"
          "offload_http_connections_accepted_total %" PRIu64 "\n"
          "# HELP offload_http_connections_rejected_total Connections closed at once (over --max-connections).\n"
          "# TYPE offload_http_connections_rejected_total counter\n"
          "offload_http_connections_rejected_total %" PRIu64 "\n"
          "# HELP offload_held_replies Requests waiting for a job to finish.\n# TYPE offload_held_replies gauge\n"
          "offload_held_replies %zu\n",
          rs->submitted, rs->jobs, pool_depth(a->pool), pool_capacity(a->pool), pool_workers(a->pool),
          pool_busy(a->pool), hs->connections, hs->accepted, hs->rejected, a->waiters);
  put_hist(f, "offload_job_duration_seconds", "Run time of jobs that ran (start to final status).", &rs->run_seconds);
  fputs("# HELP offload_http_requests_total Replies sent, by status code.\n"
        "# TYPE offload_http_requests_total counter\n",
        f);
  for (int code = 100; code < 600; code++)
    if (hs->by_status[code])
      fprintf(f, "offload_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code, hs->by_status[code]);
  put_hist(f, "offload_event_loop_lag_seconds", "How late the event loop ran a timer (sampled every 100 ms).",
           &a->lag->hist);
  fprintf(f,
          "# HELP offload_event_loop_lag_max_seconds Largest loop lag seen.\n"
          "# TYPE offload_event_loop_lag_max_seconds gauge\noffload_event_loop_lag_max_seconds %.9g\n"
          "# HELP offload_uptime_seconds Seconds since start.\n# TYPE offload_uptime_seconds gauge\n"
          "offload_uptime_seconds %.3f\n",
          a->lag->max_s, (double)(clock_mono_ms() - (int64_t)a->started_ms) / 1000.0);
  if (fclose(f) != 0 || !text) {
    free(text);
    reply_error(req, 500, NULL, "internal", NULL, "Out of memory.");
    return;
  }
  http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
  free(text);
}

/* ---- routing ---- */

typedef void (*handler_fn)(api_t *a, http_req_t *req, const char *arg);

/* A route: an exact path, or a prefix followed by one non-empty segment
 * (the argument). `safe_head` lets HEAD run the GET handler (never for GETs
 * that start work). */
typedef struct route {
  const char *path;
  bool has_arg;
  handler_fn get, post, del;
  bool safe_head;
} route_t;

static const route_t routes[] = {
    {"/health", false, h_health, NULL, NULL, true},
    {"/metrics", false, h_metrics, NULL, NULL, true},
    {"/tasks", false, h_tasks, NULL, NULL, true},
    {"/tasks/reports/start", false, h_report_start, NULL, NULL, false},
    {"/tasks/reports/", true, h_report_status, NULL, NULL, true},
    {"/fibonacci/", true, h_fibonacci, NULL, NULL, false},
    {"/jobs", false, h_jobs_list, h_jobs_post, NULL, true},
    {"/jobs/", true, h_job_get, NULL, h_job_delete, true},
};

static const route_t *match(const char *path, const char **arg) {
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    const route_t *r = &routes[i];
    if (!r->has_arg) {
      if (strcmp(path, r->path) == 0)
        return r;
      continue;
    }
    size_t n = strlen(r->path);
    if (strncmp(path, r->path, n) == 0 && path[n] && !strchr(path + n, '/')) {
      *arg = path + n;
      return r;
    }
  }
  return NULL;
}

static void reply_http_error(http_req_t *req) {
  switch (req->error) {
  case HTTP_ERR_HEADER_TOO_BIG:
    reply_error(req, 431, NULL, "header_too_large", NULL, "The request's header block is over the 16 KiB limit.");
    return;
  case HTTP_ERR_BODY_TOO_BIG:
    reply_error(req, 413, NULL, "payload_too_large", NULL, "The request body is over the server's --max-body limit.");
    return;
  default:
    reply_error(req, 400, NULL, "bad_request", NULL, "The request is not valid HTTP/1.x (%s).",
                req->error_detail ? req->error_detail : "parse error");
  }
}

void api_on_request(http_req_t *req, void *data) {
  api_t *a = data;
  if (req->error != HTTP_ERR_NONE) {
    reply_http_error(req);
    return;
  }
  const char *arg = NULL;
  const route_t *r = match(req->path, &arg);
  if (!r) {
    reply_error(req, 404, NULL, "not_found", NULL, "There is no endpoint at %.200s.", req->path);
    return;
  }
  handler_fn h = NULL;
  if (req->method == HTTP_M_GET || (req->method == HTTP_M_HEAD && r->safe_head))
    h = r->get;
  else if (req->method == HTTP_M_POST)
    h = r->post;
  else if (req->method == HTTP_M_DELETE)
    h = r->del;
  if (h) {
    h(a, req, arg);
    return;
  }
  char allow[96];
  snprintf(allow, sizeof allow, "Allow: %s%s%s%s\r\n", r->get ? "GET" : "", r->get && r->safe_head ? ", HEAD" : "",
           r->post ? (r->get ? ", POST" : "POST") : "", r->del ? ", DELETE" : "");
  reply_error(req, 405, allow, "method_not_allowed", NULL, "%s is not allowed on %.200s; allowed: %.*s.",
              req->method_name, req->path, (int)(strlen(allow) - 9), allow + 7);
}
