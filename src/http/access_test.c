/* access_test: the access log (http/access.c). The line's two formats,
 * exactly (text and JSON, client bytes escaped, empty fields); and on the
 * fake connection (http/http_fake.h) with a real queue (util/logq.h) over a
 * pipe: one line per request, written when its reply ends, with the path
 * and never the query string, the status, the bytes the client got
 * (100 Continue, a HEAD reply, a streamed reply), a request whose client
 * left before its reply (499), a request the parser refused (400), and no
 * line at all without a log.
 *
 * Each test owns a private loop; waits are on conditions (util/test_poll.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/conn.h"
#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/buf.h"
#include "util/logq.h"
#include "util/test_poll.h"

#define T0_MS (INT64_C(1795968000) * 1000 + 123) /* 2026-11-29T16:00:00.123Z */

static void check_format(bool json, const http_access_t *a, const char *want) {
  buf_t b = BUF_INIT;
  assert_int_equal(http_access_format(&b, json, a), 0);
  assert_string_equal(b.data, want);
  buf_free(&b);
}

static void test_format(void **state) {
  (void)state;
  http_access_t a = {.wall_ms = T0_MS,
                     .remote = "127.0.0.1",
                     .method = "GET",
                     .path = "/jobs",
                     .status = 200,
                     .bytes = 123,
                     .duration_us = 456};
  check_format(false, &a, "2026-11-29T16:00:00.123Z 127.0.0.1 GET /jobs 200 123 456us\n");
  check_format(true, &a,
               "{\"time\":\"2026-11-29T16:00:00.123Z\",\"remote\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/"
               "jobs\",\"status\":200,\"bytes\":123,\"duration_us\":456}\n");
  /* Client bytes: nothing can break the line or forge a field. */
  a.remote = "::1";
  a.path = "/a b\"\\\x01\n\xe9/caf\xc3\xa9";
  check_format(false, &a,
               "2026-11-29T16:00:00.123Z ::1 GET /a\\x20b\\x22\\x5C\\x01\\x0A\\xE9/caf\\xC3\\xA9 200 123 456us\n");
  check_format(true, &a,
               "{\"time\":\"2026-11-29T16:00:00.123Z\",\"remote\":\"::1\",\"method\":\"GET\",\"path\":\"/a "
               "b\\\"\\\\\\u0001\\n\xef\xbf\xbd/caf\xc3\xa9\",\"status\":200,\"bytes\":123,\"duration_us\":456}\n");
  /* A request the parser refused has no method or path. */
  http_access_t e = {.wall_ms = T0_MS + 1000, .remote = "-", .method = "", .path = "", .status = 400, .bytes = 9};
  check_format(false, &e, "2026-11-29T16:00:01.123Z - - - 400 9 0us\n");
  check_format(true, &e,
               "{\"time\":\"2026-11-29T16:00:01.123Z\",\"remote\":\"-\",\"method\":\"\",\"path\":\"\",\"status\":400,"
               "\"bytes\":9,\"duration_us\":0}\n");
}

/* ---- on the fake connection ---- */

typedef struct env env_t;
typedef void (*handler_fn)(env_t *e, http_req_t *req);

struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  int pipe[2];
  logq_t *q;
  buf_t lines; /* what the queue wrote */
  handler_fn handler;
  http_req_t *held;
  int naborts;
};

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  if (req->error) {
    http_reply(req, 400, "text/plain", NULL, "bad\n", 4);
    return;
  }
  e->handler(e, req);
}

static void on_head(http_req_t *req, void *data) {
  if (strcmp(req->path, "/upload") == 0)
    http_req_plan(req, HTTP_BODY_BUFFER, 0);
}

static void reply_hello(env_t *e, http_req_t *req) {
  (void)e;
  http_reply(req, 200, "text/plain", NULL, "hello", 5);
}

static void on_abort(http_req_t *req, void *data) { ((env_t *)data)->naborts++; }

