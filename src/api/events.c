/* api/events: server-sent events (text/event-stream). GET /events is every
 * job's state changes and, once a second, the server's figures; GET
 * /jobs/<id>/events is one job's changes, from its current state to its
 * final one. docs/API.md is the contract.
 *
 * Threads: loop thread only.
 *
 * DESIGN. The registry tells us what its jobs do (registry_set_observer:
 * created, started, retry, final), from inside its own calls; progress is
 * read by ONE 100 ms timer that walks the processing jobs (running only
 * while streams are open and jobs are in a pool) and sends a job whose
 * progress moved since it was last shown (job_t.shown_progress): at most
 * 10 progress events a second per job, whatever the number of clients.
 * `stats` comes from one 1 s timer, the keep-alive comment from one 15 s
 * timer. No timer per client, no copy of the job list per client.
 *
 * Each event is serialized once ("id: N\nevent: NAME\ndata: {...}\n\n")
 * into the replay ring: the last EVENTS_REPLAY events, slot id %
 * EVENTS_REPLAY, ids contiguous. Streams are never written from the
 * observer: each stream only remembers the last id it was given (`sent`),
 * and the pump (a uv_idle_t, active while some stream is behind) brings
 * EVENTS_PUMP_STREAMS streams per loop turn up to date with one write each
 * (every whole-stream client wants the same bytes: their concatenation is
 * built once per pass), so the loop polls for other requests between
 * batches and a burst of events costs each client one write. Before the
 * ring overwrites an event some stream may not have yet (a burst of more
 * than EVENTS_REPLAY events before a pass ends), every stream is brought up
 * to date first, so a live client never misses an event.
 *
 * Back-pressure: http_stream_write drops a connection whose unsent bytes
 * are over HTTP_STREAM_MAX_UNSENT (1 MiB) and returns an error; the stream
 * is then freed (no abort callback comes). So a client that stops reading
 * costs at most 1 MiB plus one write, and the loop never waits for it.
 *
 * Ids start at the server's start time in microseconds, so they keep
 * growing across restarts too. Events are kept from the first stream ever
 * opened on (a server nobody follows serializes nothing).
 *
 * Ownership: the api_events_t owns the ring, its buffers and every stream;
 * a stream is freed when its body ends, when a write fails, or when its
 * client leaves (the abort callback). The struct is freed once its four
 * handles have closed (api_events_free). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "cluster/cluster.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/log.h"

#define EVENTS_REPLAY 1024
#define EVENTS_PROGRESS_MS 100
#define EVENTS_STATS_MS 1000
#define EVENTS_KEEPALIVE_MS 15000
#define EVENTS_PUMP_STREAMS 4
#define EVENT_STREAM "text/event-stream"
#define KEEPALIVE ": keep-alive\n\n"

typedef struct event {
  uint64_t id;
  char job[JOB_ID_LEN + 1]; /* "" for stats */
  bool final;               /* the job's last event */
  size_t len;
  char *text;
} event_t;

typedef struct stream {
  api_events_t *ev;
  http_req_t *req;
  char job[JOB_ID_LEN + 1]; /* a per-job stream's job; "" for every event */
  uint64_t sent;            /* the id of the last event it was given */
  struct stream *prev, *next;
} stream_t;

struct api_events {
  api_t *a;
  size_t max_streams;
  bool armed, stopping;
  uint64_t last_id; /* the newest event's id (the base before any) */
  size_t held;      /* events in the ring */
  event_t *ring[EVENTS_REPLAY];
  uint64_t floor; /* every stream has every event up to this id */
  stream_t *head, *tail, *cursor;
  size_t n;
  uint64_t pass_to; /* the pump's pass brings streams up to this id */
  buf_t all;        /* the events (all_from, all_to], for whole-stream clients */
  uint64_t all_from, all_to;
  buf_t one; /* one per-job stream's events */
  uv_timer_t progress, stats, keepalive;
  uv_idle_t pump;
  int handles; /* open; the last close frees the struct */
  /* The stats timer's previous look. */
  uint64_t st_ms, st_complete, st_failed, st_lag_n;
  double st_lag_sum;
};

