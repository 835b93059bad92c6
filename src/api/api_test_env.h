/* api/api_test_env: the api's unit-test fixture (test-only; include after
 * cmocka.h). A private loop, the task catalog, a registry, a pool of 1–2
 * workers, an api_t and an http server that never listens, with fake
 * connections (http/http_fake.h) as clients. Tests send raw HTTP and read
 * whole replies back: status, head, body, and the body parsed by jansson.
 *
 * Waits are on conditions (util/test_poll.h), never on time. Every helper is
 * static inline so each test file uses only what it needs. */
#ifndef OFFLOAD_API_TEST_ENV_H
#define OFFLOAD_API_TEST_ENV_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "http/http_fake.h"
#include "util/clock.h"
#include "util/test_poll.h"

#define ENV_MAX_BODY 4096
#define ENV_CLIENTS 3

/* One whole reply read from a client's output. */
typedef struct reply {
  int status;
  char *head; /* status line and headers, NUL-terminated */
  char *body; /* NUL-terminated; body_len bytes */
  size_t body_len;
  json_t *json; /* the body parsed, or NULL when it is not JSON */
} reply_t;

typedef struct client {
  http_fake_t *f;
  size_t off; /* where the next unread reply starts in the output */
  reply_t r;  /* the latest reply read */
} client_t;

typedef struct env {
  uv_loop_t loop;
  tasks_catalog_t cat;
  registry_t *reg;
  pool_t *pool;
  http_server_t *http;
  store_t *store; /* NULL, or the store given to env_init_store */
  looplag_t lag; /* never started: zero figures for /metrics */
  api_t api;
  client_t c[ENV_CLIENTS]; /* c[0] is opened by env_init */
} env_t;

static inline void reply_free(reply_t *r) {
  free(r->head);
  free(r->body);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

static inline client_t *env_open(env_t *e, int i) {
  assert_null(e->c[i].f);
  e->c[i].f = http_fake_new(e->http);
  assert_non_null(e->c[i].f);
  http_fake_set_reading(e->c[i].f, true);
  return &e->c[i];
}

/* `max_queue`: jobs that may wait; `timeout_ms`: the default job timeout
 * (--job-timeout-ms; 0 = none); `extra`: kinds after the built-ins (as
 * plug-ins join), `nextra` of them. */
static inline void env_init_extra(env_t *e, unsigned workers, size_t max_queue, int64_t timeout_ms,
                                  const char *sqlite_dir, size_t cache_finished,
                                  const offload_task_def_t *const *extra, size_t nextra) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  tasks_options_t to = {.isolation = OFFLOAD_ISOLATION_THREAD, .extra = extra, .nextra = nextra};
  assert_int_equal(tasks_catalog_init_with(&e->cat, &to), 0);
  if (sqlite_dir) {
    char err[512];
    store_config_t sc = {.kind = STORE_SQLITE, .data_dir = sqlite_dir, .strict = false};
    e->store = store_open(&e->loop, &sc, err, sizeof err);
    if (!e->store)
      fail_msg("store_open: %s", err);
  }
  registry_config_t rc = {.catalog = &e->cat,
                          .max_finished = 1000,
                          .retention_ms = 3600 * 1000,
                          .default_timeout_ms = timeout_ms,
                          .store = e->store,
                          .cache_finished = cache_finished};
  e->reg = registry_new(&e->loop, &rc);
  assert_non_null(e->reg);
  api_logs_t *logs = api_logs_new(&e->loop); /* before the workers, as server.c */
  assert_non_null(logs);
  /* A generous grace: tests cancel cooperative tasks and then free the pool,
   * which waits for them that long (a slow sanitizer run included). */
  pool_config_t pc = {.workers = workers, .max_queue = max_queue, .nice = 0, .kill_grace_ms = 10000};
  e->pool = pool_new(&e->loop, &pc, registry_on_done, e->reg);
  assert_non_null(e->pool);
  registry_attach(e->reg, e->pool, NULL);
  http_config_t hc = {.max_header_bytes = 16 * 1024,
                      .max_body = ENV_MAX_BODY,
                      .request_timeout_ms = 600000,
                      .keepalive_timeout_ms = 600000,
                      .max_connections = 16};
  e->api = (api_t){.loop = &e->loop,
                   .reg = e->reg,
                   .pools = {e->pool, NULL},
                   .cat = &e->cat,
                   .lag = &e->lag,
                   .store = e->store,
                   .logs = logs,
                   .started_ms = (uint64_t)clock_mono_ms()};
  e->http = http_server_new(&e->loop, &hc, api_on_head, api_on_request, &e->api);
  assert_non_null(e->http);
  e->api.http = e->http;
  if (e->store)
    assert_int_equal(store_load(e->store, NULL, NULL), 0); /* a fresh dir: starts the store thread */
  env_open(e, 0);
}

