/* api/upload: POST /jobs/<task>: a task's input as the raw request body
 * (its Content-Type the input's media type), the params in the query
 * string, answered like POST /jobs (202 with the job).
 *
 * The body streams into a memfd as it arrives (never held twice, never on
 * disk on the loop: a memfd is memory); the job takes the memfd, and a
 * durable store copies it to the data dir on its own thread before the
 * 202. Params are checked before a byte of the body is read, so a bad
 * request costs no upload (the connection closes after the error, its body
 * unread).
 *
 * Ownership: an upload owns its memfd and its params until it hands both
 * to registry_submit_input; the client leaving (abort callback) or an
 * error reply frees it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/api_int.h"
#include "util/err.h"

typedef struct upload {
  api_t *a;
  http_req_t *req;
  const offload_task_def_t *def;
  json_t *params;
  int64_t timeout_ms;
  int retries;
  int fd;
  int64_t len;
  char type[128];
  char key[256]; /* "" = no Idempotency-Key */
  bool sync;     /* POST /api/images/process: answer with the first file */
} upload_t;

static void upload_free(upload_t *u) {
  if (u->fd >= 0)
    close(u->fd);
  json_decref(u->params);
  free(u);
}

/* ---- params from the query string ---- */

static bool parse_real(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno == ERANGE || !isfinite(v))
    return false;
  *out = v;
  return true;
}

/* One query value as the JSON its spec wants, or NULL with a 400 sent. */
static json_t *query_value(http_req_t *req, const offload_param_spec_t *spec, const query_param_t *p) {
  char name[80];
  snprintf(name, sizeof name, "params.%s", spec->name);
  switch (spec->type) {
  case OFFLOAD_PARAM_INTEGER: {
    int64_t v;
    if (tasks_parse_int(p->value, p->value_len, &v))
      return json_integer(v);
    break;
  }
  case OFFLOAD_PARAM_NUMBER: {
    double v;
    if (parse_real(p->value, &v))
      return json_real(v);
    break;
  }
  case OFFLOAD_PARAM_BOOLEAN:
    if (strcmp(p->value, "true") == 0 || strcmp(p->value, "1") == 0)
      return json_true();
    if (strcmp(p->value, "false") == 0 || strcmp(p->value, "0") == 0)
      return json_false();
    break;
  case OFFLOAD_PARAM_STRING: return json_stringn(p->value, p->value_len);
  case OFFLOAD_PARAM_INT_LIST:
  case OFFLOAD_PARAM_NUMBER_LIST: {
    json_t *a = json_array();
    const char *s = p->value;
    bool ok = a && *s;
    while (ok && *s) {
      size_t n = strcspn(s, ",");
      char item[64];
      int64_t iv = 0;
      double dv = 0;
      ok = n > 0 && n < sizeof item;
      if (ok) {
        memcpy(item, s, n);
        item[n] = '\0';
        ok = spec->type == OFFLOAD_PARAM_INT_LIST ? tasks_parse_int(item, n, &iv) : parse_real(item, &dv);
        if (ok)
          json_array_append_new(a, spec->type == OFFLOAD_PARAM_INT_LIST ? json_integer(iv) : json_real(dv));
      }
      s += n;
      if (ok && *s == ',' && *++s == '\0')
        ok = false; /* a trailing comma */
    }
    if (ok)
      return a;
    json_decref(a);
    api_error(req, API_E_INVALID_PARAM, NULL, name, "%s must be a comma-separated list of %s.", name,
              spec->type == OFFLOAD_PARAM_INT_LIST ? "integers" : "numbers");
    return NULL;
  }
  }
  api_error(req, API_E_INVALID_PARAM, NULL, name, "%s must be %s; got \"%.64s\".", name,
            spec->type == OFFLOAD_PARAM_INTEGER  ? "an integer"
            : spec->type == OFFLOAD_PARAM_NUMBER ? "a number"
                                                 : "true or false",
            p->value);
  return NULL;
}

/* The job's params (and timeoutMs, retries) from the query, validated;
 * false after a 400. */