/* ---- the ring ---- */

static uint64_t oldest_id(const api_events_t *ev) { return ev->last_id - ev->held + 1; }

/* The first id after `from` the ring still holds (last_id + 1: none). */
static uint64_t first_after(const api_events_t *ev, uint64_t from) {
  if (!ev->held)
    return ev->last_id + 1;
  return from + 1 > oldest_id(ev) ? from + 1 : oldest_id(ev);
}

static const event_t *ring_get(const api_events_t *ev, uint64_t id) {
  const event_t *e = ev->ring[id % EVENTS_REPLAY];
  return e && e->id == id ? e : NULL;
}

static void catch_up_all(api_events_t *ev);

/* The id the next event gets. Everyone first gets the event its slot held,
 * if some stream may still lack it. */
static uint64_t next_id(api_events_t *ev) {
  uint64_t id = ev->last_id + 1;
  const event_t *old = ev->ring[id % EVENTS_REPLAY];
  if (old && old->id > ev->floor)
    catch_up_all(ev);
  return id;
}

static void pump_start(api_events_t *ev);

/* Files the event (its text taken from `b`) under `id` (next_id's). */
static void push(api_events_t *ev, uint64_t id, const char *job, bool final, buf_t *b) {
  event_t *e = malloc(sizeof *e);
  size_t len = b->len;
  char *text = buf_release(b);
  if (!e || !text) {
    free(e);
    free(text);
    log_warn("events: out of memory; an event was not sent");
    return;
  }
  *e = (event_t){.id = id, .final = final, .len = len, .text = text};
  snprintf(e->job, sizeof e->job, "%s", job ? job : "");
  event_t **slot = &ev->ring[id % EVENTS_REPLAY];
  if (*slot) {
    free((*slot)->text);
    free(*slot);
    ev->held--;
  }
  *slot = e;
  ev->held++;
  ev->last_id = id;
  if (ev->n)
    pump_start(ev);
}

/* A job event: the job as GET /jobs/<id> shows it, at queue place `pos`. */
static void emit_job(api_events_t *ev, job_t *j, size_t pos, bool final) {
  uint64_t id = next_id(ev);
  buf_t b = BUF_INIT;
  if (buf_printf(&b, "id: %" PRIu64 "\nevent: job\ndata: ", id) != 0 || api_job_text(j, pos, &b) != 0 ||
      buf_append(&b, "\n\n", 2) != 0) {
    buf_free(&b);
    log_warn("events: out of memory; an event was not sent");
    return;
  }
  j->shown_progress = j->progress;
  push(ev, id, j->id, final, &b);
}

/* ---- streams ---- */

static void timers_stop(api_events_t *ev) {
  uv_timer_stop(&ev->progress);
  uv_timer_stop(&ev->stats);
  uv_timer_stop(&ev->keepalive);
}

/* Frees the stream; its request is not touched again. */
static void stream_free(stream_t *s) {
  api_events_t *ev = s->ev;
  if (ev->cursor == s)
    ev->cursor = s->next;
  DLIST_UNLINK(ev->head, ev->tail, s, prev, next);
  if (--ev->n == 0)
    timers_stop(ev);
  free(s);
}

/* The body is complete: the last chunk, then free. */
static void finish(stream_t *s) {
  http_stream_end(s->req);
  stream_free(s);
}

static void on_abort(http_req_t *req, void *data) {
  (void)req;
  stream_free(data);
}

/* The whole-stream clients' bytes for (from, to]: built once per range. */
static bool all_text(api_events_t *ev, uint64_t from, uint64_t to) {
  if (ev->all_from == from && ev->all_to == to)
    return true;
  buf_reset(&ev->all);
  ev->all_to = 0; /* invalid until built */
  for (uint64_t id = from + 1; id <= to; id++) {
    const event_t *e = ring_get(ev, id);
    if (e && buf_append(&ev->all, e->text, e->len) != 0)
      return false;
  }
  ev->all_from = from;
  ev->all_to = to;
  return true;
}

