/* store/pg_rows: a job row in and out of PostgreSQL: parsing a result
 * row (PG_COLS) into a store_job_t, and the JSON records the batch
 * statements read with json_to_recordset. Store thread (pure functions). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/err.h"

char *pg_i64s(char *buf, int64_t v) {
  snprintf(buf, 24, "%" PRId64, v);
  return buf;
}

static char *dup_or_null(const PGresult *r, int i, int c) {
  return PQgetisnull(r, i, c) ? NULL : strdup(PQgetvalue(r, i, c));
}
static int64_t i64_or_0(const PGresult *r, int i, int c) {
  return PQgetisnull(r, i, c) ? 0 : strtoll(PQgetvalue(r, i, c), NULL, 10);
}

static int parse_files(store_job_t *j, const char *text) {
  json_t *a = json_loads(text, 0, NULL);
  size_t n = json_is_array(a) ? json_array_size(a) : 0;
  if (n && !(j->files = calloc(n, sizeof *j->files))) {
    json_decref(a);
    return OFF_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *f = json_array_get(a, i);
    store_file_t *o = &j->files[j->nfiles++];
    o->name = strdup(json_string_value(json_object_get(f, "name")) ?: "");
    o->content_type = strdup(json_string_value(json_object_get(f, "contentType")) ?: "application/octet-stream");
    o->bytes = json_integer_value(json_object_get(f, "bytes"));
  }
  json_decref(a);
  return 0;
}

static const char *const statuses[] = {"queued", "processing", "complete", "failed", "canceled"};

const char *pg_status(const char *s) {
  for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
    if (strcmp(s, statuses[i]) == 0)
      return statuses[i];
  return "failed";
}

int pg_row(const PGresult *r, int i, store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->seq = strtoull(PQgetvalue(r, i, 0), NULL, 10);
  snprintf(j->id, sizeof j->id, "%s", PQgetvalue(r, i, 1));
  j->task = dup_or_null(r, i, 2);
  j->params = dup_or_null(r, i, 3);
  j->status = pg_status(PQgetvalue(r, i, 4));
  j->attempts = (int)i64_or_0(r, i, 5);
  j->retries = (int)i64_or_0(r, i, 6);
  j->timeout_ms = i64_or_0(r, i, 7);
  j->created_at = i64_or_0(r, i, 8);
  j->started_at = i64_or_0(r, i, 9);
  j->finished_at = i64_or_0(r, i, 10);
  j->result = dup_or_null(r, i, 11);
  j->err_code = dup_or_null(r, i, 12);
  j->err_message = dup_or_null(r, i, 13);
  j->idem_key = dup_or_null(r, i, 14);
  j->input_type = dup_or_null(r, i, 15);
  j->input_bytes = i64_or_0(r, i, 16);
  if (!PQgetisnull(r, i, 17) && parse_files(j, PQgetvalue(r, i, 17)) != 0)
    return OFF_ENOMEM;
  j->owner = dup_or_null(r, i, 18);
  j->pin = dup_or_null(r, i, 19);
  j->progress = strtod(PQgetvalue(r, i, 20), NULL);
  j->retry_at = i64_or_0(r, i, 21);
  j->cancel_requested = PQgetvalue(r, i, 22)[0] == 't';
  if (!j->task || !j->params)
    return OFF_ENOMEM;
  return 0;
}

/* ---- building the batch's statements ---- */

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *time_or_null(int64_t ms) { return ms ? json_integer(ms) : json_null(); }

static json_t *files_json(const store_job_t *j) {
  if (!j->nfiles)
    return json_null();
  json_t *a = json_array();
  for (size_t i = 0; i < j->nfiles; i++)
    json_array_append_new(a, json_pack("{s:s, s:s, s:I}", "name", j->files[i].name, "contentType",
                                       j->files[i].content_type, "bytes", (json_int_t)j->files[i].bytes));
  char *text = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  json_t *s = text ? json_string(text) : json_null();
  free(text);
  return s;
}

json_t *pg_insert_rec(const store_job_t *j) {
  return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:o, s:o, s:I, s:o, s:o, s:o}", "id", j->id, "task", j->task,
                   "params", j->params, "status", j->status, "attempts", j->attempts, "retries", j->retries,
                   "timeout_ms", (json_int_t)j->timeout_ms, "created_at", (json_int_t)j->created_at,
                   "idempotency_key", str_or_null(j->idem_key), "input_type", str_or_null(j->input_type),
                   "input_bytes", (json_int_t)j->input_bytes, "pin", str_or_null(j->pin), "owner",
                   str_or_null(j->owner), "started_at", time_or_null(j->started_at));
}

json_t *pg_update_rec(const store_job_t *j) {
  return json_pack("{s:s, s:i, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:I}", "id", j->id, "token",
                   j->token, "status", j->status, "attempts", j->attempts, "started_at", time_or_null(j->started_at),
                   "finished_at", time_or_null(j->finished_at), "result", str_or_null(j->result), "error_code",
                   str_or_null(j->err_code), "error_message", str_or_null(j->err_message), "files", files_json(j),
                   "progress", j->progress, "run_at", (json_int_t)j->retry_at);
}

char *pg_dump(json_t *a) {
  char *s = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(a);
  return s;
}