static bool params_from_query(http_req_t *req, upload_t *u) {
  const offload_task_def_t *def = u->def;
  const char *allowed[QUERY_MAX_PARAMS + 64];
  size_t na = 0;
  for (size_t i = 0; i < def->nparams && na < sizeof allowed / sizeof allowed[0] - 3; i++)
    allowed[na++] = def->params[i].name;
  allowed[na++] = "timeoutMs";
  allowed[na++] = "retries";
  allowed[na] = NULL;
  query_t q;
  if (!api_parse_query(req, &q, allowed))
    return false;
  u->params = json_object();
  if (!u->params) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return false;
  }
  u->timeout_ms = -1;
  for (size_t i = 0; i < q.n; i++) {
    const query_param_t *p = &q.params[i];
    if (strcmp(p->name, "timeoutMs") == 0) {
      if (!api_int_param(req, "timeoutMs", p->value, p->value_len, 1, INT64_C(86400000), &u->timeout_ms))
        return false;
      continue;
    }
    if (strcmp(p->name, "retries") == 0) {
      int64_t r;
      if (!api_int_param(req, "retries", p->value, p->value_len, 0, 10, &r))
        return false;
      u->retries = (int)r;
      continue;
    }
    for (size_t k = 0; k < def->nparams; k++) {
      if (strcmp(def->params[k].name, p->name) != 0)
        continue;
      json_t *v = query_value(req, &def->params[k], p);
      if (!v)
        return false;
      json_object_set_new(u->params, p->name, v);
    }
  }
  param_error_t perr;
  if (!tasks_validate(def, u->params, &perr)) {
    api_error(req, perr.problem == PARAM_MISSING ? API_E_MISSING_PARAM : API_E_INVALID_PARAM, NULL, perr.param, "%s",
              perr.message);
    return false;
  }
  return true;
}

/* ---- the body ---- */

static void on_upload_abort(http_req_t *req, void *data) {
  (void)req;
  upload_free(data);
}

static int on_data(http_req_t *req, const char *data, size_t len, void *ud) {
  upload_t *u = ud;
  while (len > 0) {
    ssize_t w = write(u->fd, data, len); /* a memfd: memory, not disk */
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      api_error(req, API_E_INTERNAL, NULL, NULL, "The server has no memory left to hold this upload.");
      upload_free(u);
      return 0; /* replied: http sends no more */
    }
    data += w;
    len -= (size_t)w;
    u->len += w;
  }
  return 0;
}

static void on_end(http_req_t *req, http_req_error_t status, void *ud) {
  upload_t *u = ud;
  bool sync = u->sync;
  if (status == HTTP_ERR_BODY_TOO_BIG) {
    api_error(req, API_E_PAYLOAD_TOO_LARGE, NULL, NULL, "The upload is over the server's --max-upload limit (%llu bytes).",
              (unsigned long long)u->a->max_upload);
    upload_free(u);
    return;
  }
  if (status != HTTP_ERR_NONE) {
    api_error(req, API_E_BAD_REQUEST, NULL, NULL, "The request body is not valid HTTP/1.x (a broken chunk).");
    upload_free(u);
    return;
  }
  api_t *a = u->a;
  const char *key = u->key[0] ? u->key : NULL;
  if (key && api_reply_existing(a, req, key, u->def, u->params, false)) {
    upload_free(u);
    return;
  }
  job_t *j = NULL;
  int fd = u->fd;
  u->fd = -1; /* the job takes it, whatever happens */
  int rc = registry_submit_input(a->reg, u->def, u->params, u->timeout_ms, u->retries, key, fd, u->len, u->type, &j);
  upload_free(u);
  if (rc != 0) {
    api_reply_submit_error(req, rc);
    return;
  }
  if (sync) { /* held until the job is final, no thread held; leaving cancels it */
    registry_run_here(a->reg, j); /* a cluster: the node holding the request runs it */
    if (api_hold(a, req, j, HOLD_IMAGE, 0) != 0) {
      registry_cancel(a->reg, j);
      api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    }
  } else if (job_is_accepted(j)) {
    api_reply_job_accepted(a, req, j);
  } else if (api_hold(a, req, j, HOLD_ACCEPT_JOB, 0) != 0) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory."); /* the job still runs once kept */
  }
}

