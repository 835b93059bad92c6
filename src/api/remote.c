/* api/remote: in a cluster (--store postgres), the replies about jobs this
 * node does not hold: GET /jobs/<id> (with ?wait), DELETE, GET
 * /jobs/<id>/events, the redirects of files and logs to the node that has
 * them, GET /jobs, GET /nodes, and other nodes' jobs in event streams.
 * Every one is a read (or a cancel) the store thread does; the reply goes
 * out from its callback. Nothing waits on the loop.
 *
 * ?wait on another node's job: the request is a remote waiter, read again
 * when a notification says the job is final (any node's "F" line), and
 * every second anyway (the fallback when a notification is lost), until
 * it is final or its wait ran out.
 *
 * Ownership: a remote request (rreq_t) is freed when its reply went out,
 * or, if its client left, once its read is back. The state (api_t.remote)
 * owns the waiter list and two timers; freed by api_remote_free. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "cluster/cluster.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"

#define POLL_MS 1000

typedef struct rreq {
  store_write_t w; /* first: the store hands this back */
  api_t *a;
  http_req_t *req; /* NULL once the client left */
  api_remote_t what;
  char id[24];
  store_job_t rows[1];
  int64_t deadline; /* mono ms; 0 = no wait */
  bool inflight, linked, last;
  bool again; /* its job's final notification came while a read was in flight: read again */
  struct rreq *prev, *next;
} rreq_t;

struct api_remote_state {
  api_t *a;
  uv_timer_t tick, flush;
  rreq_t *head, *tail; /* remote waiters */
  char (*pending)[24]; /* other nodes' changed jobs, for the event streams */
  bool *pending_final;
  size_t npending, cap;
  int closed;
};

static const char gone_msg[] = "No job with that id (it may never have existed or has expired).";

/* ---- a stored job as the API shows it ---- */

static job_status_t status_of(const char *name) {
  for (int s = 0; s < JOB_NSTATUS; s++)
    if (strcmp(name, job_status_name((job_status_t)s)) == 0)
      return (job_status_t)s;
  return JOB_FAILED;
}

char *api_row_text(api_t *a, const store_job_t *row, size_t pos) {
  job_t t;
  memset(&t, 0, sizeof t);
  offload_task_def_t unknown = {.name = row->task, .files = row->nfiles > 0};
  const offload_task_def_t *def = tasks_catalog_find(a->cat, row->task);
  memcpy(t.id, row->id, JOB_ID_LEN);
  t.id[JOB_ID_LEN] = '\0';
  t.def = def ? def : &unknown;
  t.params = json_loads(row->params, 0, NULL);
  t.status = status_of(row->status);
  t.progress = t.status == JOB_COMPLETE ? 1.0 : row->progress;
  t.result = row->result ? json_loads(row->result, JSON_DECODE_ANY, NULL) : NULL;
  t.err_code = row->err_code;
  t.err_message = row->err_message;
  t.created_at = row->created_at;
  t.started_at = row->started_at;
  t.finished_at = row->finished_at;
  t.attempts = row->attempts;
  t.retries = row->retries;
  t.retry_at = t.status == JOB_QUEUED ? row->retry_at : 0;
  t.files = row->files;
  t.nfiles = row->nfiles;
  if (!pos)
    pos = (size_t)row->place;
  json_t *o = t.params ? api_job_json(&t, t.status == JOB_QUEUED ? pos : 0) : NULL;
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(o);
  json_decref(t.params);
  json_decref(t.result);
  return text;
}

/* `location`: add a Location header naming the job (a replayed submission). */
static void reply_row(api_t *a, http_req_t *req, int status, const store_job_t *row, size_t pos, bool location) {
  char *text = api_row_text(a, row, pos);
  if (!text) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  size_t len = strlen(text);
  text[len] = '\n'; /* json_dumps left room for the NUL: the line ends the body */
  http_headers_t h = HTTP_HEADERS_INIT;
  if (location)
    http_headers_addf(&h, "Location", "/jobs/%s", row->id);
  http_reply_take(req, status, "application/json", &h, text, len + 1);
  http_headers_fini(&h);
}

