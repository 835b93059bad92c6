/* http/http_test_env: the scaffolding the http layer's unit tests share
 * (test-only; include after cmocka.h): a private loop with a server that
 * never listens (or one that does, for the listener's tests), the fake
 * client connection (http/http_fake.h) on it, and helpers to run the loop
 * and read what the server wrote.
 *
 * A test's own env struct starts with HTTP_TEST_ENV: its fields loop, srv
 * and f are then the env's own (e.loop, e.srv, e.f), and e.base is the same
 * storage typed for the helpers below (a union of two structs with the same
 * members: C11 anonymous members, C17 6.5.2.3 common initial sequence).
 *
 * Waits are on conditions (util/test_poll.h) or on a counted number of loop
 * turns, never on time. Threads: the test's (the loop's) only. */
#ifndef OFFLOAD_HTTP_TEST_ENV_H
#define OFFLOAD_HTTP_TEST_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <uv.h>

#include "http/http.h"
#include "http/http_fake.h"
#include "util/test_poll.h"

typedef struct http_test_env {
  uv_loop_t loop;
  http_server_t *srv;
  http_fake_t *f; /* NULL without a fake connection */
} http_test_env_t;

#define HTTP_TEST_ENV                                                                                                  \
  union {                                                                                                              \
    http_test_env_t base;                                                                                              \
    struct {                                                                                                           \
      uv_loop_t loop;                                                                                                  \
      http_server_t *srv;                                                                                              \
      http_fake_t *f;                                                                                                  \
    };                                                                                                                 \
  }

/* The limits most tests run with; each test changes what it tests. */
static inline http_config_t http_test_config(void) {
  return (http_config_t){.max_header_bytes = 8192,
                         .max_body = 64 * 1024,
                         .request_timeout_ms = 600000,
                         .keepalive_timeout_ms = 600000,
                         .max_connections = 16};
}

/* A fresh loop and a server on it (not listening, no connection). */
static inline void http_test_server_open(http_test_env_t *t, const http_config_t *cfg, http_head_cb on_head,
                                         http_request_cb on_request, void *data) {
  assert_int_equal(uv_loop_init(&t->loop), 0);
  t->srv = http_server_new(&t->loop, cfg, on_head, on_request, data);
  assert_non_null(t->srv);
  t->f = NULL;
}

/* The same, with a fake connection on the server (the client not reading). */
static inline void http_test_env_open(http_test_env_t *t, const http_config_t *cfg, http_head_cb on_head,
                                      http_request_cb on_request, void *data) {
  http_test_server_open(t, cfg, on_head, on_request, data);
  t->f = http_fake_new(t->srv);
  assert_non_null(t->f);
}

/* Frees the server, then the fake once its connection closed, and closes the
 * loop once nothing is left on it (the test closes its own handles first). */
static inline void http_test_env_close(http_test_env_t *t) {
  http_server_free(t->srv);
  if (t->f) {
    POLL(&t->loop, true, http_fake_closed(t->f));
    http_fake_free(t->f);
  }
  POLL(&t->loop, true, !uv_loop_alive(&t->loop));
  assert_int_equal(uv_loop_close(&t->loop), 0);
}

/* Runs the loop n times without waiting. */
static inline void http_test_turns(uv_loop_t *loop, int n) {
  for (int i = 0; i < n; i++)
    uv_run(loop, UV_RUN_NOWAIT);
}

/* How many times needle stands in hay (overlaps counted). */
static inline int http_test_count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* The body of the only reply in the output, and its length. */
static inline const char *http_test_body_of(const http_fake_t *f, size_t *len) {
  const char *out = http_fake_out(f);
  const char *b = strstr(out, "\r\n\r\n");
  assert_non_null(b);
  b += 4;
  *len = http_fake_out_len(f) - (size_t)(b - out);
  return b;
}

/* The connection closes after its reply: half-close (every reply is out),
 * then the client's EOF ends the lingering read. */
static inline void http_test_expect_close(http_test_env_t *t) {
  POLL(&t->loop, true, http_fake_shut(t->f));
  http_fake_eof(t->f);
  POLL(&t->loop, true, http_fake_closed(t->f));
}

#endif
