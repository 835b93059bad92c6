/* store/pg_apply: one batch of writes and reads against PostgreSQL (see
 * pg.h). A batch is one transaction with one statement per kind, whatever
 * its size: every insert of the batch is one INSERT over
 * json_to_recordset($1), every final or retry one UPDATE, every progress
 * one UPDATE, then the claims and cancels; then the transaction's
 * notification; COMMIT; then the reads. A write never waits for a round
 * trip per row (group commit, as with SQLite).
 *
 * Fencing: an UPDATE or PROGRESS of a claimed job applies only while the
 * row is still `processing`, owned by this node, with the attempt number
 * its claim gave (the token); a row it did not change is a fenced write
 * (OFF_EFENCED), never an error of the batch. An INSERT whose idempotency
 * key is taken inserts nothing (ON CONFLICT DO NOTHING) and fails
 * OFF_EEXIST with the job holding the key. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/files.h"
#include "store/pg_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

static char *i64s(char *buf, int64_t v) {
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

static const char *status_static(const char *s) {
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
  j->status = status_static(PQgetvalue(r, i, 4));
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

static json_t *insert_rec(const store_job_t *j) {
  return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:o, s:o, s:I, s:o}", "id", j->id, "task", j->task,
                   "params", j->params, "status", j->status, "attempts", j->attempts, "retries", j->retries,
                   "timeout_ms", (json_int_t)j->timeout_ms, "created_at", (json_int_t)j->created_at,
                   "idempotency_key", str_or_null(j->idem_key), "input_type", str_or_null(j->input_type),
                   "input_bytes", (json_int_t)j->input_bytes, "pin", str_or_null(j->pin));
}

static json_t *update_rec(const store_job_t *j) {
  return json_pack("{s:s, s:i, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:I}", "id", j->id, "token",
                   j->token, "status", j->status, "attempts", j->attempts, "started_at", time_or_null(j->started_at),
                   "finished_at", time_or_null(j->finished_at), "result", str_or_null(j->result), "error_code",
                   str_or_null(j->err_code), "error_message", str_or_null(j->err_message), "files", files_json(j),
                   "progress", j->progress, "run_at", (json_int_t)j->retry_at);
}

static char *dump(json_t *a) {
  char *s = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(a);
  return s;
}

/* Lookups of a result's rows by job id (its first column), O(log n). */
typedef struct rowref {
  const char *id;
  int row;
} rowref_t;

static int cmp_rowref(const void *a, const void *b) { return strcmp(((const rowref_t *)a)->id, ((const rowref_t *)b)->id); }

static rowref_t *index_rows(const PGresult *res) {
  int n = PQntuples(res);
  rowref_t *r = calloc(n ? (size_t)n : 1, sizeof *r);
  for (int i = 0; r && i < n; i++)
    r[i] = (rowref_t){PQgetvalue(res, i, 0), i};
  if (r)
    qsort(r, (size_t)n, sizeof *r, cmp_rowref);
  return r;
}

/* The row of job `id` in `res` (indexed by `idx`), or -1. */
static int find_row(const PGresult *res, const rowref_t *idx, const char *id) {
  rowref_t key = {id, 0};
  const rowref_t *f = idx ? bsearch(&key, idx, (size_t)PQntuples(res), sizeof *idx, cmp_rowref) : NULL;
  return f ? f->row : -1;
}

/* Sets _rc of every write of `kind` whose job is not in `res`; returns the
 * index (for the caller's other lookups; freed by the caller). */
static rowref_t *mark_missing(store_write_t *list, store_write_kind_t kind, const PGresult *res, int missing_rc) {
  rowref_t *idx = index_rows(res);
  for (store_write_t *w = list; w; w = w->_next)
    if (w->kind == kind && w->_rc == 0 && find_row(res, idx, w->job->id) < 0)
      w->_rc = missing_rc;
  return idx;
}

/* Writes of one kind sorted by job id, then by their place in the batch:
 * of several for one job only the last is sent (snapshots: the last one is
 * the state), and the others take its outcome. */
typedef struct wref {
  store_write_t *w;
  size_t pos;
} wref_t;

static int cmp_wref(const void *a, const void *b) {
  const wref_t *x = a, *y = b;
  int c = strcmp(x->w->job->id, y->w->job->id);
  return c ? c : (x->pos < y->pos ? -1 : x->pos > y->pos);
}