static void hold(env_t *e, http_req_t *req) {
  e->held = req;
  http_req_on_abort(req, on_abort, e);
}

static void stream_three(env_t *e, http_req_t *req) {
  (void)e;
  assert_int_equal(http_stream_start(req, 200, "text/plain", NULL, HTTP_LEN_UNKNOWN), 0);
  assert_int_equal(http_stream_write(req, "one,", 4), 0);
  assert_int_equal(http_stream_write(req, "two,", 4), 0);
  assert_int_equal(http_stream_write(req, "three", 5), 0);
  http_stream_end(req);
}

static void env_init(env_t *e, handler_fn handler, bool json, bool with_log) {
  memset(e, 0, sizeof *e);
  e->handler = handler;
  assert_int_equal(pipe(e->pipe), 0);
  assert_int_equal(fcntl(e->pipe[0], F_SETFL, O_NONBLOCK), 0);
  e->q = logq_new(e->pipe[1], LOGQ_MAX_PENDING_DEFAULT);
  assert_non_null(e->q);
  http_config_t cfg = http_test_config();
  cfg.access_log = with_log ? e->q : NULL;
  cfg.access_log_json = json;
  http_test_env_open(&e->base, &cfg, on_head, on_request, e);
  http_fake_set_reading(e->f, true);
}

static void env_fini(env_t *e) {
  http_test_env_close(&e->base);
  logq_free(e->q);
  close(e->pipe[0]);
  close(e->pipe[1]);
  buf_free(&e->lines);
}

static size_t count_lines(const buf_t *b) {
  size_t n = 0;
  for (size_t i = 0; i < b->len; i++)
    n += b->data[i] == '\n';
  return n;
}

static bool read_lines(env_t *e, size_t n) {
  char tmp[4096];
  ssize_t k;
  while ((k = read(e->pipe[0], tmp, sizeof tmp)) > 0)
    assert_int_equal(buf_append(&e->lines, tmp, (size_t)k), 0);
  return count_lines(&e->lines) >= n;
}

/* The n-th line (0-based), copied into out. */
static const char *line_at(env_t *e, size_t n, char *out, size_t size) {
  const char *p = e->lines.data;
  for (size_t i = 0; i < n; i++)
    p = strchr(p, '\n') + 1;
  size_t len = strcspn(p, "\n");
  assert_true(len < size);
  memcpy(out, p, len);
  out[len] = '\0';
  return out;
}

/* Fields of a text line after its time: remote method path status bytes duration. */
typedef struct fields {
  char remote[64], method[16], path[256];
  int status;
  unsigned long long bytes, us;
} fields_t;

static fields_t parse_text(const char *line) {
  fields_t f;
  char when[40];
  int n =
      sscanf(line, "%39s %63s %15s %255s %d %llu %lluus", when, f.remote, f.method, f.path, &f.status, &f.bytes, &f.us);
  if (n != 7)
    fail_msg("not an access line: %s", line);
  assert_int_equal(strlen(when), 24);
  assert_int_equal(when[23], 'Z');
  return f;
}

