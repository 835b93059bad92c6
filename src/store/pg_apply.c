/* store/pg_apply: one batch of writes and reads against PostgreSQL (see
 * pg.h), in ONE round trip: every statement of the batch goes out in
 * libpq's pipeline mode and runs in the pipeline's one implicit
 * transaction (an error anywhere rolls all of it back), then the results
 * come back in order. One statement per kind, whatever the batch's size:
 * every insert is one INSERT over json_to_recordset($1), every final or
 * retry one UPDATE, every progress one UPDATE; then the cancels and
 * claims; the notification of what was queued; then the reads, which see
 * the batch's writes. No statement needs another's answer: what a
 * notification says about rows an UPDATE touched, the UPDATE sends itself
 * (pg_notify in the same statement). Group commit, as with SQLite: the
 * batch holds every write of the turns the store thread was busy for.
 *
 * Fencing: an UPDATE or PROGRESS of a claimed job applies only while the
 * row is still `processing`, owned by this node, with the attempt number
 * its claim gave (the token); a row it did not change is a fenced write
 * (OFF_EFENCED), never an error of the batch. An INSERT whose idempotency
 * key is taken inserts nothing (ON CONFLICT DO NOTHING) and fails
 * OFF_EEXIST with the job holding the key (read after the batch). */
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

/* ids as a text[] literal: {a,b,c} (job ids are [A-Za-z0-9_-]: nothing to
 * quote; any other byte is dropped, so the literal stays one). The index
 * on id then finds the rows, whatever the planner guesses of the JSON. */
static char *id_array(const char *const *ids, size_t n, size_t stride) {
  char *out = malloc(n * 24 + 3);
  if (!out)
    return NULL;
  size_t k = 0;
  out[k++] = '{';
  for (size_t i = 0; i < n; i++) {
    const char *id = (const char *)ids + i * stride;
    if (i)
      out[k++] = ',';
    for (size_t c = 0; id[c] && c < 23; c++)
      if ((id[c] >= 'A' && id[c] <= 'Z') || (id[c] >= 'a' && id[c] <= 'z') || (id[c] >= '0' && id[c] <= '9') ||
          id[c] == '_' || id[c] == '-')
        out[k++] = id[c];
  }
  out[k++] = '}';
  out[k] = '\0';
  return out;
}

/* ---- results by job id ---- */

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

static int find_row(const PGresult *res, const rowref_t *idx, const char *id) {
  rowref_t key = {id, 0};
  const rowref_t *f = idx ? bsearch(&key, idx, (size_t)PQntuples(res), sizeof *idx, cmp_rowref) : NULL;
  return f ? f->row : -1;
}

