/* api/events_req: the requests that open an event stream (GET /events,
 * GET /jobs/<id>/events, and another node's job in a cluster): the replay
 * from Last-Event-ID, a per-job stream's start, the limits. The streams
 * then live in events.c. Loop thread only; docs/API.md is the contract. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/events_int.h"
#include "cluster/cluster.h"
#include "util/dlist.h"

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
  return last >= ev->last_id || (ev->held && last + 1 >= events_oldest_id(ev));
}

/* The start of a per-job stream: the job's events after `last` when the
 * ring covers them, else its current state as an event with the newest id
 * (the state after every event so far). *final: nothing more will come.
 * *done: the client has seen the job's end already (the 204 that stops an
 * EventSource from reconnecting). */
static int job_start(api_events_t *ev, job_t *j, bool resume, uint64_t last, buf_t *b, bool *final, bool *done) {
  if (resume && covers(ev, last)) {
    if (events_job_text(ev, j->id, last, ev->last_id, b, final) != 0)
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
    for (uint64_t id = events_first_after(ev, last); rc == 0 && id <= ev->last_id; id++) {
      const event_t *e = events_ring_get(ev, id);
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
  http_req_on_abort(req, events_on_abort, s);
  if (ev->n++ == 0) {
    events_stats_mark(ev);
    uv_timer_start(&ev->stats, events_on_stats, EVENTS_STATS_MS, EVENTS_STATS_MS);
    uv_timer_start(&ev->keepalive, events_on_keepalive, EVENTS_KEEPALIVE_MS, EVENTS_KEEPALIVE_MS);
    cluster_load_changed(a->cluster); /* a cluster: the other nodes start sending their jobs' events */
  }
  events_progress_start(ev); /* stops itself at once when no job runs */
}

void h_events(api_t *a, http_req_t *req, const router_match_t *m) {
  (void)m;
  if (api_no_query(req))
    open_stream(a, req, NULL, NULL, NULL, false);
}

void api_events_open_remote(api_t *a, http_req_t *req, const char *id, const char *text, bool final) {
  open_stream(a, req, NULL, id, text, final);
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

