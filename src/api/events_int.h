/* api/events_int: the event streams' state, shared by events.c (the ring,
 * the pump that writes streams, the timers, the registry's observer, the
 * life of it all) and events_req.c (the requests that open a stream).
 * Loop thread only. See events.c for the design. */
#ifndef OFFLOAD_API_EVENTS_INT_H
#define OFFLOAD_API_EVENTS_INT_H

#include "api/api_int.h"
#include "util/buf.h"

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

/* ---- events.c ---- */
uint64_t events_oldest_id(const api_events_t *ev);
/* The first id after `from` the ring still holds (last_id + 1: none). */
uint64_t events_first_after(const api_events_t *ev, uint64_t from);
const event_t *events_ring_get(const api_events_t *ev, uint64_t id);
/* Appends to `b` the events of `job` after `from` up to `to`; *final
 * when its final event is among them (and stops there). 0 or -1. */
int events_job_text(const api_events_t *ev, const char *job, uint64_t from, uint64_t to, buf_t *b, bool *final);
/* A stream's abort callback (its client left): frees it. */
void events_on_abort(http_req_t *req, void *data);
/* The progress timer, while streams are open and jobs run. */
void events_progress_start(api_events_t *ev);
/* The stats and keep-alive timers, from the first stream. */
void events_stats_mark(api_events_t *ev);
void events_on_stats(uv_timer_t *t);
void events_on_keepalive(uv_timer_t *t);

#endif
