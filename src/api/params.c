/* api/params: query strings, integer parameters, the job named in the
 * path. Every helper that fails has already replied (so handlers read as
 * straight-line code). */
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "util/err.h"

bool api_parse_query(http_req_t *req, query_t *q, const char *const *allowed) {
  if (!query_parse(q, req->query)) {
    if (q->err == QUERY_NUL)
      api_error(req, API_E_INVALID_PARAM, NULL, q->bad[0] ? q->bad : NULL,
                "The query parameter \"%.64s\" holds a NUL byte (%%00), which is never valid.", q->bad);
    else
      api_error(req, API_E_INVALID_PARAM, NULL, q->bad[0] ? q->bad : NULL,
                "The query string is malformed (a bad %%-escape, over %d bytes, or over %d names).", QUERY_MAX_TEXT,
                QUERY_MAX_PARAMS);
    return false;
  }
  const query_param_t *u = query_unknown(q, allowed);
  if (u) {
    api_error(req, API_E_UNKNOWN_PARAM, NULL, u->name, "This endpoint has no query parameter named \"%.64s\".",
              u->name);
    return false;
  }
  for (size_t i = 0; i < q->n; i++) {
    if (q->params[i].count > 1) {
      api_error(req, API_E_INVALID_PARAM, NULL, q->params[i].name, "%.64s must be given only once.",
                q->params[i].name);
      return false;
    }
  }
  return true;
}

bool api_no_query(http_req_t *req) {
  static const char *const none[] = {NULL};
  query_t q;
  return api_parse_query(req, &q, none);
}

bool api_int_param(http_req_t *req, const char *name, const char *text, size_t len, int64_t min, int64_t max,
                   int64_t *out) {
  if (!text) {
    api_error(req, API_E_MISSING_PARAM, NULL, name, "%s is required: an integer from %" PRId64 " to %" PRId64 ".",
              name, min, max);
    return false;
  }
  if (!tasks_parse_int(text, len, out) || *out < min || *out > max) {
    api_error(req, API_E_INVALID_PARAM, NULL, name,
              "%s must be an integer from %" PRId64 " to %" PRId64 "; got \"%.40s\".", name, min, max, text);
    return false;
  }
  return true;
}

job_t *api_find_job_or_404(api_t *a, http_req_t *req, const router_match_t *m) {
  char id[JOB_ID_LEN + 2];
  long n = router_param(m, "id", id, sizeof id);
  job_t *j = n >= 0 && (size_t)n < sizeof id ? registry_get(a->reg, id) : NULL;
  if (!j)
    api_error(req, API_E_NOT_FOUND, NULL, NULL, "No job with that id (it may never have existed or has expired).");
  return j;
}

static const offload_param_spec_t *spec_of(const offload_task_def_t *def, const char *name) {
  for (size_t i = 0; i < def->nparams; i++)
    if (strcmp(def->params[i].name, name) == 0)
      return &def->params[i];
  return NULL;
}

job_t *api_submit_int_job(api_t *a, http_req_t *req, const char *task, const char *param, const char *text,
                          size_t len, bool keyed) {
  const offload_task_def_t *def = tasks_catalog_find(a->cat, task);
  const offload_param_spec_t *spec = def ? spec_of(def, param) : NULL;
  if (!spec) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "The %s task is not available.", task);
    return NULL;
  }
  int64_t v;
  if (!api_int_param(req, param, text, len, spec->min, spec->max, &v))
    return NULL;
  const char *key = NULL;
  if (keyed && !api_idempotency_key(req, &key))
    return NULL;
  json_t *params = json_pack("{s:I}", param, (json_int_t)v);
  if (params && key && api_reply_existing(a, req, key, def, params, true)) {
    json_decref(params);
    return NULL;
  }
  job_t *j = NULL;
  int rc = params ? registry_submit_keyed(a->reg, def, params, -1, 0, key, &j) : OFF_ENOMEM;
  json_decref(params);
  if (rc != 0) {
    api_reply_submit_error(req, rc);
    return NULL;
  }
  /* A cluster: the seed's routes answer from the node that took the job
   * (its status URL, a held fibonacci reply): that node runs it. */
  registry_run_here(a->reg, j);
  return j;
}

#define KEY_MAX 255

bool api_idempotency_key(http_req_t *req, const char **key) {
  *key = http_req_header(req, "Idempotency-Key");
  if (!*key)
    return true;
  size_t n = strlen(*key);
  bool ok = n >= 1 && n <= KEY_MAX;
  for (size_t i = 0; ok && i < n; i++)
    ok = (unsigned char)(*key)[i] > 0x20 && (unsigned char)(*key)[i] < 0x7f;
  if (!ok)
    api_error(req, API_E_INVALID_PARAM, NULL, "Idempotency-Key",
              "Idempotency-Key must be 1 to %d visible ASCII characters (no spaces).", KEY_MAX);
  return ok;
}

bool api_reply_existing(api_t *a, http_req_t *req, const char *key, const offload_task_def_t *def,
                        const json_t *params, bool seed) {
  job_t *j = registry_find_key(a->reg, key);
  if (!j)
    return false;
  if (j->def != def || !registry_same_params(j, params)) {
    api_error(req, API_E_IDEMPOTENCY_CONFLICT, NULL, "Idempotency-Key",
              "This Idempotency-Key was used for another job (%s, task %s) with different parameters.", j->id,
              j->def->name);
    return true;
  }
  /* The same request again: the original job, not a new one; once it is
   * kept, if its row is still on the way to the store (a 200 promises as
   * much as the 202 does). */
  if (!job_is_accepted(j)) {
    int rc = api_hold(a, req, j, seed ? HOLD_SAME_SEED : HOLD_SAME_JOB, 0);
    if (rc != 0)
      api_reply_submit_error(req, rc);
    return true;
  }
  api_reply_same(a, req, j, seed);
  return true;
}

void api_reply_same(api_t *a, http_req_t *req, job_t *j, bool seed) {
  if (seed) {
    char url[64];
    snprintf(url, sizeof url, "/tasks/reports/%s", j->id);
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Location", url);
    api_reply_json(req, 200, &h,
                   json_pack("{s:s, s:s, s:s}", "jobId", j->id, "status", job_status_name(j->status), "statusUrl", url));
    http_headers_fini(&h);
  } else if (job_is_cold(j)) {
    char url[48];
    snprintf(url, sizeof url, "/jobs/%s", j->id);
    api_reply_cold(a, req, 200, url, j, false);
  } else {
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_addf(&h, "Location", "/jobs/%s", j->id);
    api_reply_job(a, req, 200, &h, j);
    http_headers_fini(&h);
  }
}

bool api_media_type_is_json(const char *ct) {
  if (!ct)
    return false;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  size_t n = strcspn(ct, "; \t");
  return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}
