/* api/events: server-sent events (text/event-stream). GET /events is every
 * job's state changes and, once a second, the server's figures; GET
 * /jobs/<id>/events is one job's changes, from its current state to its
 * final one. docs/API.md is the contract. This file keeps the ring, the
 * streams and their pump, the timers and the registry's observer;
 * events_req.c opens streams (events_int.h is what they share).
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

#include "api/events_int.h"
#include "cluster/cluster.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/log.h"

/* ---- the ring ---- */

uint64_t events_oldest_id(const api_events_t *ev) { return ev->last_id - ev->held + 1; }

/* The first id after `from` the ring still holds (last_id + 1: none). */
uint64_t events_first_after(const api_events_t *ev, uint64_t from) {
  if (!ev->held)
    return ev->last_id + 1;
  return from + 1 > events_oldest_id(ev) ? from + 1 : events_oldest_id(ev);
}

const event_t *events_ring_get(const api_events_t *ev, uint64_t id) {
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

void events_on_abort(http_req_t *req, void *data) {
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
    const event_t *e = events_ring_get(ev, id);
    if (e && buf_append(&ev->all, e->text, e->len) != 0)
      return false;
  }
  ev->all_from = from;
  ev->all_to = to;
  return true;
}

/* Appends to `b` the events after `from` up to `to` that `s` wants; sets
 * *final when its job's final event is among them (and stops there). */
int events_job_text(const api_events_t *ev, const char *job, uint64_t from, uint64_t to, buf_t *b, bool *final) {
  for (uint64_t id = events_first_after(ev, from); id <= to; id++) {
    const event_t *e = events_ring_get(ev, id);
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
  uint64_t from = events_first_after(ev, s->sent) - 1;
  s->sent = to;
  const buf_t *b = &ev->all;
  bool final = false;
  if (s->job[0]) {
    buf_reset(&ev->one);
    b = &ev->one;
    if (events_job_text(ev, s->job, from, to, &ev->one, &final) != 0) {
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

void events_progress_start(api_events_t *ev) {
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
void events_stats_mark(api_events_t *ev) {
  ev->st_ms = uv_now(ev->a->loop);
  finals(ev, &ev->st_complete, &ev->st_failed);
  ev->st_lag_n = ev->a->lag ? ev->a->lag->hist.count : 0;
  ev->st_lag_sum = ev->a->lag ? ev->a->lag->hist.sum : 0;
}

/* Once a second: the queue, the workers, completions and failures per
 * second since the last stats event, and the loop's mean lag meanwhile. */
void events_on_stats(uv_timer_t *t) {
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
  events_stats_mark(ev);
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

void events_on_keepalive(uv_timer_t *t) {
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
    events_progress_start(ev);
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
