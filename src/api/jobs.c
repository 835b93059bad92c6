/* api/jobs: POST /jobs, GET /jobs, GET and DELETE /jobs/<id>. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "util/err.h"

#define WAIT_MAX_S 60
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define TIMEOUT_MAX_MS INT64_C(2147483647)
#define RETRIES_MAX 10

/* True when `v` is, or holds at any depth, a number beyond int64 (parsed as
 * a double: jansson refuses such integers otherwise). */
static bool has_huge(json_t *v) {
  if (json_is_real(v))
    return fabs(json_real_value(v)) >= 9.2233720368547758e18;
  size_t i;
  const char *k;
  json_t *e;
  if (json_is_array(v))
    json_array_foreach(v, i, e) if (has_huge(e)) return true;
  if (json_is_object(v))
    json_object_foreach(v, k, e) if (has_huge(e)) return true;
  return false;
}

/* Names the field holding such a number: "<key>" at the top level,
 * "params.<key>" inside params. */
static bool huge_field(json_t *body, char *field, size_t size) {
  const char *key, *k2;
  json_t *v, *v2;
  json_object_foreach(body, key, v) {
    if (strcmp(key, "params") == 0 && json_is_object(v)) {
      json_object_foreach(v, k2, v2) {
        if (has_huge(v2)) {
          snprintf(field, size, "params.%.64s", k2);
          return true;
        }
      }
    } else if (has_huge(v)) {
      snprintf(field, size, "%.64s", key);
      return true;
    }
  }
  return false;
}

/* The body as a JSON object, or NULL after answering 400. Valid JSON with
 * an integer beyond int64 is parsed again with integers as doubles and
 * *overflow set, so the caller can name the field at fault (invalid_param)
 * after the checks that come first, rather than answer a misleading
 * invalid_json. */
static json_t *load_body_or_reply(http_req_t *req, bool *overflow) {
  json_error_t jerr;
  const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;
  json_t *body = json_loadb(req->body, req->body_len, flags, &jerr);
  *overflow = false;
  if (!body && json_error_code(&jerr) == json_error_numeric_overflow) {
    body = json_loadb(req->body, req->body_len, flags | JSON_DECODE_INT_AS_REAL, NULL);
    *overflow = body != NULL;
  }
  if (!body) {
    api_error(req, API_E_INVALID_JSON, NULL, NULL, "Malformed JSON at line %d, column %d: %s.", jerr.line,
              jerr.column, jerr.text);
    return NULL;
  }
  if (!json_is_object(body)) {
    json_decref(body);
    api_error(req, API_E_INVALID_BODY, NULL, NULL,
              "The body must be a JSON object: {\"task\": ..., \"params\": {...}, \"timeoutMs\": ...}.");
    return NULL;
  }
  return body;
}

/* Every field is known and "task" names a task: sets *def, or answers 400. */
static bool fields_and_task_or_reply(api_t *a, http_req_t *req, json_t *body, const offload_task_def_t **def) {
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (strcmp(key, "task") && strcmp(key, "params") && strcmp(key, "timeoutMs") && strcmp(key, "retries")) {
      api_error(req, API_E_UNKNOWN_PARAM, NULL, key,
                "Unknown field \"%.64s\"; a job has task, params, timeoutMs and retries.", key);
      return false;
    }
  }
  json_t *task = json_object_get(body, "task");
  if (!task || !json_is_string(task) || !(*def = tasks_catalog_find(a->cat, json_string_value(task)))) {
    char names[256];
    tasks_catalog_names(a->cat, names, sizeof names);
    if (!task)
      api_error(req, API_E_MISSING_PARAM, NULL, "task", "The body needs \"task\", one of: %s.", names);
    else if (!json_is_string(task))
      api_error(req, API_E_INVALID_PARAM, NULL, "task", "\"task\" must be a string, one of: %s.", names);
    else
      api_error(req, API_E_UNKNOWN_TASK, NULL, "task", "Unknown task \"%.64s\"; known tasks: %s.",
                json_string_value(task), names);
    return false;
  }
  return true;
}

/* Checks the job description in the contract's order; on success sets
 * *def, *params (borrowed from body or a new empty object in *owned),
 * *timeout_ms and *retries. */