void api_reply_existing_row(api_t *a, http_req_t *req, const store_job_t *row, const offload_task_def_t *def,
                            const json_t *params) {
  json_t *stored = json_loads(row->params, 0, NULL);
  json_t *shown = tasks_has_secret(def) ? tasks_redact(def, params) : json_incref((json_t *)params);
  bool same = strcmp(row->task, def->name) == 0 && stored && shown && json_equal(stored, shown);
  json_decref(stored);
  json_decref(shown);
  if (!same) {
    api_error(req, API_E_IDEMPOTENCY_CONFLICT, NULL, "Idempotency-Key",
              "This Idempotency-Key was used for another job (%s, task %s) with different parameters.", row->id,
              row->task);
    return;
  }
  reply_row(a, req, 200, row, (size_t)row->place, true);
}

/* ---- one job ---- */

static void rreq_send(rreq_t *r);

static void rreq_free(rreq_t *r) {
  if (r->linked) {
    struct api_remote_state *st = r->a->remote;
    DLIST_UNLINK(st->head, st->tail, r, prev, next);
    r->linked = false;
  }
  store_job_fini(&r->rows[0]);
  free(r);
}

static void on_rreq_abort(http_req_t *req, void *data) {
  rreq_t *r = data;
  (void)req;
  r->req = NULL;
  if (!r->inflight)
    rreq_free(r);
}

static bool is_final(const char *status) {
  return strcmp(status, "complete") == 0 || strcmp(status, "failed") == 0 || strcmp(status, "canceled") == 0;
}

/* A file or a log: the node that ran the job has it. */
static void redirect_to_owner(rreq_t *r) {
  const store_job_t *row = &r->rows[0];
  size_t n = 0;
  const store_node_t *nodes = r->a->cluster ? cluster_nodes(r->a->cluster, &n) : NULL;
  for (size_t i = 0; row->owner && i < n; i++) {
    if (strcmp(nodes[i].id, row->owner) != 0 || strcmp(nodes[i].id, r->a->node_id) == 0)
      continue;
    char loc[1024];
    snprintf(loc, sizeof loc, "%s%s", nodes[i].url, r->req->path);
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Location", loc);
    http_reply(r->req, 307, NULL, &h, NULL, 0);
    http_headers_fini(&h);
    return;
  }
  if (r->what == API_REMOTE_LOG)
    api_error(r->req, API_E_NOT_FOUND, NULL, NULL, "The job ran on node %s, which no longer answers; its log is there.",
              row->owner ? row->owner : "(none yet)");
  else
    api_error(r->req, API_E_NOT_FOUND, NULL, NULL,
              "The job's files are on node %s, which no longer answers (or the job has none yet).",
              row->owner ? row->owner : "(none)");
}

static void answer(rreq_t *r, int rc) {
  api_t *a = r->a;
  http_req_t *req = r->req;
  const store_job_t *row = &r->rows[0];
  if (rc != 0) {
    api_error(req, API_E_STORE_UNAVAILABLE, NULL, NULL, "The job store could not be read; retry shortly.");
    return;
  }
  if (r->what == API_REMOTE_DELETE) {
    if (!r->w.prev_status) {
      api_error(req, API_E_NOT_FOUND, NULL, NULL, gone_msg);
    } else if (is_final(r->w.prev_status)) {
      api_error(req, API_E_ALREADY_FINISHED, NULL, NULL, "The job is already %s.", r->w.prev_status);
    } else {
      /* Queued: canceled now (200). Running on another node: its cancel is on the way (202). */
      reply_row(a, req, strcmp(r->w.prev_status, "queued") == 0 ? 200 : 202, row, 0, false);
    }
    return;
  }
  if (!row->seq) {
    api_error(req, API_E_NOT_FOUND, NULL, NULL, gone_msg);
    return;
  }
  if (r->what == API_REMOTE_EVENTS) {
    char *text = api_row_text(a, row, (size_t)r->w.count);
    if (text)
      api_events_open_remote(a, req, r->id, text, is_final(row->status));
    else
      api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    free(text);
    return;
  }
  if (r->what == API_REMOTE_FILE || r->what == API_REMOTE_LOG) {
    redirect_to_owner(r);
    return;
  }
  reply_row(a, req, 200, row, (size_t)r->w.count, false);
}