/* Sets the outcome of every write of `kind` whose job is not in `res`. */
static void mark_missing(store_write_t *list, store_write_kind_t kind, const PGresult *res, int missing_rc) {
  rowref_t *idx = index_rows(res);
  for (store_write_t *w = list; w; w = w->_next)
    if (w->kind == kind && w->_rc == 0 && find_row(res, idx, w->job->id) < 0)
      w->_rc = missing_rc;
  free(idx);
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

/* ---- the pipeline ---- */

typedef enum { S_PLAIN, S_INSERT, S_UPDATE, S_PROGRESS, S_CANCEL, S_CLAIM, S_FETCH, S_LIST, S_LIST_COUNT } step_kind_t;

typedef struct step {
  step_kind_t kind;
  store_write_t *w; /* the write it answers, or NULL (a batch statement) */
} step_t;

typedef struct batch {
  pg_t *p;
  store_write_t *list;
  step_t *steps;
  size_t nsteps, cap;
  wref_t *upd, *prog;
  size_t nupd, nprog;
  bool failed;
  char now[24], head[300], publish[8];
} batch_t;

/* Sends one statement into the pipeline, remembering what answers it. */
static void send_step(batch_t *b, step_kind_t kind, store_write_t *w, const char *name, int n, const char *const *v) {
  if (b->failed)
    return;
  if (b->nsteps == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    step_t *s = realloc(b->steps, cap * sizeof *s);
    if (!s) {
      b->failed = true;
      return;
    }
    b->steps = s;
    b->cap = cap;
  }
  if (!PQsendQueryPrepared(b->p->conn, name, n, v, NULL, NULL, 0)) {
    b->failed = true;
    return;
  }
  b->steps[b->nsteps++] = (step_t){kind, w};
}

static void send_inserts(batch_t *b, json_t *note) {
  json_t *arr = json_array();
  size_t n = 0;
  for (store_write_t *w = b->list; w; w = w->_next) {
    if (w->kind != STORE_W_INSERT)
      continue;
    if (w->job->input_fd &&
        files_keep_input(b->p->cfg.files_dir, w->job->id, w->job->input_fd - 1, w->job->input_bytes, true) != 0) {
      w->_rc = OFF_ESTORE; /* this one fails; the rest of the batch goes on */
      continue;
    }
    json_array_append_new(arr, pg_insert_rec(w->job));
    n++;
    if (b->p->publish_events)
      json_array_append_new(note, json_string(w->job->id));
  }
  char *text = n ? pg_dump(arr) : (json_decref(arr), NULL);
  if (n) {
    const char *v[] = {text};
    if (text)
      send_step(b, S_INSERT, NULL, "ins", 1, v);
    else
      b->failed = true;
  }
  free(text);
}

static void send_updates(batch_t *b, store_write_kind_t kind, bool *queued) {
  size_t n;
  wref_t *r = sorted_writes(b->list, kind, &n);
  if (!r) {
    b->failed = true;
    return;
  }
  if (kind == STORE_W_UPDATE) {
    b->upd = r;
    b->nupd = n;
  } else {
    b->prog = r;
    b->nprog = n;
  }
  if (!n)
    return;
  json_t *arr = json_array();
  char (*ids)[24] = calloc(n, sizeof *ids);
  size_t nids = 0;
  for (size_t i = 0; ids && i < n; i++) {
    const store_job_t *j = r[i].w->job;
    if (superseded(r, n, i))
      continue;
    memcpy(ids[nids++], j->id, 24);
    if (kind == STORE_W_UPDATE && strcmp(j->status, "queued") == 0)
      *queued = true;
    json_array_append_new(arr, kind == STORE_W_UPDATE ? pg_update_rec(j)
                                                      : json_pack("{s:s, s:i, s:f}", "id", j->id, "token", j->token,
                                                                  "progress", j->progress));
  }
  char *text = pg_dump(arr);
  char *idlit = ids ? id_array((const char *const *)(void *)ids, nids, 24) : NULL;
  const char *v[] = {text, b->head, b->publish, b->p->cfg.node_id, idlit};
  if (text && idlit)
    send_step(b, kind == STORE_W_UPDATE ? S_UPDATE : S_PROGRESS, NULL,
              kind == STORE_W_UPDATE ? "upd" : "prog", 5, v);
  else
    b->failed = true;
  free(text);
  free(idlit);
  free(ids);
}

/* The notification of jobs to claim ("N") and of new jobs for event
 * streams ("E"), 300 lines a payload. */
static void send_note(batch_t *b, bool queued, json_t *ids) {
  size_t n = json_array_size(ids), i = 0;
  while (!b->failed && (queued || i < n)) {
    char payload[PG_NOTIFY_MAX + 64];
    size_t len = (size_t)snprintf(payload, sizeof payload, "%s%s", b->p->cfg.node_id, queued ? "\nN" : "");
    for (size_t k = 0; i < n && k < 300; k++, i++)
      len += (size_t)snprintf(payload + len, sizeof payload - len, "\nE %s", json_string_value(json_array_get(ids, i)));
    const char *v[] = {PG_CHANNEL, payload};
    send_step(b, S_PLAIN, NULL, "notify", 2, v);
    queued = false;
  }
}

static void send_batch(batch_t *b) {
  pg_t *p = b->p;
  pg_i64s(b->now, clock_wall_ms());
  snprintf(b->head, sizeof b->head, "%s", p->cfg.node_id);
  snprintf(b->publish, sizeof b->publish, "%s", p->publish_events ? "true" : "false");
  json_t *note = json_array();
  bool queued = false;
  send_inserts(b, note);
  queued = json_array_size(note) > 0;
  for (store_write_t *w = b->list; w; w = w->_next)
    queued |= w->kind == STORE_W_INSERT && w->_rc == 0;
  send_updates(b, STORE_W_UPDATE, &queued);
  send_updates(b, STORE_W_PROGRESS, &queued);
  char tmp[24];
  for (store_write_t *w = b->list; w && !b->failed; w = w->_next) {
    if (w->kind == STORE_W_CANCEL) {
      const char *v[] = {w->ids[0], b->head, b->now};
      send_step(b, S_CANCEL, w, "cancel", 3, v);
    } else if (w->kind == STORE_W_DELETE) {
      const char *v[] = {w->job->id};
      send_step(b, S_PLAIN, w, "delete", 1, v);
    } else if (w->kind == STORE_R_CLAIM) {
      const char *v[] = {p->cfg.node_id, pg_i64s(tmp, (int64_t)w->max), b->now, w->tasks, b->head, b->publish};
      send_step(b, S_CLAIM, w, "claim", 6, v);
    }
  }
  send_note(b, queued, note);
  json_decref(note);
  /* The reads, after every write (in the same transaction: they see them). */
  for (store_write_t *w = b->list; w && !b->failed; w = w->_next) {
    if (w->kind == STORE_R_FETCH || w->kind == STORE_W_CANCEL) {
      char *text = id_array((const char *const *)(const void *)w->ids, w->nids, 24);
      const char *v[] = {text};
      if (text)
        send_step(b, S_FETCH, w, w->place ? "fetch_place" : "fetch", 1, v);
      else
        b->failed = true;
      free(text);
    } else if (w->kind == STORE_R_LIST) {
      const char *v[] = {pg_i64s(tmp, (int64_t)w->max), w->status};
      send_step(b, S_LIST, w, w->status ? "list_s" : "list", w->status ? 2 : 1, v);
      /* The newest queued job listed is the newest queued of all: its
       * place is the number of queued jobs. */
      send_step(b, S_LIST_COUNT, w, "queued", 0, NULL);
    }
  }
}

/* One statement's result, taken by what sent it. */
static void take(batch_t *b, const step_t *s, const PGresult *res) {
  store_write_t *w = s->w;
  switch (s->kind) {
  case S_PLAIN:
    break;
  case S_INSERT: {
    mark_missing(b->list, STORE_W_INSERT, res, OFF_EEXIST);
    uint64_t place = PQntuples(res) ? strtoull(PQgetvalue(res, 0, 2), NULL, 10) : 0;
    for (store_write_t *x = b->list; x; x = x->_next) /* their seqs rise in the batch's order */
      if (x->kind == STORE_W_INSERT && x->_rc == 0 && strcmp(x->job->status, "queued") == 0)
        x->count = ++place;
    break;
  }
  case S_UPDATE:
    mark_missing(b->list, STORE_W_UPDATE, res, OFF_EFENCED);
    break;
  case S_PROGRESS:
    mark_missing(b->list, STORE_W_PROGRESS, res, OFF_EFENCED);
    break;
  case S_CANCEL:
    w->prev_status = PQntuples(res) ? pg_status(PQgetvalue(res, 0, 0)) : NULL;
    break;
  case S_CLAIM:
    if (take_rows(res, &w->out, &w->nout) != 0)
      w->_rc = OFF_ENOMEM;
    for (size_t i = 0; i < w->nout; i++) { /* a pinned job's input is on this node: opened here, not on the loop */
      store_job_t *j = &w->out[i];
      int fd = j->input_type ? files_open_input(b->p->cfg.files_dir, j->id, j->input_bytes) : -1;
      if (fd >= 0)
        j->input_fd = fd + 1;
    }
    if (w->nout > 1)
      qsort(w->out, w->nout, sizeof *w->out, cmp_seq);
    break;
  case S_FETCH:
    for (int i = 0; i < PQntuples(res); i++)
      for (size_t k = 0; k < w->nids; k++)
        if (!w->rows[k].seq && strcmp(w->ids[k], PQgetvalue(res, i, 1)) == 0) {
          if (pg_row(res, i, &w->rows[k]) != 0)
            w->_rc = OFF_ENOMEM;
          if (!PQgetisnull(res, i, PG_NCOLS))
            w->rows[k].place = strtoull(PQgetvalue(res, i, PG_NCOLS), NULL, 10);
          if (w->nids == 1)
            w->count = w->rows[k].place;
          break;
        }
    break;
  case S_LIST:
    if (take_rows(res, &w->out, &w->nout) != 0)
      w->_rc = OFF_ENOMEM;
    break;
  case S_LIST_COUNT:
    w->count = PQntuples(res) ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    break;
  }
}

/* Reads every result, in order, up to the pipeline's sync. */
static void receive(batch_t *b) {
  PGconn *c = b->p->conn;
  size_t k = 0;
  char err[256] = "";
  for (;;) {
    PGresult *res = PQgetResult(c);
    if (!res) {
      if (PQstatus(c) == CONNECTION_BAD)
        break;
      continue; /* the end of one statement's results */
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      break;
    }
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      if (k < b->nsteps && !b->failed)
        take(b, &b->steps[k], res);
    } else {
      if (!b->failed && st != PGRES_PIPELINE_ABORTED)
        snprintf(err, sizeof err, "%s", PQresultErrorMessage(res));
      b->failed = true;
    }
    k++;
    PQclear(res);
  }
  if (err[0]) {
    err[strcspn(err, "\n")] = '\0';
    log_warn("store: a PostgreSQL batch failed (rolled back): %s", err);
  }
}

