/* api/cold: replies that show cold jobs (registry.h, job_is_cold): old
 * finished jobs whose params, result and error live only in the store.
 * The store thread reads their rows (STORE_R_FETCH, in order with the
 * writes) and the reply goes out from the read's callback, on the loop;
 * nothing waits meanwhile.
 *
 * Ownership: a fetch owns a copy of each cold job's fields (its `meta`,
 * with every pointer cleared but `def`, which the catalog owns), so the job
 * itself may be evicted before the row arrives; the rows are the store's
 * strings, freed here. The request is borrowed until the reply, or until
 * its abort callback (the client left), after which the fetch only frees
 * itself when the read comes back. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/buf.h"
#include "util/err.h"

static const char gone_msg[] = "No job with that id (it may never have existed or has expired).";

/* A job shown from its kept fields and its row: the text, malloc'd, or NULL
 * (out of memory, or an unreadable row). */
static char *row_text(const job_t *meta, const store_job_t *row, bool seed) {
  job_t t = *meta;
  t.params = json_loads(row->params, 0, NULL);
  t.result = row->result ? json_loads(row->result, JSON_DECODE_ANY, NULL) : NULL;
  t.err_code = row->err_code;
  t.err_message = row->err_message;
  t.files = row->files;
  t.nfiles = row->nfiles;
  t._cold = false;
  json_t *o = t.params ? (seed ? api_seed_job_json(&t, 0) : api_job_json(&t, 0)) : NULL;
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(o);
  json_decref(t.params);
  json_decref(t.result);
  return text;
}

static job_t meta_of(const job_t *j) {
  job_t m = *j;
  m.params = m.result = NULL;
  m.err_code = m.err_message = m.idem_key = m.json_cache = NULL;
  m.files = NULL; /* the row brings them */
  m.nfiles = 0;
  m._item = NULL;
  m._watches = NULL;
  return m;
}

/* ---- one job ---- */

typedef struct fetch {
  store_write_t w; /* first: the store hands this back */
  http_req_t *req; /* NULL once the client left */
  int status;
  bool seed;
  bool event;        /* GET /jobs/<id>/events: one job event, then the end */
  uint64_t event_id; /* its id */
  char location[48]; /* "" = none */
  char id[24];
  store_job_t row;
  job_t meta;
} fetch_t;

static void on_fetch_abort(http_req_t *req, void *data) {
  (void)req;
  ((fetch_t *)data)->req = NULL;
}

static void on_fetched(store_write_t *w, int rc, void *data) {
  fetch_t *f = (fetch_t *)w;
  (void)data;
  if (f->req) {
    char *text = rc == 0 && f->row.seq ? row_text(&f->meta, &f->row, f->seed) : NULL;
    if (rc == 0 && !f->row.seq) {
      api_error(f->req, API_E_NOT_FOUND, NULL, NULL, gone_msg); /* deleted by retention meanwhile */
    } else if (!text) {
      api_error(f->req, rc == 0 ? API_E_INTERNAL : API_E_STORE_UNAVAILABLE, NULL, NULL,
                rc == 0 ? "Out of memory." : "The job store could not be read; retry shortly.");
    } else if (f->event) {
      http_headers_t h = HTTP_HEADERS_INIT;
      http_headers_add(&h, "Cache-Control", "no-store");
      buf_t b = BUF_INIT;
      if (http_stream_start(f->req, 200, "text/event-stream", &h, HTTP_LEN_UNKNOWN) == 0 &&
          (buf_printf(&b, "id: %" PRIu64 "\nevent: job\ndata: %s\n\n", f->event_id, text) != 0 ||
           http_stream_write(f->req, b.data, b.len) == 0))
        http_stream_end(f->req);
      buf_free(&b);
      http_headers_fini(&h);
    } else {
      http_headers_t h = HTTP_HEADERS_INIT;
      if (f->location[0])
        http_headers_add(&h, "Location", f->location);
      size_t len = strlen(text);
      text[len] = '\n'; /* json_dumps left room for the NUL: the line ends the body */
      http_reply_take(f->req, f->status, "application/json", &h, text, len + 1);
      http_headers_fini(&h);
      text = NULL;
    }
    free(text);
  }
  store_job_fini(&f->row);
  free(f);
}

static void cold_fetch(api_t *a, http_req_t *req, int status, const char *location, job_t *j, bool seed, bool event,
                       uint64_t event_id);

void api_reply_cold(api_t *a, http_req_t *req, int status, const char *location, job_t *j, bool seed) {
  cold_fetch(a, req, status, location, j, seed, false, 0);
}

void api_reply_cold_event(api_t *a, http_req_t *req, job_t *j, uint64_t event_id) {
  cold_fetch(a, req, 200, NULL, j, false, true, event_id);
}