/* Appends to `b` the events after `from` up to `to` that `s` wants; sets
 * *final when its job's final event is among them (and stops there). */
static int job_text(const api_events_t *ev, const char *job, uint64_t from, uint64_t to, buf_t *b, bool *final) {
  for (uint64_t id = first_after(ev, from); id <= to; id++) {
    const event_t *e = ring_get(ev, id);
    if (!e || strcmp(e->job, job) != 0)
      continue;
    if (buf_append(b, e->text, e->len) != 0)
      return -1;
    if (e->final) {
      *final = true;
      break;
    }
  }
  return 0;
}

/* Gives `s` the events after s->sent up to `to` in one write, and ends a
 * per-job stream after its job's final event. Events the ring no longer
 * holds are skipped. */
static void stream_send(stream_t *s, uint64_t to) {
  api_events_t *ev = s->ev;
  if (to <= s->sent)
    return;
  uint64_t from = first_after(ev, s->sent) - 1;
  s->sent = to;
  const buf_t *b = &ev->all;
  bool final = false;
  if (s->job[0]) {
    buf_reset(&ev->one);
    b = &ev->one;
    if (job_text(ev, s->job, from, to, &ev->one, &final) != 0) {
      finish(s); /* out of memory: the client reconnects with Last-Event-ID */
      return;
    }
  } else if (!all_text(ev, from, to)) {
    finish(s);
    return;
  }
  if (b->len && http_stream_write(s->req, b->data, b->len) != 0) {
    stream_free(s); /* dropped (a client that stopped reading) or failed: closed */
    return;
  }
  if (final)
    finish(s);
}

static void catch_up_all(api_events_t *ev) {
  for (stream_t *s = ev->head, *next; s; s = next) {
    next = s->next;
    stream_send(s, ev->last_id);
  }
  ev->floor = ev->last_id;
}

/* One batch of streams per loop turn; a pass ends when every stream had
 * its turn, and another starts while events came meanwhile. */
static void on_pump(uv_idle_t *h) {
  api_events_t *ev = h->data;
  for (int k = 0; k < EVENTS_PUMP_STREAMS && ev->cursor; k++) {
    stream_t *s = ev->cursor;
    ev->cursor = s->next;
    stream_send(s, ev->pass_to);
  }
  if (ev->cursor)
    return;
  ev->floor = ev->pass_to;
  if (ev->pass_to == ev->last_id || !ev->head) {
    uv_idle_stop(h);
    return;
  }
  ev->pass_to = ev->last_id;
  ev->cursor = ev->head;
}

static void pump_start(api_events_t *ev) {
  if (uv_is_active((uv_handle_t *)&ev->pump))
    return;
  ev->pass_to = ev->last_id;
  ev->cursor = ev->head;
  uv_idle_start(&ev->pump, on_pump);
}

/* ---- the timers ---- */

/* Every 100 ms while streams are open and jobs are in a pool: O(workers). */
static void on_progress(uv_timer_t *t) {
  api_events_t *ev = t->data;
  registry_t *r = ev->a->reg;
  if (registry_in_flight(r) == 0) {
    uv_timer_stop(t); /* the next job event starts it again */
    return;
  }
  /* Files starts nobody reported yet and reads every running job's
   * progress (a job found final is told by its done callback). */
  size_t queued[LANE_N];
  registry_sync(r, queued);
  for (job_t *j = registry_first_with(r, JOB_PROCESSING); j; j = registry_next_with(j, JOB_PROCESSING))
    if (j->progress != j->shown_progress)
      emit_job(ev, j, 0, false);
}

static void progress_start(api_events_t *ev) {
  if (ev->n && !ev->stopping && !uv_is_active((uv_handle_t *)&ev->progress))
    uv_timer_start(&ev->progress, on_progress, EVENTS_PROGRESS_MS, EVENTS_PROGRESS_MS);
}

