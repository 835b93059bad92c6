/* api_events_test: server-sent events on fake connections
 * (api/api_test_env.h), white-box (events.c is included, so the test can
 * emit bursts itself): a job's events in order with growing ids (queued,
 * processing, progress, complete), a per-job stream (its current state
 * first, the end right after the final event, 404 for an unknown id, a
 * finished job's one event), Last-Event-ID replays exactly what was
 * missed (all, and one job's), the stream limit (503 too_many_streams),
 * a stats event, a client that stops reading dropped at 1 MiB with the
 * ring bounded, a burst longer than the ring reaching a live client whole,
 * shutdown ending every stream, and a cold job's one event from the store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api_test_env.h"
#include "api/events.c"

#define MAX_STREAMS 2

typedef struct sse {
  uint64_t id;
  char name[16];
  json_t *data;
} sse_t;

typedef struct seen {
  int status;
  bool ended; /* the last chunk came */
  char *body; /* dechunked, NUL-terminated */
  size_t len;
  sse_t ev[4096];
  size_t n;
} seen_t;

static seen_t seen; /* one at a time: big */

static void seen_free(seen_t *s) {
  for (size_t i = 0; i < s->n; i++)
    json_decref(s->ev[i].data);
  free(s->body);
  memset(s, 0, sizeof *s);
}

/* Reads client c's stream so far: status, body (dechunked), events. */
static seen_t *read_stream(client_t *c) {
  seen_free(&seen);
  const char *out = http_fake_out(c->f);
  size_t n = http_fake_out_len(c->f);
  const char *end = find_crlf2(out, n);
  if (!end)
    return &seen;
  seen.status = atoi(out + 9);
  const char *p = end + 4, *lim = out + n;
  seen.body = calloc(1, n + 1);
  assert_non_null(seen.body);
  while (p < lim) {
    char *after;
    unsigned long size = strtoul(p, &after, 16);
    const char *data = strstr(after, "\r\n");
    if (!data || data + 2 + size + 2 > lim)
      break;
    if (size == 0) {
      seen.ended = true;
      break;
    }
    memcpy(seen.body + seen.len, data + 2, size);
    seen.len += size;
    p = data + 2 + size + 2;
  }
  for (const char *e = seen.body; *e && seen.n < sizeof seen.ev / sizeof seen.ev[0];) {
    const char *stop = strstr(e, "\n\n");
    if (!stop)
      break;
    if (*e != ':') { /* a comment is no event */
      sse_t *ev = &seen.ev[seen.n++];
      assert_int_equal(sscanf(e, "id: %" SCNu64 "\nevent: %15s\n", &ev->id, ev->name), 2);
      const char *d = strstr(e, "\ndata: ");
      assert_true(d && d < stop);
      ev->data = json_loadb(d + 7, (size_t)(stop - d - 7), 0, NULL);
      assert_non_null(ev->data);
    }
    e = stop + 2;
  }
  return &seen;
}

static void fx_init_max(env_t *e, size_t max) {
  env_init(e, 1);
  e->api.events = api_events_new(&e->api, max);
  assert_non_null(e->api.events);
}

static void fx_init(env_t *e) {
  env_init(e, 1);
  e->api.events = api_events_new(&e->api, MAX_STREAMS);
  assert_non_null(e->api.events);
}

static void fx_fini(env_t *e) {
  api_events_free(e->api.events);
  e->api.events = NULL;
  env_fini(e);
  seen_free(&seen);
}

static void get(env_t *e, int i, const char *path, const char *last_id) {
  char raw[256];
  snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", path, last_id ? "Last-Event-ID: " : "",
           last_id ? last_id : "", last_id ? "\r\n" : "");
  if (!e->c[i].f)
    env_open(e, i);
  http_fake_send_str(e->c[i].f, raw);
}

static const char *status_of(const sse_t *ev) { return jstr(ev->data, "status"); }

/* The last event of job `id` seen, or NULL. */
static const sse_t *last_of(const seen_t *s, const char *id) {
  for (size_t i = s->n; i-- > 0;)
    if (strcmp(s->ev[i].name, "job") == 0 && strcmp(jstr(s->ev[i].data, "id"), id) == 0)
      return &s->ev[i];
  return NULL;
}

static bool final_seen(client_t *c, const char *id) {
  const sse_t *ev = last_of(read_stream(c), id);
  return ev && strcmp(status_of(ev), "complete") == 0;
}