static void cold_fetch(api_t *a, http_req_t *req, int status, const char *location, job_t *j, bool seed, bool event,
                       uint64_t event_id) {
  fetch_t *f = calloc(1, sizeof *f);
  if (!f) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  f->event = event;
  f->event_id = event_id;
  f->req = req;
  f->status = status;
  f->seed = seed;
  snprintf(f->location, sizeof f->location, "%s", location ? location : "");
  memcpy(f->id, j->id, JOB_ID_LEN + 1);
  f->meta = meta_of(j);
  f->w.kind = STORE_R_FETCH;
  f->w.ids = &f->id;
  f->w.nids = 1;
  f->w.rows = &f->row;
  f->w.cb = on_fetched;
  http_req_on_abort(req, on_fetch_abort, f);
  store_write(a->store, &f->w);
}

/* ---- a listing ---- */

typedef struct list_fetch {
  store_write_t w; /* first */
  http_req_t *req; /* NULL once the client left */
  size_t n;        /* entries */
  api_list_entry_t *e; /* owned, with their texts */
  size_t ncold;
  char (*ids)[24];   /* of the cold entries, in order */
  store_job_t *rows; /* as many */
} list_fetch_t;

void api_list_entries_free(api_list_entry_t *e, size_t n) {
  for (size_t i = 0; e && i < n; i++)
    free(e[i].text);
  free(e);
}

static void list_fetch_free(list_fetch_t *lf) {
  for (size_t i = 0; i < lf->ncold; i++)
    store_job_fini(&lf->rows[i]);
  free(lf->rows);
  free(lf->ids);
  api_list_entries_free(lf->e, lf->n);
  free(lf);
}

static void on_list_abort(http_req_t *req, void *data) {
  (void)req;
  ((list_fetch_t *)data)->req = NULL;
}

/* The body from the entries: hot texts as they were, cold ones from their
 * rows (one deleted meanwhile is left out). */
static void on_list_fetched(store_write_t *w, int rc, void *data) {
  list_fetch_t *lf = (list_fetch_t *)w;
  (void)data;
  if (!lf->req) {
    list_fetch_free(lf);
    return;
  }
  if (rc != 0) {
    api_error(lf->req, API_E_STORE_UNAVAILABLE, NULL, NULL, "The job store could not be read; retry shortly.");
    list_fetch_free(lf);
    return;
  }
  buf_t b = BUF_INIT;
  int err = buf_puts(&b, "{\"jobs\":[");
  size_t k = 0, shown = 0;
  for (size_t i = 0; i < lf->n && err == 0; i++) {
    char *own = NULL;
    const char *text = lf->e[i].text;
    if (lf->e[i].cold) {
      store_job_t *row = &lf->rows[k++];
      if (!row->seq)
        continue;
      text = own = row_text(&lf->e[i].meta, row, false);
      if (!text) {
        err = OFF_ENOMEM;
        break;
      }
    }
    if (shown++ > 0)
      err = buf_append(&b, ",", 1);
    if (err == 0)
      err = buf_puts(&b, text);
    free(own);
  }
  if (err == 0)
    err = buf_puts(&b, "]}\n");
  if (err != 0) {
    buf_free(&b);
    api_error(lf->req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
  } else {
    size_t len = b.len;
    http_reply_take(lf->req, 200, "application/json", NULL, buf_release(&b), len);
  }
  list_fetch_free(lf);
}

void api_reply_list_cold(api_t *a, http_req_t *req, api_list_entry_t *e, size_t n) {
  list_fetch_t *lf = calloc(1, sizeof *lf);
  size_t ncold = 0;
  for (size_t i = 0; i < n; i++)
    ncold += e[i].cold;
  if (lf) {
    lf->e = e;
    lf->n = n;
    lf->ids = calloc(ncold, sizeof *lf->ids);
    lf->rows = calloc(ncold, sizeof *lf->rows);
  }
  if (!lf || !lf->ids || !lf->rows) {
    if (lf) {
      lf->ncold = 0; /* no row to free */
      list_fetch_free(lf);
    } else {
      api_list_entries_free(e, n);
    }
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  lf->ncold = ncold;
  for (size_t i = 0, k = 0; i < n; i++)
    if (e[i].cold)
      memcpy(lf->ids[k++], e[i].meta.id, JOB_ID_LEN + 1);
  lf->req = req;
  lf->w.kind = STORE_R_FETCH;
  lf->w.ids = (const char(*)[24])lf->ids;
  lf->w.nids = ncold;
  lf->w.rows = lf->rows;
  lf->w.cb = on_list_fetched;
  http_req_on_abort(req, on_list_abort, lf);
  store_write(a->store, &lf->w);
}

int api_list_entry_set(api_list_entry_t *e, const job_t *j, size_t place) {
  memset(e, 0, sizeof *e);
  if (job_is_cold(j)) {
    e->cold = true;
    e->meta = meta_of(j);
    return 0;
  }
  buf_t b = BUF_INIT;
  int rc = api_job_text(j, place, &b);
  if (rc == 0)
    rc = buf_append(&b, "", 1); /* NUL-terminated */
  if (rc != 0) {
    buf_free(&b);
    return rc;
  }
  e->text = buf_release(&b);
  return 0;
}