static void on_rreq_done(store_write_t *w, int rc, void *data) {
  rreq_t *r = (rreq_t *)w;
  (void)data;
  r->inflight = false;
  if (!r->req) {
    rreq_free(r);
    return;
  }
  bool wait = r->what == API_REMOTE_GET && r->deadline && !r->last && rc == 0 && r->rows[0].seq &&
              !is_final(r->rows[0].status) && clock_mono_ms() < r->deadline;
  if (wait) { /* a waiter: read again on its job's final notification, or each second */
    if (r->again) {
      r->again = false;
      rreq_send(r);
    }
    return;
  }
  answer(r, rc);
  r->req = NULL;
  rreq_free(r);
}

static void rreq_send(rreq_t *r) {
  store_job_fini(&r->rows[0]);
  memset(&r->w, 0, sizeof r->w);
  r->w.kind = r->what == API_REMOTE_DELETE ? STORE_W_CANCEL : STORE_R_FETCH;
  r->w.ids = (const char(*)[24]) & r->id;
  r->w.nids = 1;
  r->w.rows = r->rows;
  /* Its queue place only for a reply that shows it now (a waiter's reads
   * in between only ask whether the job is final). */
  r->w.place = !(r->what == API_REMOTE_GET && r->deadline && !r->last);
  r->w.cb = on_rreq_done;
  r->inflight = true;
  store_write(r->a->store, &r->w);
}

bool api_remote_try(api_t *a, http_req_t *req, const router_match_t *m, api_remote_t what, int64_t wait_s) {
  if (!a->cluster)
    return false;
  char id[JOB_ID_LEN + 2];
  long n = router_param(m, "id", id, sizeof id);
  if (n < 0 || (size_t)n >= sizeof id || n != JOB_ID_LEN) {
    api_error(req, API_E_NOT_FOUND, NULL, NULL, gone_msg);
    return true;
  }
  if (registry_get(a->reg, id))
    return false; /* held here: the local reply */
  if (what == API_REMOTE_DELETE && !store_ok(a->store)) {
    api_reply_submit_error(req, OFF_ESTORE);
    return true;
  }
  rreq_t *r = calloc(1, sizeof *r);
  if (!r) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return true;
  }
  r->a = a;
  r->req = req;
  r->what = what;
  memcpy(r->id, id, JOB_ID_LEN + 1);
  r->deadline = wait_s ? clock_mono_ms() + wait_s * 1000 : 0;
  if (r->deadline) { /* a waiter from the start: a final notification during the first read counts */
    struct api_remote_state *st = a->remote;
    DLIST_APPEND(st->head, st->tail, r, prev, next);
    r->linked = true;
  }
  http_req_on_abort(req, on_rreq_abort, r);
  rreq_send(r);
  return true;
}

/* ---- waiters and event streams ---- */

static void on_tick(uv_timer_t *t) {
  struct api_remote_state *st = t->data;
  int64_t now = clock_mono_ms();
  for (rreq_t *r = st->head; r; r = r->next) {
    if (r->inflight)
      continue;
    r->last = now >= r->deadline; /* its wait ran out: the job as it is now */
    rreq_send(r);
  }
}

typedef struct efetch {
  store_write_t w;
  api_t *a;
  size_t n;
  char (*ids)[24];
  bool *final;
  store_job_t *rows;
} efetch_t;