static bool job_spec_or_reply(api_t *a, http_req_t *req, json_t *body, const offload_task_def_t **def,
                              json_t **params, json_t **owned, int64_t *timeout_ms, int *retries) {
  if (!fields_and_task_or_reply(a, req, body, def))
    return false;
  *params = json_object_get(body, "params");
  if (!*params) {
    *params = *owned = json_object();
    if (!*owned) {
      api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
      return false;
    }
  } else if (!json_is_object(*params)) {
    api_error(req, API_E_INVALID_PARAM, NULL, "params", "\"params\" must be a JSON object.");
    return false;
  }
  *timeout_ms = -1;
  json_t *t = json_object_get(body, "timeoutMs");
  if (t) {
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > TIMEOUT_MAX_MS) {
      api_error(req, API_E_INVALID_PARAM, NULL, "timeoutMs",
                "\"timeoutMs\" must be an integer number of milliseconds from 1 to %" PRId64 ".", TIMEOUT_MAX_MS);
      return false;
    }
    *timeout_ms = json_integer_value(t);
  }
  *retries = 0;
  json_t *rt = json_object_get(body, "retries");
  if (rt) {
    if (!json_is_integer(rt) || json_integer_value(rt) < 0 || json_integer_value(rt) > RETRIES_MAX) {
      api_error(req, API_E_INVALID_PARAM, NULL, "retries", "\"retries\" must be an integer from 0 to %d.",
                RETRIES_MAX);
      return false;
    }
    *retries = (int)json_integer_value(rt);
  }
  param_error_t perr;
  if (!tasks_validate(*def, *params, &perr)) {
    api_err_t e = perr.problem == PARAM_MISSING   ? API_E_MISSING_PARAM
                  : perr.problem == PARAM_UNKNOWN ? API_E_UNKNOWN_PARAM
                                                  : API_E_INVALID_PARAM;
    api_error(req, e, NULL, perr.param, "%s", perr.message);
    return false;
  }
  return true;
}

void h_jobs_post(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  if (!api_media_type_is_json(req->content_type)) {
    api_error(req, API_E_UNSUPPORTED_MEDIA_TYPE, NULL, NULL,
              "POST /jobs takes a JSON body: send Content-Type: application/json.");
    return;
  }
  bool overflow;
  json_t *body = load_body_or_reply(req, &overflow);
  if (!body)
    return;
  const offload_task_def_t *def = NULL;
  json_t *params = NULL, *owned = NULL;
  int64_t timeout_ms;
  int retries;
  if (overflow) {
    char field[80];
    if (!fields_and_task_or_reply(a, req, body, &def))
      goto out_params;
    if (huge_field(body, field, sizeof field))
      api_error(req, API_E_INVALID_PARAM, NULL, field, "%s is out of range (beyond 64-bit integers).", field);
    else
      api_error(req, API_E_INVALID_JSON, NULL, NULL, "An integer in the body is beyond 64-bit integers.");
    goto out_params;
  }
  if (!job_spec_or_reply(a, req, body, &def, &params, &owned, &timeout_ms, &retries))
    goto out_params;
  if (def->input == OFFLOAD_INPUT_REQUIRED) {
    api_error(req, API_E_INVALID_PARAM, NULL, "task",
              "Task %s takes its input as the request body: POST /jobs/%s with the input's Content-Type and the "
              "params in the query string.",
              def->name, def->name);
    goto out_params;
  }
  const char *key;
  if (!api_idempotency_key(req, &key))
    goto out_params;
  if (key && api_reply_existing(a, req, key, def, params, false))
    goto out_params;
  job_t *j = NULL;
  int rc = registry_submit_keyed(a->reg, def, params, timeout_ms, retries, key, &j);
  if (rc != 0) {
    api_reply_submit_error(req, rc);
    goto out_params;
  }
  if (job_is_accepted(j))
    api_reply_job_accepted(a, req, j);
  else if (api_hold(a, req, j, HOLD_ACCEPT_JOB, 0) != 0)
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory."); /* the job still runs once kept */
out_params:
  json_decref(owned);
  json_decref(body);
}

void api_reply_job_accepted(api_t *a, http_req_t *req, job_t *j) {
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_addf(&h, "Location", "/jobs/%s", j->id);
  api_reply_job(a, req, 202, &h, j);
  http_headers_fini(&h);
}

void h_job_get(api_t *a, http_req_t *req, const router_match_t *m) {
  static const char *const allowed[] = {"wait", NULL};
  query_t q;
  if (!api_parse_query(req, &q, allowed))
    return;
  const query_param_t *wp = query_get(&q, "wait");
  int64_t wait_s = 0;
  if (wp && !api_int_param(req, "wait", wp->value, wp->value_len, 1, WAIT_MAX_S, &wait_s))
    return;
  if (api_remote_try(a, req, m, API_REMOTE_GET, wait_s))
    return; /* another node's job (cluster) */
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  if (wait_s && !job_is_final(j) && api_hold(a, req, j, HOLD_JOB, (uint64_t)wait_s * 1000) == 0)
    return;
  api_reply_job(a, req, 200, NULL, j);
}

void h_job_delete(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  if (api_remote_try(a, req, m, API_REMOTE_DELETE, 0))
    return; /* another node's job (cluster): canceled in the store, and told to its node */
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  int rc = registry_cancel(a->reg, j);
  if (rc == OFF_EBUSY) {
    api_error(req, API_E_ALREADY_FINISHED, NULL, NULL, "The job is already %s.", job_status_name(j->status));
    return;
  }
  /* rc 0: it was queued and is canceled now; 1: running, cancel requested.
   * `j` is still valid: a job canceled just now is the newest finished one,
   * and eviction takes the oldest. */
  api_reply_job(a, req, rc == 0 ? 200 : 202, NULL, j);
}