static void finals(api_events_t *ev, uint64_t *complete, uint64_t *failed) {
  const registry_stats_t *st = registry_stats(ev->a->reg);
  *complete = *failed = 0;
  for (size_t i = 0; i < ev->a->cat->n; i++) {
    *complete += st->finals[i][JOB_COMPLETE];
    *failed += st->finals[i][JOB_FAILED];
  }
}

/* The stats timer's starting point. */
static void stats_mark(api_events_t *ev) {
  ev->st_ms = uv_now(ev->a->loop);
  finals(ev, &ev->st_complete, &ev->st_failed);
  ev->st_lag_n = ev->a->lag ? ev->a->lag->hist.count : 0;
  ev->st_lag_sum = ev->a->lag ? ev->a->lag->hist.sum : 0;
}

/* Once a second: the queue, the workers, completions and failures per
 * second since the last stats event, and the loop's mean lag meanwhile. */
static void on_stats(uv_timer_t *t) {
  api_events_t *ev = t->data;
  api_pool_totals_t pt;
  api_pool_totals(ev->a, &pt);
  uint64_t complete, failed;
  finals(ev, &complete, &failed);
  double secs = (double)(uv_now(ev->a->loop) - ev->st_ms) / 1000.0;
  if (secs <= 0)
    secs = 1;
  const hist_t *lag = ev->a->lag ? &ev->a->lag->hist : NULL;
  double lag_ms = lag && lag->count > ev->st_lag_n
                      ? (lag->sum - ev->st_lag_sum) / (double)(lag->count - ev->st_lag_n) * 1000.0
                      : 0.0;
  double cps = (double)(complete - ev->st_complete) / secs, fps = (double)(failed - ev->st_failed) / secs;
  stats_mark(ev);
  uint64_t id = next_id(ev);
  buf_t b = BUF_INIT;
  if (buf_printf(&b,
                 "id: %" PRIu64 "\nevent: stats\ndata: {\"queue\":{\"depth\":%" PRIu64 ",\"capacity\":%" PRIu64
                 "},\"workers\":{\"total\":%" PRIu64 ",\"busy\":%" PRIu64
                 "},\"completedPerSec\":%.2f,\"failedPerSec\":%.2f,\"loopLagMs\":%.3f}\n\n",
                 id, pt.depth, pt.capacity, pt.workers, pt.busy, cps, fps, lag_ms) != 0) {
    buf_free(&b);
    return;
  }
  push(ev, id, NULL, false, &b);
}

static void on_keepalive(uv_timer_t *t) {
  api_events_t *ev = t->data;
  for (stream_t *s = ev->head, *next; s; s = next) {
    next = s->next;
    if (http_stream_write(s->req, KEEPALIVE, sizeof KEEPALIVE - 1) != 0)
      stream_free(s);
  }
}

/* ---- the registry's side ---- */

static void on_job(job_t *j, registry_event_t what, void *data) {
  api_events_t *ev = data;
  if (!ev->armed || ev->stopping)
    return;
  /* Only a new job has a queue place to show; a retry waits out its backoff first. */
  emit_job(ev, j, what == REG_EV_CREATED ? registry_peek_position(ev->a->reg, j) : 0, what == REG_EV_FINAL);
  if (what != REG_EV_FINAL)
    progress_start(ev);
}

/* ---- the requests ---- */

/* Last-Event-ID: decimal digits only, else ignored (no replay). */
static bool parse_id(const char *text, uint64_t *out) {
  char *end;
  if (!text || *text < '0' || *text > '9')
    return false;
  errno = 0;
  *out = strtoull(text, &end, 10);
  return errno == 0 && *end == '\0';
}

/* Whether the ring holds every event after `last` (so a replay is whole). */
static bool covers(const api_events_t *ev, uint64_t last) {
  return last >= ev->last_id || (ev->held && last + 1 >= oldest_id(ev));
}