/* The jobs holding the keys of inserts that found theirs taken. */
static void read_conflicts(pg_t *p, store_write_t *list) {
  for (store_write_t *w = list; w; w = w->_next) {
    if (w->kind != STORE_W_INSERT || w->_rc != OFF_EEXIST)
      continue;
    const char *v[] = {w->job->idem_key};
    PGresult *res = pg_exec(p,
                            "SELECT " PG_COLS ", CASE WHEN status = 'queued' THEN (SELECT count(*) FROM jobs q"
                            " WHERE q.status = 'queued' AND q.seq <= jobs.seq) END FROM jobs WHERE idempotency_key = $1",
                            1, v);
    if (!res) {
      w->_rc = OFF_ESTORE;
      continue;
    }
    if (take_rows(res, &w->out, &w->nout) != 0 || w->nout == 0)
      w->_rc = OFF_ESTORE; /* taken and gone again in between: the client may retry */
    else if (!PQgetisnull(res, 0, PG_NCOLS))
      w->out[0].place = strtoull(PQgetvalue(res, 0, PG_NCOLS), NULL, 10);
    PQclear(res);
  }
}

int pg_apply(pg_t *p, store_write_t *list) {
  for (store_write_t *w = list; w; w = w->_next)
    w->_rc = 0;
  batch_t b = {.p = p, .list = list};
  if (!p->conn || !PQenterPipelineMode(p->conn)) {
    b.failed = true;
  } else {
    uint64_t t0 = clock_mono_ns();
    send_batch(&b);
    if (!PQpipelineSync(p->conn))
      b.failed = true;
    else
      receive(&b);
    PQexitPipelineMode(p->conn);
    double dt = (double)(clock_mono_ns() - t0) / 1e9;
    pthread_mutex_lock(&p->hmu);
    hist_observe(&p->rtt, dt);
    pthread_mutex_unlock(&p->hmu);
    if (PQstatus(p->conn) == CONNECTION_BAD)
      pg_down(p);
  }
  /* A superseded update shares the outcome of the one that replaced it. */
  for (size_t i = b.nupd; i-- > 0;)
    if (superseded(b.upd, b.nupd, i))
      b.upd[i].w->_rc = b.upd[i + 1].w->_rc;
  for (size_t i = b.nprog; i-- > 0;)
    if (superseded(b.prog, b.nprog, i))
      b.prog[i].w->_rc = b.prog[i + 1].w->_rc;
  free(b.upd);
  free(b.prog);
  free(b.steps);
  if (b.failed) { /* rolled back: nothing of it holds, not even what a read or claim saw */
    for (store_write_t *w = list; w; w = w->_next) {
      store_rows_free(w->out, w->nout);
      w->out = NULL;
      w->nout = 0;
      w->prev_status = NULL;
      w->_rc = OFF_ESTORE;
      if (w->kind == STORE_R_FETCH || w->kind == STORE_W_CANCEL)
        for (size_t i = 0; i < w->nids; i++)
          store_job_fini(&w->rows[i]);
    }
    return OFF_ESTORE;
  }
  read_conflicts(p, list);
  return 0;
}