static wref_t *sorted_writes(store_write_t *list, store_write_kind_t kind, size_t *n) {
  size_t count = 0, pos = 0;
  for (store_write_t *w = list; w; w = w->_next)
    count += w->kind == kind;
  wref_t *r = calloc(count ? count : 1, sizeof *r);
  *n = 0;
  if (!r)
    return NULL;
  for (store_write_t *w = list; w; w = w->_next, pos++)
    if (w->kind == kind)
      r[(*n)++] = (wref_t){w, pos};
  qsort(r, *n, sizeof *r, cmp_wref);
  return r;
}

static bool superseded(const wref_t *r, size_t n, size_t i) {
  return i + 1 < n && strcmp(r[i].w->job->id, r[i + 1].w->job->id) == 0;
}

/* After the statement: the superseded take the outcome of their job's last. */
static void share_outcomes(wref_t *r, size_t n) {
  for (size_t i = n; i-- > 0;)
    if (superseded(r, n, i))
      r[i].w->_rc = r[i + 1].w->_rc;
}

static const char insert_sql[] =
    "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id text, task text, params text, status text,"
    " attempts int, retries int, timeout_ms bigint, created_at bigint, idempotency_key text, input_type text,"
    " input_bytes bigint, pin text))"
    " INSERT INTO jobs (id, task, params, status, attempts, retries, timeout_ms, created_at, idempotency_key,"
    " input_type, input_bytes, pin)"
    " SELECT id, task, params, status, attempts, retries, timeout_ms, created_at, idempotency_key, input_type,"
    " input_bytes, pin FROM x"
    " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, seq";

static const char update_sql[] =
    "UPDATE jobs SET status = x.status, attempts = x.attempts, started_at = x.started_at,"
    " finished_at = x.finished_at, result = x.result, error_code = x.error_code, error_message = x.error_message,"
    " files = x.files, progress = x.progress, run_at = x.run_at, cancel_requested = false,"
    " owner = CASE WHEN x.status = 'queued' THEN NULL ELSE jobs.owner END"
    " FROM json_to_recordset($1::json) AS x(id text, token int, status text, attempts int, started_at bigint,"
    " finished_at bigint, result text, error_code text, error_message text, files text, progress float8,"
    " run_at bigint)"
    " WHERE jobs.id = x.id AND ((jobs.status = 'processing' AND jobs.owner = $2 AND jobs.attempts = x.token)"
    " OR (x.token = 0 AND jobs.status = 'queued' AND jobs.owner IS NULL))"
    " RETURNING jobs.id, jobs.status";

static const char progress_sql[] =
    "UPDATE jobs SET progress = x.progress FROM json_to_recordset($1::json) AS x(id text, token int,"
    " progress float8)"
    " WHERE jobs.id = x.id AND jobs.status = 'processing' AND jobs.owner = $2 AND jobs.attempts = x.token"
    " RETURNING jobs.id";

static const char claim_sql[] =
    "WITH c AS (SELECT seq FROM jobs WHERE status = 'queued' AND run_at <= $3::bigint AND (pin IS NULL OR pin = $1)"
    " AND task IN (SELECT json_array_elements_text($4::json))"
    " ORDER BY seq LIMIT $2::int FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs SET status = 'processing', owner = $1, attempts = jobs.attempts + 1, started_at = $3::bigint,"
    " progress = 0, cancel_requested = false FROM c WHERE jobs.seq = c.seq RETURNING " PG_JCOLS;