static void on_events_fetched(store_write_t *w, int rc, void *data) {
  efetch_t *f = (efetch_t *)w;
  (void)data;
  for (size_t i = 0; i < f->n; i++) {
    /* A job this node holds is told by its own registry (fresher than its row). */
    if (rc == 0 && f->rows[i].seq && f->a->events && !registry_get(f->a->reg, f->ids[i])) {
      char *text = api_row_text(f->a, &f->rows[i], 0);
      if (text)
        api_events_remote(f->a->events, f->ids[i], text, is_final(f->rows[i].status));
      free(text);
    }
    store_job_fini(&f->rows[i]);
  }
  free(f->rows);
  free(f->ids);
  free(f->final);
  free(f);
}

static void on_flush(uv_timer_t *t) {
  struct api_remote_state *st = t->data;
  if (!st->npending)
    return;
  efetch_t *f = calloc(1, sizeof *f);
  if (f) {
    f->a = st->a;
    f->n = st->npending;
    f->ids = st->pending;
    f->final = st->pending_final;
    f->rows = calloc(f->n, sizeof *f->rows);
  }
  if (!f || !f->rows) {
    free(f);
    st->npending = 0;
    return;
  }
  st->pending = NULL;
  st->pending_final = NULL;
  st->npending = st->cap = 0;
  f->w.kind = STORE_R_FETCH;
  f->w.ids = (const char(*)[24])f->ids;
  f->w.nids = f->n;
  f->w.rows = f->rows;
  f->w.place = true;
  f->w.cb = on_events_fetched;
  store_write(f->a->store, &f->w);
}

void api_on_cluster_job(const char *id, bool final, bool self, void *data) {
  api_t *a = data;
  struct api_remote_state *st = a->remote;
  if (!st || strlen(id) != JOB_ID_LEN)
    return;
  if (final)
    for (rreq_t *r = st->head; r; r = r->next)
      if (strcmp(r->id, id) == 0) {
        if (r->inflight)
          r->again = true;
        else
          rreq_send(r);
      }
  /* Another node's change, for the streams open here (this node's own
   * changes reached them through the registry). */
  if (self || !a->events || !api_events_streams(a->events))
    return;
  if (st->npending == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 64;
    char(*ids)[24] = realloc(st->pending, cap * sizeof *ids);
    if (!ids)
      return;
    st->pending = ids;
    bool *fin = realloc(st->pending_final, cap * sizeof *fin);
    if (!fin)
      return;
    st->pending_final = fin;
    st->cap = cap;
  }
  memcpy(st->pending[st->npending], id, JOB_ID_LEN + 1);
  st->pending_final[st->npending++] = final;
  if (st->npending == 1)
    uv_timer_start(&st->flush, on_flush, 0, 0); /* one read for what this loop turn brought */
}

size_t api_cluster_streams(void *data) { return api_events_streams(((api_t *)data)->events); }

int api_remote_start(api_t *a) {
  struct api_remote_state *st = calloc(1, sizeof *st);
  if (!st)
    return OFF_ENOMEM;
  st->a = a;
  uv_timer_init(a->loop, &st->tick);
  uv_timer_init(a->loop, &st->flush);
  st->tick.data = st->flush.data = st;
  uv_timer_start(&st->tick, on_tick, POLL_MS, POLL_MS);
  uv_unref((uv_handle_t *)&st->tick);
  a->remote = st;
  return 0;
}

static void on_state_closed(uv_handle_t *h) {
  struct api_remote_state *st = h->data;
  if (++st->closed < 2)
    return;
  free(st->pending);
  free(st->pending_final);
  free(st);
}

void api_remote_free(api_t *a) {
  struct api_remote_state *st = a->remote;
  if (!st)
    return;
  while (st->head) { /* their requests are gone with the server's connections */
    rreq_t *r = st->head;
    DLIST_UNLINK(st->head, st->tail, r, prev, next);
    r->linked = false;
    if (r->req)
      http_req_on_abort(r->req, NULL, NULL);
    r->req = NULL;
    if (!r->inflight)
      rreq_free(r);
  }
  a->remote = NULL;
  uv_close((uv_handle_t *)&st->tick, on_state_closed);
  uv_close((uv_handle_t *)&st->flush, on_state_closed);
}