static inline void env_init_full(env_t *e, unsigned workers, size_t max_queue, int64_t timeout_ms,
                                 const char *sqlite_dir, size_t cache_finished) {
  env_init_extra(e, workers, max_queue, timeout_ms, sqlite_dir, cache_finished, NULL, 0);
}

static inline void env_init_cfg(env_t *e, unsigned workers, size_t max_queue, int64_t timeout_ms) {
  env_init_full(e, workers, max_queue, timeout_ms, NULL, 0);
}

/* With a SQLite store (relaxed) in `dir`, which must be new or empty, and
 * `cache_finished` (0 = every finished job stays whole in memory). */
static inline void env_init_store(env_t *e, unsigned workers, const char *dir, size_t cache_finished) {
  env_init_full(e, workers, 100, 0, dir, cache_finished);
}

static inline void env_init(env_t *e, unsigned workers) { env_init_cfg(e, workers, 100, 0); }

/* The order server.c uses: connections (held replies get their abort
 * callback), then the pool (running jobs are asked to stop first, so the
 * join is quick), then the registry, then the handles' close callbacks. */
static inline void env_fini(env_t *e) {
  http_server_free(e->http);
  for (int i = 0; i < ENV_CLIENTS; i++) {
    if (!e->c[i].f)
      continue;
    POLL(&e->loop, true, http_fake_closed(e->c[i].f));
    http_fake_free(e->c[i].f);
    reply_free(&e->c[i].r);
  }
  uv_run(&e->loop, UV_RUN_NOWAIT);
  assert_int_equal(e->api.waiters, 0);
  registry_cancel_running(e->reg);
  pool_free(e->pool);
  api_logs_free(e->api.logs); /* every follower went with its connection */
  if (e->store)
    store_close(e->store); /* its last callbacks reach the registry */
  registry_free(e->reg);
  POLL(&e->loop, true, !uv_loop_alive(&e->loop));
  tasks_catalog_fini(&e->cat);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static inline const char *find_crlf2(const char *s, size_t n) {
  for (size_t i = 0; i + 4 <= n; i++)
    if (memcmp(s + i, "\r\n\r\n", 4) == 0)
      return s + i;
  return NULL;
}

/* A header's value in a head (first match, case-insensitive name), copied
 * into buf; NULL when absent. */
static inline const char *head_header(const char *head, const char *name, char *buf, size_t size) {
  size_t nl = strlen(name);
  for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
    line += 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ')
        v++;
      size_t vl = strcspn(v, "\r");
      if (vl >= size)
        vl = size - 1;
      memcpy(buf, v, vl);
      buf[vl] = '\0';
      return buf;
    }
  }
  return NULL;
}

/* Reads the next whole reply (skipping 1xx) into c->r if it has arrived.
 * `head_only`: a reply to HEAD (no body bytes follow the head). */
static inline bool client_try_read(client_t *c, bool head_only) {
  for (;;) {
    const char *out = http_fake_out(c->f) + c->off;
    size_t avail = http_fake_out_len(c->f) - c->off;
    const char *end = find_crlf2(out, avail);
    if (!end)
      return false;
    size_t hlen = (size_t)(end - out) + 4;
    int status = atoi(out + 9);
    if (status >= 100 && status < 200) {
      c->off += hlen;
      continue;
    }
    char *head = strndup(out, hlen - 2);
    char cl[32];
    size_t blen = 0;
    if (!head_only) {
      assert_non_null(head_header(head, "Content-Length", cl, sizeof cl));
      blen = (size_t)strtoull(cl, NULL, 10);
    }
    if (avail < hlen + blen) {
      free(head);
      return false;
    }
    reply_free(&c->r);
    c->r.status = status;
    c->r.head = head;
    c->r.body = malloc(blen + 1);
    assert_non_null(c->r.body);
    memcpy(c->r.body, out + hlen, blen);
    c->r.body[blen] = '\0';
    c->r.body_len = blen;
    c->r.json = blen ? json_loadb(c->r.body, blen, 0, NULL) : NULL;
    c->off += hlen + blen;
    return true;
  }
}