/* The start of a per-job stream: the job's events after `last` when the
 * ring covers them, else its current state as an event with the newest id
 * (the state after every event so far). *final: nothing more will come.
 * *done: the client has seen the job's end already (the 204 that stops an
 * EventSource from reconnecting). */
static int job_start(api_events_t *ev, job_t *j, bool resume, uint64_t last, buf_t *b, bool *final, bool *done) {
  if (resume && covers(ev, last)) {
    if (job_text(ev, j->id, last, ev->last_id, b, final) != 0)
      return -1;
    if (*final || !job_is_final(j))
      return 0;
    if (job_final_told(j)) { /* its final event (or a final state) is behind `last` */
      *final = *done = true;
      return 0;
    } /* else final a moment before it is told: show the state */
  }
  size_t pos = registry_position(ev->a->reg, j); /* may file other jobs' starts first */
  if (buf_printf(b, "id: %" PRIu64 "\nevent: job\ndata: ", ev->last_id) != 0 || api_job_text(j, pos, b) != 0 ||
      buf_append(b, "\n\n", 2) != 0)
    return -1;
  *final = job_is_final(j);
  return 0;
}

/* `j`: a per-job stream of a job this node holds; `rid` and `rtext`: of
 * another node's job (cluster), its current state's JSON; neither: GET
 * /events. */
static void open_stream(api_t *a, http_req_t *req, job_t *j, const char *rid, const char *rtext, bool rfinal) {
  api_events_t *ev = a->events;
  if (ev && ev->stopping) {
    api_error(req, API_E_SHUTTING_DOWN, NULL, NULL, "The server is shutting down.");
    return;
  }
  if (!ev || ev->n >= ev->max_streams) {
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "Retry-After", "1");
    api_error(req, API_E_TOO_MANY_STREAMS, &h, NULL,
              "All %zu event streams this server allows are open (--max-event-streams); retry later.",
              ev ? ev->max_streams : 0);
    http_headers_fini(&h);
    return;
  }
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "Cache-Control", "no-store");
  if (req->method == HTTP_M_HEAD) { /* the head of a stream, no body */
    if (http_stream_start(req, 200, EVENT_STREAM, &h, HTTP_LEN_UNKNOWN) == 0)
      http_stream_end(req);
    http_headers_fini(&h);
    return;
  }
  ev->armed = true; /* from now on a client may come back for what it missed */
  uint64_t last = 0;
  bool resume = parse_id(http_req_header(req, "Last-Event-ID"), &last);
  buf_t b = BUF_INIT;
  bool final = false, done = false;
  int rc = 0;
  if (j) {
    rc = job_start(ev, j, resume, last, &b, &final, &done);
  } else if (rid) { /* its state now (a replay of another node's job is not kept) */
    rc = buf_printf(&b, "id: %" PRIu64 "\nevent: job\ndata: %s\n\n", ev->last_id, rtext);
    final = rfinal;
  } else if (resume) { /* from the oldest event held when `last` is older */
    for (uint64_t id = first_after(ev, last); rc == 0 && id <= ev->last_id; id++) {
      const event_t *e = ring_get(ev, id);
      if (e)
        rc = buf_append(&b, e->text, e->len);
    }
  }
  if (rc == 0 && done) {
    buf_free(&b);
    http_reply(req, 204, NULL, &h, NULL, 0);
    http_headers_fini(&h);
    return;
  }
  stream_t *s = rc == 0 ? calloc(1, sizeof *s) : NULL;
  if (!s) {
    buf_free(&b);
    http_headers_fini(&h);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  rc = http_stream_start(req, 200, EVENT_STREAM, &h, HTTP_LEN_UNKNOWN);
  http_headers_fini(&h);
  if (rc == 0 && b.len)
    rc = http_stream_write(req, b.data, b.len);
  buf_free(&b);
  if (rc != 0) { /* the connection is closed */
    free(s);
    return;
  }
  if (final) {
    http_stream_end(req);
    free(s);
    return;
  }
  *s = (stream_t){.ev = ev, .req = req, .sent = ev->last_id};
  if (j || rid)
    snprintf(s->job, sizeof s->job, "%s", j ? j->id : rid);
  DLIST_APPEND(ev->head, ev->tail, s, prev, next);
  http_req_on_abort(req, on_abort, s);
  if (ev->n++ == 0) {
    stats_mark(ev);
    uv_timer_start(&ev->stats, on_stats, EVENTS_STATS_MS, EVENTS_STATS_MS);
    uv_timer_start(&ev->keepalive, on_keepalive, EVENTS_KEEPALIVE_MS, EVENTS_KEEPALIVE_MS);
    cluster_load_changed(a->cluster); /* a cluster: the other nodes start sending their jobs' events */
  }
  progress_start(ev); /* stops itself at once when no job runs */
}