static void test_a_line_per_request(void **state) {
  (void)state;
  env_t e;
  env_init(&e, reply_hello, false, true);
  size_t before = http_fake_out_len(e.f);
  http_fake_send_str(e.f, "GET /jobs/abc?wait=1&token=sekrit HTTP/1.1\r\nHost: x\r\n\r\n");
  POLL(&e.loop, true, read_lines(&e, 1));
  size_t first = http_fake_out_len(e.f) - before;
  http_fake_send_str(e.f, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                          "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  POLL(&e.loop, true, read_lines(&e, 2));
  http_fake_send_str(e.f, "abc");
  POLL(&e.loop, true, read_lines(&e, 3));
  size_t rest = http_fake_out_len(e.f) - before - first;
  char buf[512];
  fields_t a = parse_text(line_at(&e, 0, buf, sizeof buf));
  assert_string_equal(a.remote, "-"); /* the fake has no address */
  assert_string_equal(a.method, "GET");
  assert_string_equal(a.path, "/jobs/abc");
  assert_null(strstr(e.lines.data, "sekrit"));
  assert_null(strstr(e.lines.data, "wait="));
  assert_int_equal(a.status, 200);
  assert_int_equal(a.bytes, first);
  fields_t h = parse_text(line_at(&e, 1, buf, sizeof buf));
  assert_string_equal(h.method, "HEAD");
  assert_string_equal(h.path, "/health");
  fields_t u = parse_text(line_at(&e, 2, buf, sizeof buf));
  assert_string_equal(u.method, "POST");
  assert_string_equal(u.path, "/upload");
  /* Every byte written is counted once, 100 Continue included. */
  assert_int_equal(h.bytes + u.bytes, rest);
  assert_non_null(strstr(http_fake_out(e.f), "100 Continue"));
  assert_true(u.bytes > h.bytes);
  env_fini(&e);
}

static void test_streamed_and_json(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_three, true, true);
  http_fake_send_str(e.f, "GET /stream?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  POLL(&e.loop, true, read_lines(&e, 1));
  char buf[512], want[256];
  snprintf(want, sizeof want, ",\"remote\":\"-\",\"method\":\"GET\",\"path\":\"/stream\",\"status\":200,\"bytes\":%zu,",
           http_fake_out_len(e.f));
  line_at(&e, 0, buf, sizeof buf);
  assert_non_null(strstr(buf, want));
  assert_true(strncmp(buf, "{\"time\":\"", 9) == 0);
  assert_non_null(strstr(buf, ",\"duration_us\":"));
  assert_int_equal(buf[strlen(buf) - 1], '}');
  env_fini(&e);
}

/* A held request whose client leaves: logged at the close, status 499. */
static void test_client_left(void **state) {
  (void)state;
  env_t e;
  env_init(&e, hold, false, true);
  http_fake_send_str(e.f, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  POLL(&e.loop, true, e.held != NULL);
  http_test_turns(&e.loop, 3);
  assert_false(read_lines(&e, 1)); /* no line before the request ends */
  http_fake_eof(e.f);
  POLL(&e.loop, true, e.naborts == 1);
  POLL(&e.loop, true, read_lines(&e, 1));
  char buf[256];
  fields_t f = parse_text(line_at(&e, 0, buf, sizeof buf));
  assert_string_equal(f.path, "/wait");
  assert_int_equal(f.status, 499);
  assert_int_equal(f.bytes, 0);
  env_fini(&e);
}

/* The parser refused it: the error reply is logged, with no method or path. */
static void test_parse_error(void **state) {
  (void)state;
  env_t e;
  env_init(&e, reply_hello, false, true);
  http_fake_send_str(e.f, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
  POLL(&e.loop, true, read_lines(&e, 2));
  char buf[256];
  fields_t ok = parse_text(line_at(&e, 0, buf, sizeof buf));
  assert_string_equal(ok.path, "/ok");
  fields_t bad = parse_text(line_at(&e, 1, buf, sizeof buf));
  assert_int_equal(bad.status, 400);
  assert_string_equal(bad.method, "-");
  assert_string_equal(bad.path, "-");
  http_test_expect_close(&e.base);
  env_fini(&e);
}

static void test_no_log(void **state) {
  (void)state;
  env_t e;
  env_init(&e, reply_hello, false, false);
  http_fake_send_str(e.f, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  POLL(&e.loop, true, strstr(http_fake_out(e.f), "hello") != NULL);
  http_test_turns(&e.loop, 5);
  assert_false(read_lines(&e, 1));
  logq_stats_t st;
  logq_stats(e.q, &st);
  assert_int_equal(st.lines + st.dropped, 0);
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_a_line_per_request),
      cmocka_unit_test(test_streamed_and_json),
      cmocka_unit_test(test_client_left),
      cmocka_unit_test(test_parse_error),
      cmocka_unit_test(test_no_log),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