static inline reply_t *client_wait(env_t *e, client_t *c, bool head_only) {
  POLL(&e->loop, true, client_try_read(c, head_only));
  return &c->r;
}

/* Sends raw bytes and waits for the whole reply. */
static inline reply_t *client_raw(env_t *e, client_t *c, const char *raw, size_t n) {
  http_fake_send(c->f, raw, n);
  return client_wait(e, c, n >= 5 && memcmp(raw, "HEAD ", 5) == 0);
}

/* "METHOD target" with no body, on client i. */
static inline reply_t *creq(env_t *e, int i, const char *method, const char *target) {
  char raw[20000];
  int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", method, target);
  assert_true(n > 0 && (size_t)n < sizeof raw);
  return client_raw(e, &e->c[i], raw, (size_t)n);
}

static inline reply_t *req(env_t *e, const char *method, const char *target) { return creq(e, 0, method, target); }

/* POST `target` with a body and a Content-Type (NULL: none). */
static inline reply_t *post(env_t *e, const char *target, const char *ctype, const char *body) {
  char raw[8192];
  int n = snprintf(raw, sizeof raw, "POST %s HTTP/1.1\r\nHost: x\r\n%s%s%sContent-Length: %zu\r\n\r\n%s", target,
                   ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", strlen(body), body);
  assert_true(n > 0 && (size_t)n < sizeof raw);
  return client_raw(e, &e->c[0], raw, (size_t)n);
}

static inline reply_t *post_job(env_t *e, const char *body) {
  return post(e, "/jobs", "application/json", body);
}

static inline const char *jstr(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s;
}

static inline const char *rheader(const reply_t *r, const char *name) {
  static char buf[512];
  return head_header(r->head, name, buf, sizeof buf);
}

/* Asserts an error reply: status, code, and `param` (NULL: absent). The body
 * is always one line of valid JSON plus '\n'. */
static inline void check_error(const reply_t *r, int status, const char *code, const char *param) {
  if (r->status != status)
    fail_msg("status %d, want %d: %s", r->status, status, r->body);
  assert_non_null(r->json);
  assert_true(r->body_len > 0 && r->body[r->body_len - 1] == '\n');
  json_t *err = json_object_get(r->json, "error");
  assert_true(json_is_object(err));
  if (strcmp(jstr(err, "code"), code) != 0)
    fail_msg("code %s, want %s: %s", jstr(err, "code"), code, r->body);
  assert_true(json_is_string(json_object_get(err, "message")));
  if (param) {
    const char *p = jstr(err, "param");
    if (!p || strcmp(p, param) != 0)
      fail_msg("param %s, want %s: %s", p ? p : "(none)", param, r->body);
  } else if (json_object_get(err, "param")) {
    fail_msg("param %s, want none: %s", jstr(err, "param"), r->body);
  }
}

static inline const char *err_message(const reply_t *r) {
  return jstr(json_object_get(r->json, "error"), "message");
}

/* The job's status, brought up to date; -1 when it is gone. */
static inline int job_status_of(env_t *e, const char *id) {
  job_t *j = registry_get(e->reg, id);
  return j ? (int)j->status : -1;
}

/* True once the registry has fully finished the job: its done callback ran
 * (watches fired, item freed), not only a refresh that saw it final. */
static inline bool job_done(env_t *e, const char *id) {
  job_t *j = registry_get(e->reg, id);
  return j && job_is_final(j) && !j->_item;
}

static inline void wait_job_done(env_t *e, const char *id) { POLL(&e->loop, true, job_done(e, id)); }

/* Submits a spin job of `ms`; its id goes into `id`, which is returned. */
static inline const char *submit_spin(env_t *e, int ms, char id[JOB_ID_LEN + 1]) {
  char body[96];
  snprintf(body, sizeof body, "{\"task\":\"spin\",\"params\":{\"ms\":%d}}", ms);
  reply_t *r = post_job(e, body);
  assert_int_equal(r->status, 202);
  snprintf(id, JOB_ID_LEN + 1, "%s", jstr(r->json, "id"));
  return id;
}

/* Waits until the job is processing on a worker. */
static inline void wait_processing(env_t *e, const char *id) {
  POLL(&e->loop, true, job_status_of(e, id) == JOB_PROCESSING);
}

/* Runs `n` loop turns (to show that something does NOT happen). */
static inline void turns(env_t *e, int n) {
  for (int i = 0; i < n; i++)
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

#endif