void h_events(api_t *a, http_req_t *req, const router_match_t *m) {
  (void)m;
  if (api_no_query(req))
    open_stream(a, req, NULL, NULL, NULL, false);
}

void api_events_open_remote(api_t *a, http_req_t *req, const char *id, const char *text, bool final) {
  open_stream(a, req, NULL, id, text, final);
}

void api_events_remote(api_events_t *ev, const char *id, const char *text, bool final) {
  if (!ev || !ev->armed || ev->stopping)
    return;
  uint64_t eid = next_id(ev);
  buf_t b = BUF_INIT;
  if (buf_printf(&b, "id: %" PRIu64 "\nevent: job\ndata: %s\n\n", eid, text) != 0) {
    buf_free(&b);
    return;
  }
  push(ev, eid, id, final, &b);
}

void h_job_events(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  if (api_remote_try(a, req, m, API_REMOTE_EVENTS, 0))
    return; /* another node's job (cluster) */
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  if (job_is_cold(j)) { /* final long ago: its one event, from its row */
    api_reply_cold_event(a, req, j, a->events ? a->events->last_id : 0);
    return;
  }
  open_stream(a, req, j, NULL, NULL, false);
}

/* ---- api.h ---- */

api_events_t *api_events_new(api_t *a, size_t max_streams) {
  api_events_t *ev = calloc(1, sizeof *ev);
  if (!ev)
    return NULL;
  ev->a = a;
  ev->max_streams = max_streams;
  ev->last_id = (uint64_t)clock_wall_ms() * 1000;
  ev->floor = ev->last_id;
  uv_timer_init(a->loop, &ev->progress);
  uv_timer_init(a->loop, &ev->stats);
  uv_timer_init(a->loop, &ev->keepalive);
  uv_idle_init(a->loop, &ev->pump);
  ev->progress.data = ev->stats.data = ev->keepalive.data = ev->pump.data = ev;
  ev->handles = 4;
  registry_set_observer(a->reg, on_job, ev);
  return ev;
}

size_t api_events_streams(const api_events_t *ev) { return ev ? ev->n : 0; }

void api_events_stop(api_events_t *ev) {
  if (!ev || ev->stopping)
    return;
  catch_up_all(ev); /* everyone gets every event, then the end of the body */
  ev->stopping = true;
  while (ev->head)
    finish(ev->head);
  timers_stop(ev);
  uv_idle_stop(&ev->pump);
}

static void on_closed(uv_handle_t *h) {
  api_events_t *ev = h->data;
  if (--ev->handles > 0)
    return;
  for (size_t i = 0; i < EVENTS_REPLAY; i++) {
    if (ev->ring[i])
      free(ev->ring[i]->text);
    free(ev->ring[i]);
  }
  buf_free(&ev->all);
  buf_free(&ev->one);
  free(ev);
}

void api_events_free(api_events_t *ev) {
  if (!ev)
    return;
  api_events_stop(ev);
  registry_set_observer(ev->a->reg, NULL, NULL);
  uv_close((uv_handle_t *)&ev->progress, on_closed);
  uv_close((uv_handle_t *)&ev->stats, on_closed);
  uv_close((uv_handle_t *)&ev->keepalive, on_closed);
  uv_close((uv_handle_t *)&ev->pump, on_closed);
}