static void test_job_events(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/events", NULL);
  POLL(&e.loop, true, read_stream(&e.c[1])->status == 200);
  char id[JOB_ID_LEN + 1];
  submit_spin(&e, 400, id);
  POLL(&e.loop, true, final_seen(&e.c[1], id));
  seen_t *s = read_stream(&e.c[1]);
  assert_false(s->ended);
  const char *want[] = {"queued", "processing", "complete"};
  size_t k = 0, progress = 0;
  double last_p = -1;
  for (size_t i = 0; i < s->n; i++) {
    if (i > 0)
      assert_true(s->ev[i].id > s->ev[i - 1].id);
    if (strcmp(s->ev[i].name, "job") != 0)
      continue;
    const char *st = status_of(&s->ev[i]);
    double p = json_number_value(json_object_get(s->ev[i].data, "progress"));
    assert_true(p >= last_p);
    last_p = p;
    if (k < 3 && strcmp(st, want[k]) == 0) {
      k++;
      continue;
    }
    assert_string_equal(st, "processing"); /* progress */
    progress++;
  }
  assert_int_equal(k, 3);
  assert_true(progress >= 1 && progress <= 6); /* 400 ms: at most one per 100 ms */
  assert_int_equal(json_integer_value(json_object_get(s->ev[0].data, "queuePosition")), 1);
  fx_fini(&e);
}

static void test_job_stream(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/jobs/nope/events", NULL);
  check_error(client_wait(&e, &e.c[1], false), 404, "not_found", NULL);
  char id[JOB_ID_LEN + 1], other[JOB_ID_LEN + 1], path[64];
  submit_spin(&e, 300, id);
  submit_spin(&e, 50, other);
  wait_processing(&e, id);
  snprintf(path, sizeof path, "/jobs/%s/events", id);
  get(&e, 2, path, NULL);
  POLL(&e.loop, true, read_stream(&e.c[2])->n >= 1);
  seen_t *s = read_stream(&e.c[2]);
  assert_string_equal(status_of(&s->ev[0]), "processing"); /* its state now */
  POLL(&e.loop, true, read_stream(&e.c[2])->ended);
  s = read_stream(&e.c[2]);
  assert_string_equal(status_of(&s->ev[s->n - 1]), "complete");
  for (size_t i = 0; i < s->n; i++) {
    assert_string_equal(jstr(s->ev[i].data, "id"), id); /* only its job */
    if (i > 0)
      assert_true(s->ev[i].id > s->ev[i - 1].id);
  }
  assert_int_equal(api_events_streams(e.api.events), 0);
  /* A finished job: its state, then the end. */
  wait_job_done(&e, other);
  snprintf(path, sizeof path, "/jobs/%s/events", other);
  http_fake_out_clear(e.c[2].f);
  get(&e, 2, path, NULL);
  POLL(&e.loop, true, read_stream(&e.c[2])->ended);
  assert_int_equal(read_stream(&e.c[2])->n, 1);
  assert_string_equal(status_of(&seen.ev[0]), "complete");
  fx_fini(&e);
}

/* Last-Event-ID: a second client that missed everything after event k
 * gets exactly the events the first one saw after k. */
static void test_replay(void **state) {
  (void)state;
  env_t e;
  fx_init_max(&e, 3);
  get(&e, 1, "/events", NULL);
  POLL(&e.loop, true, read_stream(&e.c[1])->status == 200);
  char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1];
  submit_spin(&e, 150, a);
  submit_spin(&e, 150, b);
  POLL(&e.loop, true, final_seen(&e.c[1], a) && final_seen(&e.c[1], b));
  seen_t *s = read_stream(&e.c[1]);
  assert_true(s->n >= 6);
  uint64_t k = s->ev[1].id;
  size_t skip = strstr(s->body, "\n\n") + 2 - s->body;
  skip = (size_t)(strstr(s->body + skip, "\n\n") + 2 - s->body); /* after event 1 */
  char *want = strdup(s->body + skip);
  char last[32];
  snprintf(last, sizeof last, "%" PRIu64, k);
  get(&e, 2, "/events", last);
  POLL(&e.loop, true, read_stream(&e.c[2])->len >= strlen(want));
  s = read_stream(&e.c[2]);
  assert_true(strncmp(s->body, want, strlen(want)) == 0);
  free(want);
  /* One job's: only its events after k, and the end after its final one. */
  char path[64];
  snprintf(path, sizeof path, "/jobs/%s/events", b);
  http_fake_out_clear(e.c[0].f);
  get(&e, 0, path, last);
  POLL(&e.loop, true, read_stream(&e.c[0])->ended);
  s = read_stream(&e.c[0]);
  assert_true(s->n >= 2);
  for (size_t i = 0; i < s->n; i++) {
    assert_string_equal(jstr(s->ev[i].data, "id"), b);
    assert_true(s->ev[i].id > k);
  }
  assert_string_equal(status_of(&s->ev[s->n - 1]), "complete");
  fx_fini(&e);
}

static void test_limit_and_stop(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/events", NULL);
  get(&e, 2, "/events", NULL);
  POLL(&e.loop, true, api_events_streams(e.api.events) == 2);
  reply_t *r = req(&e, "GET", "/events");
  check_error(r, 503, "too_many_streams", NULL);
  assert_string_equal(rheader(r, "Retry-After"), "1");
  r = req(&e, "HEAD", "/events");
  assert_int_equal(r->status, 503);
  api_events_stop(e.api.events);
  assert_int_equal(api_events_streams(e.api.events), 0);
  POLL(&e.loop, true, read_stream(&e.c[1])->ended);
  check_error(req(&e, "GET", "/events"), 503, "shutting_down", NULL);
  fx_fini(&e);
}