void api_reply_image(api_t *a, http_req_t *req, job_t *j) {
  if (j->status == JOB_COMPLETE && j->nfiles > 0) {
    api_send_file(a, req, j, &j->files[0]);
    return;
  }
  if (j->status == JOB_CANCELED) { /* by a DELETE, or at shutdown */
    api_error_as(req, j->canceled_by_shutdown ? 503 : 409, "canceled", NULL, "%s", j->err_message);
    return;
  }
  /* The job's own failure: the image's fault is the client's (400), a
   * timeout is 504, anything else the server's. */
  const char *code = j->err_code ? j->err_code : "internal";
  int status = strcmp(code, "invalid_image") == 0 || strcmp(code, "image_too_large") == 0 ||
                       strcmp(code, "invalid_param") == 0 || strcmp(code, "unsupported_format") == 0
                   ? 400
               : strcmp(code, "timeout") == 0 ? 504
                                               : 500;
  api_error_as(req, status, code, NULL, "%s", j->err_message ? j->err_message : "The job failed.");
}

/* True when `ct` (a Content-Type value) names one of the task's types. */
static bool type_accepted(const offload_task_def_t *def, const char *ct, size_t n) {
  if (!def->input_types)
    return true;
  for (size_t i = 0; def->input_types[i]; i++)
    if (strlen(def->input_types[i]) == n && strncasecmp(def->input_types[i], ct, n) == 0)
      return true;
  return false;
}

static void start_upload(api_t *a, http_req_t *req, const char *name, bool sync);

void h_jobs_upload(api_t *a, http_req_t *req, const router_match_t *m) {
  char name[OFFLOAD_TASK_NAME_MAX + 1];
  long n = router_param(m, "id", name, sizeof name); /* the route's one segment: the task's name */
  start_upload(a, req, n >= 0 && (size_t)n < sizeof name ? name : "", false);
}

void h_images_process(api_t *a, http_req_t *req, const router_match_t *m) {
  (void)m;
  start_upload(a, req, "image", true);
}

static void start_upload(api_t *a, http_req_t *req, const char *name, bool sync) {
  const offload_task_def_t *def = tasks_catalog_find(a->cat, name);
  if (!def) {
    char names[512];
    tasks_catalog_names(a->cat, names, sizeof names);
    api_error(req, API_E_UNKNOWN_TASK, NULL, "task", "Unknown task \"%.64s\"; known tasks: %s.", name, names);
    return;
  }
  if (def->input == OFFLOAD_INPUT_NONE) {
    api_error(req, API_E_INVALID_PARAM, NULL, "task",
              "Task %s takes no input: submit it with POST /jobs and a JSON body.", def->name);
    return;
  }
  const char *ct = req->content_type;
  while (ct && (*ct == ' ' || *ct == '\t'))
    ct++;
  size_t ctn = ct ? strcspn(ct, "; \t") : 0;
  if (!ctn || !type_accepted(def, ct, ctn)) {
    char types[256] = "";
    for (size_t i = 0; def->input_types && def->input_types[i]; i++)
      snprintf(types + strlen(types), sizeof types - strlen(types), "%s%s", i ? ", " : "", def->input_types[i]);
    api_error(req, API_E_UNSUPPORTED_MEDIA_TYPE, NULL, NULL,
              "POST /jobs/%s takes the input as the body, with its Content-Type%s%s.", def->name,
              types[0] ? ": one of " : "", types);
    return;
  }
  const char *key;
  if (!api_idempotency_key(req, &key))
    return;
  upload_t *u = calloc(1, sizeof *u);
  if (!u) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  u->a = a;
  u->req = req;
  u->def = def;
  u->fd = -1;
  u->sync = sync;
  snprintf(u->type, sizeof u->type, "%.*s", (int)(ctn < sizeof u->type ? ctn : sizeof u->type - 1), ct);
  for (char *c = u->type; *c; c++)
    if (*c >= 'A' && *c <= 'Z')
      *c = (char)(*c - 'A' + 'a');
  snprintf(u->key, sizeof u->key, "%s", key ? key : "");
  if (!params_from_query(req, u)) {
    upload_free(u);
    return;
  }
  u->fd = memfd_create("offload-upload", MFD_CLOEXEC);
  if (u->fd < 0) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "The server could not hold an upload (%s).", strerror(errno));
    upload_free(u);
    return;
  }
  http_req_on_abort(req, on_upload_abort, u);
  if (http_body_read(req, on_data, on_end, u) != 0)
    upload_free(u); /* the connection is closed; no abort callback comes */
}