static int status_of(const char *name) {
  for (int s = 0; s < JOB_NSTATUS; s++)
    if (strcmp(name, job_status_name((job_status_t)s)) == 0)
      return s;
  return -1;
}

/* A listing being built: the body's text, or (once a cold job turns up)
 * one entry per job, whose cold ones are read from the store. */
typedef struct list {
  buf_t b;
  bool cold;
  api_list_entry_t *e;
  size_t n;
} list_t;

static void list_reset(list_t *l, int64_t limit) {
  buf_reset(&l->b);
  api_list_entries_free(l->e, l->n);
  l->e = NULL;
  l->n = 0;
  (void)limit;
}

static int list_add(list_t *l, const job_t *j, size_t place, int64_t limit, bool first) {
  if (!l->cold) {
    int rc = first ? 0 : buf_append(&l->b, ",", 1);
    return rc ? rc : api_job_text(j, place, &l->b);
  }
  if (!l->e && !(l->e = calloc((size_t)limit, sizeof *l->e)))
    return OFF_ENOMEM;
  l->cold = true;
  return api_list_entry_set(&l->e[l->n++], j, place);
}

/* O(workers) to catch up with the workers, then O(limit): a status list
 * (or the creation list) is walked newest first. The jobs of one lane's
 * queue meet in reverse queue order (both are sorted by creation), so
 * their places count down from the number in that queue. A worker that
 * takes a job during the walk makes those counts stale: the walk is then
 * done again (rare: a walk takes microseconds). The body is the jobs'
 * texts joined; final jobs' texts are cached. Once a cold job turns up the
 * walk starts again collecting entries (cold jobs are the oldest finished,
 * so they come last in a walk newest first). */
static int list_walk(api_t *a, int want, int64_t limit, list_t *l) {
  int rc = 0;
  for (int round = 0;; round++) {
    bool was_cold = l->cold;
    size_t queued[LANE_N], seen_queued[LANE_N] = {0};
    registry_sync(a->reg, queued);
    list_reset(l, limit);
    rc = buf_puts(&l->b, "{\"jobs\":[");
    int64_t n = 0;
    job_t *j = want >= 0 ? registry_first_with(a->reg, (job_status_t)want) : registry_newest(a->reg);
    while (j && n < limit && rc == 0) {
      job_t *next = want >= 0 ? registry_next_with(j, (job_status_t)want) : registry_older(j);
      registry_refresh(a->reg, j);
      if (want < 0 || (int)j->status == want) {
        size_t place = 0;
        lane_t ln = job_lane(j);
        if (j->status == JOB_QUEUED && registry_in_queue(j) && seen_queued[ln] < queued[ln])
          place = queued[ln] - seen_queued[ln]++;
        if (job_is_cold(j) && !l->cold) {
          l->cold = true; /* again, as entries */
          break;
        }
        rc = list_add(l, j, place, limit, n == 0);
        n++;
      }
      j = next;
    }
    if (l->cold && !was_cold && rc == 0) {
      round--; /* the entries walk is a walk of its own */
      continue;
    }
    if (rc == 0 && !l->cold)
      rc = buf_puts(&l->b, "]}\n");
    if (rc != 0 || round >= 2 || registry_queues_settled(a->reg))
      break;
  }
  return rc;
}

void h_jobs_list(api_t *a, http_req_t *req, const router_match_t *m) {
  static const char *const allowed[] = {"status", "limit", NULL};
  query_t q;
  if (!api_parse_query(req, &q, allowed))
    return;
  int64_t limit = LIST_DEFAULT;
  const query_param_t *lp = query_get(&q, "limit");
  if (lp && !api_int_param(req, "limit", lp->value, lp->value_len, 1, LIST_MAX, &limit))
    return;
  int want = -1;
  const query_param_t *sp = query_get(&q, "status");
  if (sp && (want = status_of(sp->value)) < 0) {
    char names[80] = "";
    for (int s = 0; s < JOB_NSTATUS; s++)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", s ? ", " : "",
               job_status_name((job_status_t)s));
    api_error(req, API_E_INVALID_PARAM, NULL, "status", "status must be one of %s.", names);
    return;
  }
  if (a->cluster) { /* every node's jobs: from the store */
    api_remote_list(a, req, want >= 0 ? job_status_name((job_status_t)want) : NULL, limit);
    return;
  }
  list_t l = {.b = BUF_INIT};
  int rc = list_walk(a, want, limit, &l);
  if (rc == 0 && l.cold) {
    /* Old finished jobs among them: their rows are read first (cold.c). */
    api_reply_list_cold(a, req, l.e, l.n);
    buf_free(&l.b);
    return;
  }
  api_list_entries_free(l.e, l.n);
  if (rc != 0) {
    buf_free(&l.b);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  size_t len = l.b.len;
  http_reply_take(req, 200, "application/json", NULL, buf_release(&l.b), len);
}
