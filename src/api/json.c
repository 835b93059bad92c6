/* api/json: job objects in their two shapes, and the cached text of final
 * jobs.
 *
 * A final job never changes, so its GET /jobs/<id> JSON is serialized once
 * and kept in the job (job_t.json_cache, freed with the job): a listing of
 * 1000 finished jobs is then a concatenation of cached texts, not 1000
 * jansson trees built and dumped per request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/err.h"

static json_t *job_error_json(const job_t *j) {
  if (!j->err_code)
    return json_null();
  return json_pack("{s:s, s:s}", "code", j->err_code, "message", j->err_message ? j->err_message : "");
}

static json_t *time_json(int64_t ms) { return ms ? json_integer(ms) : json_null(); }

/* The fields both job shapes share. `pos` is the 1-based queue place or 0.
 * Returns false when one could not be set (out of memory). */
static bool job_common(json_t *o, const job_t *j, size_t pos) {
  return !(json_object_set_new(o, "status", json_string(job_status_name(j->status))) |
           json_object_set_new(o, "progress", json_real(j->progress)) |
           json_object_set_new(o, "result", j->result ? json_incref(j->result) : json_null()) |
           json_object_set_new(o, "error", job_error_json(j)) |
           json_object_set_new(o, "queuePosition", pos ? json_integer((json_int_t)pos) : json_null()) |
           json_object_set_new(o, "createdAt", time_json(j->created_at)) |
           json_object_set_new(o, "startedAt", time_json(j->started_at)) |
           json_object_set_new(o, "finishedAt", time_json(j->finished_at)));
}

/* "files": [{"name","contentType","bytes","url"}], empty until complete. */
static json_t *files_json(const job_t *j) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < j->nfiles; i++) {
    const store_file_t *f = &j->files[i];
    char url[256];
    snprintf(url, sizeof url, "/jobs/%s/files/%s", j->id, f->name);
    if (json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s}", "name", f->name, "contentType", f->content_type,
                                           "bytes", (json_int_t)f->bytes, "url", url)) != 0) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

json_t *api_job_json(const job_t *j, size_t pos) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  if (json_object_set_new(o, "id", json_string(j->id)) | json_object_set_new(o, "task", json_string(j->def->name)) |
      json_object_set(o, "params", j->params) || !job_common(o, j, pos) ||
      json_object_set_new(o, "attempts", json_integer(j->attempts)) ||
      (j->retries && (json_object_set_new(o, "retries", json_integer(j->retries)) |
                      json_object_set_new(o, "retryAt", time_json(j->retry_at)))) ||
      (j->def->files && json_object_set_new(o, "files", files_json(j)) != 0)) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *api_seed_job_json(const job_t *j, size_t pos) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  if (json_object_set_new(o, "jobId", json_string(j->id)) || !job_common(o, j, pos)) {
    json_decref(o);
    return NULL;
  }
  return o;
}

#define JOB_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

int api_job_text(const job_t *j, size_t pos, buf_t *out) {
  if (j->json_cache)
    return buf_append(out, j->json_cache, j->json_cache_len);
  json_t *o = api_job_json(j, pos);
  char *text = o ? json_dumps(o, JOB_DUMP_FLAGS) : NULL;
  json_decref(o);
  if (!text)
    return OFF_ENOMEM;
  size_t len = strlen(text);
  int rc = buf_append(out, text, len);
  if (job_is_final(j)) {
    job_t *mj = (job_t *)j; /* the cache is the api's field of the job */
    mj->json_cache = text;
    mj->json_cache_len = len;
  } else {
    free(text);
  }
  return rc;
}

void api_reply_job(api_t *a, http_req_t *req, int status, const http_headers_t *headers, job_t *j) {
  if (job_is_cold(j)) { /* final and not queued: no place, no headers from callers */
    api_reply_cold(a, req, status, NULL, j, false);
    return;
  }
  size_t pos = registry_position(a->reg, j);
  buf_t b = BUF_INIT;
  if (api_job_text(j, pos, &b) != 0 || buf_append(&b, "\n", 1) != 0) {
    buf_free(&b);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  size_t len = b.len;
  http_reply_take(req, status, "application/json", headers, buf_release(&b), len);
}