static bool stats_seen(client_t *c) {
  seen_t *s = read_stream(c);
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->ev[i].name, "stats") == 0)
      return true;
  return false;
}

static void test_stats(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/events", NULL);
  POLL(&e.loop, true, stats_seen(&e.c[1]));
  seen_t *s = read_stream(&e.c[1]);
  json_t *d = s->ev[s->n - 1].data;
  assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "workers"), "total")), 1);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "queue"), "capacity")), 100);
  assert_true(json_is_number(json_object_get(d, "completedPerSec")));
  assert_true(json_is_number(json_object_get(d, "failedPerSec")));
  assert_true(json_is_number(json_object_get(d, "loopLagMs")));
  fx_fini(&e);
}

/* A queued job's event, `n` times, in one loop turn. */
static void burst(env_t *e, job_t *j, int n) {
  for (int i = 0; i < n; i++)
    on_job(j, REG_EV_RETRY, e->api.events);
}

static void test_slow_client_dropped(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/events", NULL);
  POLL(&e.loop, true, read_stream(&e.c[1])->status == 200);
  http_fake_set_reading(e.c[1].f, false);
  char id[JOB_ID_LEN + 1];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  job_t *j = registry_get(e.reg, id);
  while (api_events_streams(e.api.events) == 1) {
    burst(&e, j, 100); /* ~40 KB a turn */
    uv_run(&e.loop, UV_RUN_NOWAIT);
  }
  assert_true(http_fake_out_len(e.c[1].f) > HTTP_STREAM_MAX_UNSENT);
  assert_true(http_fake_out_len(e.c[1].f) < HTTP_STREAM_MAX_UNSENT + 64 * 1024);
  assert_int_equal(http_server_stats(e.http)->dropped_slow, 1);
  assert_int_equal(e.api.events->held, EVENTS_REPLAY);
  POLL(&e.loop, true, http_fake_closed(e.c[1].f));
  fx_fini(&e);
}

/* More events in one turn than the ring holds: a live client gets them all. */
static void test_burst_longer_than_ring(void **state) {
  (void)state;
  env_t e;
  fx_init(&e);
  get(&e, 1, "/events", NULL);
  POLL(&e.loop, true, read_stream(&e.c[1])->status == 200);
  char id[JOB_ID_LEN + 1];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  turns(&e, 5);
  job_t *j = registry_get(e.reg, id);
  uint64_t first = e.api.events->last_id + 1;
  burst(&e, j, 2 * EVENTS_REPLAY + 100);
  uint64_t last = e.api.events->last_id;
  POLL(&e.loop, true, read_stream(&e.c[1])->n && seen.ev[seen.n - 1].id == last);
  seen_t *s = read_stream(&e.c[1]);
  size_t i = 0;
  while (s->ev[i].id < first)
    i++;
  for (uint64_t id2 = first; id2 <= last; id2++, i++)
    assert_int_equal(s->ev[i].id, id2);
  assert_int_equal(api_events_streams(e.api.events), 1);
  fx_fini(&e);
}

/* A cold job (its row only on disk): its one event, read from the store. */
static void test_cold_job(void **state) {
  (void)state;
  char dir[] = "/tmp/offload-events-XXXXXX";
  assert_non_null(mkdtemp(dir));
  env_t e;
  env_init_store(&e, 1, dir, 1);
  e.api.events = api_events_new(&e.api, MAX_STREAMS);
  char ids[3][JOB_ID_LEN + 1];
  for (int i = 0; i < 3; i++) {
    submit_spin(&e, 1, ids[i]);
    wait_job_done(&e, ids[i]);
  }
  POLL(&e.loop, true, job_is_cold(registry_get(e.reg, ids[0])));
  char path[64];
  snprintf(path, sizeof path, "/jobs/%s", ids[0]);
  char *want = strdup(req(&e, "GET", path)->body);
  want[strlen(want) - 1] = '\0'; /* the reply's newline */
  snprintf(path, sizeof path, "/jobs/%s/events", ids[0]);
  get(&e, 1, path, NULL);
  POLL(&e.loop, true, read_stream(&e.c[1])->ended);
  seen_t *s = read_stream(&e.c[1]);
  assert_int_equal(s->status, 200);
  assert_int_equal(s->n, 1);
  assert_int_equal(s->ev[0].id, e.api.events->last_id);
  char *got = json_dumps(s->ev[0].data, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_t *w = json_loads(want, 0, NULL);
  char *wants = json_dumps(w, JSON_COMPACT | JSON_REAL_PRECISION(17));
  assert_string_equal(got, wants);
  free(got);
  free(wants);
  json_decref(w);
  free(want);
  fx_fini(&e);
  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_job_events),
      cmocka_unit_test(test_job_stream),
      cmocka_unit_test(test_replay),
      cmocka_unit_test(test_limit_and_stop),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_slow_client_dropped),
      cmocka_unit_test(test_burst_longer_than_ring),
      cmocka_unit_test(test_cold_job),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