/* ---- GET /jobs ---- */

typedef struct rlist {
  store_write_t w;
  api_t *a;
  http_req_t *req;
} rlist_t;

static void on_rlist_abort(http_req_t *req, void *data) {
  (void)req;
  ((rlist_t *)data)->req = NULL;
}

static void on_listed(store_write_t *w, int rc, void *data) {
  rlist_t *l = (rlist_t *)w;
  (void)data;
  if (l->req && rc != 0) {
    api_error(l->req, API_E_STORE_UNAVAILABLE, NULL, NULL, "The job store could not be read; retry shortly.");
  } else if (l->req) {
    buf_t b = BUF_INIT;
    int err = buf_puts(&b, "{\"jobs\":[");
    size_t place = (size_t)w->count; /* the newest queued one's; older queued ones are ahead of it */
    for (size_t i = 0; i < w->nout && err == 0; i++) {
      bool queued = strcmp(w->out[i].status, "queued") == 0;
      char *text = api_row_text(l->a, &w->out[i], queued ? place : 0);
      if (queued && place > 1)
        place--;
      err = text ? (i ? buf_append(&b, ",", 1) : 0) : OFF_ENOMEM;
      if (err == 0)
        err = buf_puts(&b, text);
      free(text);
    }
    if (err == 0)
      err = buf_puts(&b, "]}\n");
    if (err != 0) {
      buf_free(&b);
      api_error(l->req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    } else {
      size_t len = b.len;
      http_reply_take(l->req, 200, "application/json", NULL, buf_release(&b), len);
    }
  }
  store_rows_free(w->out, w->nout);
  free(l);
}

void api_remote_list(api_t *a, http_req_t *req, const char *status, int64_t limit) {
  rlist_t *l = calloc(1, sizeof *l);
  if (!l) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  l->a = a;
  l->req = req;
  l->w.kind = STORE_R_LIST;
  l->w.max = (size_t)limit;
  l->w.status = status; /* a static name */
  l->w.cb = on_listed;
  http_req_on_abort(req, on_rlist_abort, l);
  store_write(a->store, &l->w);
}

/* ---- GET /nodes ---- */

void h_nodes(api_t *a, http_req_t *req, const router_match_t *m) {
  (void)m;
  if (!api_no_query(req))
    return;
  json_t *arr = json_array();
  size_t n = 0;
  const store_node_t *nodes = a->cluster ? cluster_nodes(a->cluster, &n) : NULL;
  for (size_t i = 0; arr && i < n; i++)
    json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:b, s:{s:i, s:i}}", "id", nodes[i].id, "url",
                                         nodes[i].url, "startedAt", (json_int_t)nodes[i].started_at,
                                         "lastHeartbeatAt", (json_int_t)nodes[i].last_heartbeat_at, "alive",
                                         nodes[i].alive, "workers", "total", nodes[i].workers_total, "busy",
                                         nodes[i].workers_busy));
  if (arr && !a->cluster) { /* one node: this one */
    api_pool_totals_t t;
    api_pool_totals(a, &t);
    int64_t now = clock_wall_ms();
    json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:b, s:{s:I, s:I}}", "id", a->node_id ? a->node_id : "",
                                         "url", a->node_url ? a->node_url : "", "startedAt",
                                         (json_int_t)(now - (int64_t)(clock_mono_ms() - (int64_t)a->started_ms)),
                                         "lastHeartbeatAt", (json_int_t)now, "alive", 1, "workers", "total",
                                         (json_int_t)t.workers, "busy", (json_int_t)t.busy));
  }
  api_reply_json(req, 200, NULL, json_pack("{s:o}", "nodes", arr ? arr : json_array()));
}