static int cmp_seq(const void *a, const void *b) {
  const store_job_t *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Rows of a PG_COLS result into a new array. */
static int take_rows(const PGresult *res, store_job_t **out, size_t *nout) {
  int n = PQntuples(res);
  *out = calloc(n ? (size_t)n : 1, sizeof **out);
  *nout = 0;
  if (!*out)
    return OFF_ENOMEM;
  for (int i = 0; i < n; i++) {
    if (pg_row(res, i, &(*out)[i]) != 0) {
      store_job_fini(&(*out)[i]);
      return OFF_ENOMEM;
    }
    *nout = (size_t)i + 1;
  }
  return 0;
}

/* A client's cancel of a job wherever it runs. */
static int run_cancel(pg_t *p, store_write_t *w, pg_note_t *note) {
  const char *id = w->ids[0];
  const char *v1[] = {id};
  PGresult *res = pg_exec(p, "SELECT status, owner FROM jobs WHERE id = $1 FOR UPDATE", 1, v1);
  if (!res)
    return OFF_ESTORE;
  if (PQntuples(res) == 0) {
    PQclear(res);
    w->prev_status = NULL;
    return 0;
  }
  w->prev_status = status_static(PQgetvalue(res, 0, 0));
  char owner[256];
  snprintf(owner, sizeof owner, "%s", PQgetvalue(res, 0, 1));
  PQclear(res);
  char now[24];
  const char *v2[] = {id, i64s(now, clock_wall_ms())};
  if (strcmp(w->prev_status, "queued") == 0) {
    if (pg_cmd(p,
               "UPDATE jobs SET status = 'canceled', finished_at = $2::bigint, error_code = 'canceled',"
               " error_message = 'The job was canceled by a client request.', run_at = 0 WHERE id = $1",
               2, v2) != 0)
      return OFF_ESTORE;
    pg_note_add(p, note, 'F', id, NULL);
  } else if (strcmp(w->prev_status, "processing") == 0) {
    if (pg_cmd(p, "UPDATE jobs SET cancel_requested = true WHERE id = $1", 1, v1) != 0)
      return OFF_ESTORE;
    pg_note_add(p, note, 'C', owner, id);
  }
  return 0;
}

static int run_claim(pg_t *p, store_write_t *w, pg_note_t *note) {
  char max[24], now[24];
  const char *v[] = {p->cfg.node_id, i64s(max, (int64_t)w->max), i64s(now, clock_wall_ms()), w->tasks};
  PGresult *res = pg_exec(p, claim_sql, 4, v);
  if (!res)
    return OFF_ESTORE;
  int rc = take_rows(res, &w->out, &w->nout);
  PQclear(res);
  if (w->nout > 1)
    qsort(w->out, w->nout, sizeof *w->out, cmp_seq);
  if (p->publish_events)
    for (size_t i = 0; i < w->nout; i++)
      pg_note_add(p, note, 'E', w->out[i].id, NULL);
  return rc;
}

/* ---- reads, after the commit ---- */

static void read_fetch(pg_t *p, store_write_t *w) {
  json_t *ids = json_array();
  for (size_t i = 0; i < w->nids; i++)
    json_array_append_new(ids, json_string(w->ids[i]));
  char *text = dump(ids);
  const char *v[] = {text};
  PGresult *res = text ? pg_exec(p, "SELECT " PG_COLS " FROM jobs WHERE id IN (SELECT json_array_elements_text($1::json))", 1, v) : NULL;
  free(text);
  if (!res) {
    w->_rc = OFF_ESTORE;
    return;
  }
  for (int i = 0; i < PQntuples(res); i++) {
    for (size_t k = 0; k < w->nids; k++) {
      if (strcmp(w->ids[k], PQgetvalue(res, i, 1)) == 0 && !w->rows[k].seq) {
        store_job_fini(&w->rows[k]);
        if (pg_row(res, i, &w->rows[k]) != 0)
          w->_rc = OFF_ENOMEM;
        break;
      }
    }
  }
  PQclear(res);
  if (w->nids == 1 && w->rows[0].seq && strcmp(w->rows[0].status, "queued") == 0) {
    char seq[24];
    const char *q[] = {i64s(seq, (int64_t)w->rows[0].seq)};
    PGresult *c = pg_exec(p, "SELECT count(*) FROM jobs WHERE status = 'queued' AND seq <= $1::bigint", 1, q);
    if (c) {
      w->count = strtoull(PQgetvalue(c, 0, 0), NULL, 10);
      PQclear(c);
    }
  }
}

static void read_list(pg_t *p, store_write_t *w) {
  char lim[24];
  const char *v[] = {i64s(lim, (int64_t)w->max), w->status};
  PGresult *res = pg_exec(p,
                          w->status ? "SELECT " PG_COLS " FROM jobs WHERE status = $2 ORDER BY seq DESC LIMIT $1::int"
                                    : "SELECT " PG_COLS " FROM jobs ORDER BY seq DESC LIMIT $1::int",
                          w->status ? 2 : 1, v);
  if (!res) {
    w->_rc = OFF_ESTORE;
    return;
  }
  if (take_rows(res, &w->out, &w->nout) != 0)
    w->_rc = OFF_ENOMEM;
  PQclear(res);
  for (size_t i = 0; i < w->nout; i++) {
    if (strcmp(w->out[i].status, "queued") != 0)
      continue;
    char seq[24];
    const char *q[] = {i64s(seq, (int64_t)w->out[i].seq)};
    PGresult *c = pg_exec(p, "SELECT count(*) FROM jobs WHERE status = 'queued' AND seq <= $1::bigint", 1, q);
    if (c) {
      w->count = strtoull(PQgetvalue(c, 0, 0), NULL, 10);
      PQclear(c);
    }
    break;
  }
}

/* The jobs holding the keys of inserts that found theirs taken. */
static void read_conflicts(pg_t *p, store_write_t *list) {
  for (store_write_t *w = list; w; w = w->_next) {
    if (w->kind != STORE_W_INSERT || w->_rc != OFF_EEXIST)
      continue;
    const char *v[] = {w->job->idem_key};
    PGresult *res = pg_exec(p, "SELECT " PG_COLS " FROM jobs WHERE idempotency_key = $1", 1, v);
    if (!res) {
      w->_rc = OFF_ESTORE;
      continue;
    }
    if (take_rows(res, &w->out, &w->nout) != 0 || w->nout == 0)
      w->_rc = OFF_ESTORE; /* taken and gone again in between: the client may retry */
    PQclear(res);
  }
}

/* ---- the batch ---- */

/* Runs `sql` over the records in `arr` (consumed) with this node's id as
 * $2. The result, or NULL (OFF_ESTORE). */
static PGresult *run_json(pg_t *p, const char *sql, json_t *arr, int nparams) {
  char *text = dump(arr);
  const char *v[2] = {text, p->cfg.node_id};
  PGresult *res = text ? pg_exec(p, sql, nparams, v) : NULL;
  free(text);
  return res;
}

static int run_inserts(pg_t *p, store_write_t *list, pg_note_t *note, bool *queued) {
  json_t *arr = json_array();
  size_t n = 0;
  for (store_write_t *w = list; w; w = w->_next) {
    if (w->kind != STORE_W_INSERT)
      continue;
    if (w->job->input_fd &&
        files_keep_input(p->cfg.files_dir, w->job->id, w->job->input_fd - 1, w->job->input_bytes, true) != 0) {
      w->_rc = OFF_ESTORE; /* this one fails; the rest of the batch goes on */
      continue;
    }
    json_array_append_new(arr, insert_rec(w->job));
    n++;
    if (p->publish_events)
      pg_note_add(p, note, 'E', w->job->id, NULL);
  }
  if (!n) {
    json_decref(arr);
    return 0;
  }
  *queued = true;
  PGresult *res = run_json(p, insert_sql, arr, 1);
  if (!res)
    return OFF_ESTORE;
  free(mark_missing(list, STORE_W_INSERT, res, OFF_EEXIST));
  /* Each new job's place in the queue: the queued jobs before the batch's
   * first, then the batch's own in order (their seqs rise in list order). */
  uint64_t min_seq = UINT64_MAX;
  for (int i = 0; i < PQntuples(res); i++) {
    uint64_t seq = strtoull(PQgetvalue(res, i, 1), NULL, 10);
    min_seq = seq < min_seq ? seq : min_seq;
  }
  PQclear(res);
  if (min_seq == UINT64_MAX)
    return 0;
  char seq[24];
  const char *v[] = {i64s(seq, (int64_t)min_seq)};
  PGresult *c = pg_exec(p, "SELECT count(*) FROM jobs WHERE status = 'queued' AND seq < $1::bigint", 1, v);
  if (!c)
    return OFF_ESTORE;
  uint64_t place = strtoull(PQgetvalue(c, 0, 0), NULL, 10);
  PQclear(c);
  for (store_write_t *w = list; w; w = w->_next)
    if (w->kind == STORE_W_INSERT && w->_rc == 0 && strcmp(w->job->status, "queued") == 0)
      w->count = ++place;
  return 0;
}

/* Finals and retries (UPDATE) or progress (PROGRESS), each fenced by its token. */
static int run_updates(pg_t *p, store_write_t *list, store_write_kind_t kind, pg_note_t *note, bool *queued) {
  size_t n;
  wref_t *r = sorted_writes(list, kind, &n);
  if (!r)
    return OFF_ESTORE;
  if (!n) {
    free(r);
    return 0;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const store_job_t *j = r[i].w->job;
    if (superseded(r, n, i))
      continue;
    json_array_append_new(arr, kind == STORE_W_UPDATE ? update_rec(j)
                                                      : json_pack("{s:s, s:i, s:f}", "id", j->id, "token", j->token,
                                                                  "progress", j->progress));
  }
  PGresult *res = run_json(p, kind == STORE_W_UPDATE ? update_sql : progress_sql, arr, 2);
  if (!res) {
    free(r);
    return OFF_ESTORE;
  }
  for (int i = 0; i < PQntuples(res); i++) {
    const char *st = kind == STORE_W_UPDATE ? PQgetvalue(res, i, 1) : "processing";
    if (strcmp(st, "queued") == 0)
      *queued = true;
    else if (strcmp(st, "processing") != 0)
      pg_note_add(p, note, 'F', PQgetvalue(res, i, 0), NULL);
    else if (p->publish_events)
      pg_note_add(p, note, 'E', PQgetvalue(res, i, 0), NULL);
  }
  free(mark_missing(list, kind, res, OFF_EFENCED));
  PQclear(res);
  share_outcomes(r, n);
  free(r);
  return 0;
}

static int run_writes(pg_t *p, store_write_t *list, pg_note_t *note) {
  bool queued = false;
  int rc = run_inserts(p, list, note, &queued);
  if (rc == 0)
    rc = run_updates(p, list, STORE_W_UPDATE, note, &queued);
  if (rc == 0)
    rc = run_updates(p, list, STORE_W_PROGRESS, note, &queued);
  for (store_write_t *w = list; w && rc == 0; w = w->_next) {
    if (w->kind == STORE_W_CANCEL)
      rc = run_cancel(p, w, note);
    else if (w->kind == STORE_W_DELETE) {
      const char *v[] = {w->job->id};
      rc = pg_cmd(p, "DELETE FROM jobs WHERE id = $1 AND finished_at IS NOT NULL", 1, v) == 0 ? 0 : OFF_ESTORE;
    }
  }
  for (store_write_t *w = list; w && rc == 0; w = w->_next)
    if (w->kind == STORE_R_CLAIM)
      rc = run_claim(p, w, note) == OFF_ESTORE ? OFF_ESTORE : 0;
  if (queued)
    pg_note_add(p, note, 'N', NULL, NULL);
  return rc;
}

int pg_apply(pg_t *p, store_write_t *list) {
  for (store_write_t *w = list; w; w = w->_next)
    w->_rc = 0;
  pg_note_t note = {0};
  int rc = OFF_ESTORE;
  if (p->conn && pg_cmd(p, "BEGIN", 0, NULL) == 0) {
    rc = run_writes(p, list, &note);
    if (rc == 0 && pg_note_send(p, &note) != 0)
      rc = OFF_ESTORE;
    if (rc == 0 && pg_cmd(p, "COMMIT", 0, NULL) != 0)
      rc = OFF_ESTORE;
    if (rc != 0 && p->conn)
      pg_cmd(p, "ROLLBACK", 0, NULL);
  }
  free(note.buf);
  for (store_write_t *w = list; w; w = w->_next) {
    if (rc != 0) {
      if (w->out) { /* a claim's rows are void with its transaction */
        for (size_t i = 0; i < w->nout; i++)
          store_job_fini(&w->out[i]);
        free(w->out);
        w->out = NULL;
        w->nout = 0;
      }
      w->_rc = OFF_ESTORE;
      continue;
    }
    if (w->kind == STORE_R_FETCH || (w->kind == STORE_W_CANCEL && w->prev_status))
      read_fetch(p, w);
    else if (w->kind == STORE_R_LIST)
      read_list(p, w);
  }
  if (rc == 0)
    read_conflicts(p, list);
  return rc;
}
