/* body_test: request bodies (http/conn.c, parse.c) on the fake connection
 * (http/http_fake.h): the body plan chosen in the head callback, streamed
 * bodies with pause/resume, limits (declared and chunked), and when
 * "100 Continue" is sent — or not.
 *
 * Each test owns a private loop; waits are on conditions (util/test_poll.h)
 * or on a counted number of loop turns, never on time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/test_poll.h"

#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

typedef enum { ON_REQ_HOLD, ON_REQ_READ, ON_REQ_REPLY } on_req_t;

typedef struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  /* What the head callback plans, what the request callback does. */
  http_body_mode_t mode;
  size_t limit;
  on_req_t on_req;
  bool pause_each; /* the data callback asks to pause after every piece */
  /* What happened. */
  int nhead, nreq, ndata, nend;
  int ends[4]; /* end callbacks, by request */
  http_req_error_t end_st[4];
  size_t out_at_head, out_at_req;
  http_req_error_t req_error, end_status;
  size_t req_body_len;
  char body[4096];
  size_t body_len;
  http_req_t *req;
  int naborts;
  uv_timer_t timer;
  bool resumed;
} env_t;

static void on_head(http_req_t *req, void *data) {
  env_t *e = data;
  e->nhead++;
  e->out_at_head = http_fake_out_len(e->f);
  http_req_plan(req, e->mode, e->limit);
}

static void reply(env_t *e, http_req_t *req, http_req_error_t err) {
  int status = err == HTTP_ERR_BODY_TOO_BIG ? 413 : err ? 400 : 200;
  http_reply(req, status, "text/plain", NULL, "done", 4);
}

static int on_data(http_req_t *req, const char *data, size_t len, void *ud) {
  env_t *e = ud;
  e->ndata++;
  assert_true(e->body_len + len <= sizeof e->body);
  memcpy(e->body + e->body_len, data, len);
  e->body_len += len;
  return e->pause_each ? HTTP_BODY_PAUSE : 0;
}

static void on_end(http_req_t *req, http_req_error_t status, void *ud) {
  env_t *e = ud;
  e->nend++;
  e->ends[(e->nreq - 1) & 3]++;
  e->end_st[(e->nreq - 1) & 3] = status;
  e->end_status = status;
  reply(e, req, status);
}

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  e->nreq++;
  e->req = req;
  e->out_at_req = http_fake_out_len(e->f);
  e->req_error = req->error;
  e->req_body_len = req->body_len;
  if (req->error || e->on_req == ON_REQ_REPLY)
    reply(e, req, req->error);
  else if (e->on_req == ON_REQ_READ)
    http_body_read(req, on_data, on_end, e);
}

static void env_init_cb(env_t *e, http_body_mode_t mode, size_t limit, on_req_t on_req, uint64_t request_timeout_ms,
                        http_request_cb on_req_cb) {
  memset(e, 0, sizeof *e);
  e->mode = mode;
  e->limit = limit;
  e->on_req = on_req;
  http_config_t cfg = http_test_config();
  cfg.max_body = 1000;
  cfg.request_timeout_ms = request_timeout_ms;
  http_test_env_open(&e->base, &cfg, on_head, on_req_cb, e);
  http_fake_set_reading(e->f, true);
}

static void env_init(env_t *e, http_body_mode_t mode, size_t limit, on_req_t on_req) {
  env_init_cb(e, mode, limit, on_req, 600000, on_request);
}

static void env_fini(env_t *e) { http_test_env_close(&e->base); }

/* The connection closes after its reply (which says so). */
static void expect_close(env_t *e) {
  assert_non_null(strstr(http_fake_out(e->f), "Connection: close\r\n"));
  http_test_expect_close(&e->base);
}

static void test_stream_content_length(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_STREAM, 0, ON_REQ_HOLD);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello");
  assert_int_equal(e.nhead, 1);
  assert_int_equal(e.nreq, 1); /* right after the head */
  assert_int_equal(e.ndata, 0);
  http_test_turns(&e.loop, 10);
  assert_int_equal(e.ndata, 0); /* nothing until the handler asks */
  http_body_read(e.req, on_data, on_end, &e);
  POLL(&e.loop, true, e.body_len == 5);
  assert_int_equal(e.nend, 0);
  http_fake_send_str(e.f, " wor");
  http_fake_send_str(e.f, "ld");
  POLL(&e.loop, true, e.nend == 1);
  assert_int_equal(e.end_status, HTTP_ERR_NONE);
  assert_int_equal(e.body_len, 11);
  assert_memory_equal(e.body, "hello world", 11);
  assert_null(strstr(http_fake_out(e.f), "100 Continue"));

  /* Keep-alive: the next request is served. */
  e.on_req = ON_REQ_READ;
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
  POLL(&e.loop, true, e.nend == 2);
  assert_int_equal(e.end_status, HTTP_ERR_NONE);
  assert_memory_equal(e.body + 11, "xyz", 3);
  http_test_turns(&e.loop, 10);
  assert_int_equal(e.nend, 2); /* once per request */
  assert_false(http_fake_shut(e.f));
  env_fini(&e);
}

static void test_stream_chunked_pause_resume(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_STREAM, 0, ON_REQ_READ);
  e.pause_each = true;
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n4\r\ndefg\r\n2\r\nhi\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  POLL(&e.loop, true, e.ndata == 1);
  http_test_turns(&e.loop, 10);
  assert_int_equal(e.ndata, 1); /* paused */
  assert_memory_equal(e.body, "abc", 3);
  http_body_resume(e.req);
  POLL(&e.loop, true, e.ndata == 2);
  http_test_turns(&e.loop, 10);
  assert_int_equal(e.ndata, 2);
  assert_int_equal(e.body_len, 7);
  e.pause_each = false;
  http_body_resume(e.req);
  /* The rest, then the pipelined request behind it (its empty body ends at once). */
  POLL(&e.loop, true, e.nreq == 2 && e.nend == 2);
  assert_int_equal(e.ends[0], 1);
  assert_int_equal(e.ends[1], 1);
  assert_int_equal(e.end_st[0], HTTP_ERR_NONE);
  assert_int_equal(e.end_st[1], HTTP_ERR_NONE);
  assert_int_equal(e.body_len, 9);
  assert_memory_equal(e.body, "abcdefghi", 9);
  http_test_turns(&e.loop, 5);
  assert_int_equal(e.nend, 2);
  env_fini(&e);
}

static void test_stream_chunked_too_big(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_STREAM, 10, ON_REQ_READ);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n");
  POLL(&e.loop, true, e.body_len == 8);
  http_fake_send_str(e.f, "8\r\nabcdefgh\r\n0\r\n\r\n");
  POLL(&e.loop, true, e.nend == 1);
  assert_int_equal(e.end_status, HTTP_ERR_BODY_TOO_BIG);
  assert_true(e.body_len <= 10);
  assert_non_null(strstr(http_fake_out(e.f), "HTTP/1.1 413 "));
  expect_close(&e);
  assert_int_equal(e.nend, 1);
  env_fini(&e);

  /* Buffered: the request arrives with the error instead. */
  env_init(&e, HTTP_BODY_BUFFER, 10, ON_REQ_REPLY);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\nabcdefgh\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.req_error, HTTP_ERR_BODY_TOO_BIG);
  expect_close(&e);
  env_fini(&e);
}

/* A declared length over the limit is refused before any 100 Continue. */
static void test_declared_length_over_limit(void **state) {
  (void)state;
  http_body_mode_t modes[] = {HTTP_BODY_BUFFER, HTTP_BODY_STREAM};
  for (size_t i = 0; i < 2; i++) {
    env_t e;
    env_init(&e, modes[i], 10, ON_REQ_READ);
    http_fake_send_str(e.f, "PUT /up HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(e.nreq, 1);
    assert_int_equal(e.req_error, HTTP_ERR_BODY_TOO_BIG);
    assert_int_equal(e.ndata, 0);
    assert_null(strstr(http_fake_out(e.f), "100 Continue"));
    assert_non_null(strstr(http_fake_out(e.f), "HTTP/1.1 413 "));
    expect_close(&e);
    env_fini(&e);
  }
  /* The server's max_body applies when the plan says 0. */
  env_t e;
  env_init(&e, HTTP_BODY_BUFFER, 0, ON_REQ_REPLY);
  http_fake_send_str(e.f, "PUT /up HTTP/1.1\r\nContent-Length: 1001\r\n\r\n");
  assert_int_equal(e.req_error, HTTP_ERR_BODY_TOO_BIG);
  env_fini(&e);
}

static void test_expect_continue_stream(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_STREAM, 0, ON_REQ_HOLD);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_true(e.req->expect_continue);
  http_test_turns(&e.loop, 10);
  assert_int_equal(http_fake_out_len(e.f), 0); /* not until the handler reads */
  http_body_read(e.req, on_data, on_end, &e);
  assert_string_equal(http_fake_out(e.f), CONTINUE);
  http_fake_send_str(e.f, "abcde");
  POLL(&e.loop, true, e.nend == 1);
  assert_int_equal(e.end_status, HTTP_ERR_NONE);
  assert_memory_equal(e.body, "abcde", 5);
  const char *out = http_fake_out(e.f);
  assert_int_equal(strncmp(out, CONTINUE "HTTP/1.1 200 OK\r\n", strlen(CONTINUE "HTTP/1.1 200 OK\r\n")), 0);
  assert_null(strstr(out + strlen(CONTINUE), "100 Continue")); /* once */
  env_fini(&e);
}

static void test_expect_continue_buffer(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_BUFFER, 0, ON_REQ_REPLY);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  assert_int_equal(e.nhead, 1);
  assert_int_equal(e.out_at_head, 0);                 /* not before the plan is known */
  assert_string_equal(http_fake_out(e.f), CONTINUE); /* the plan accepted it */
  assert_int_equal(e.nreq, 0);
  http_fake_send_str(e.f, "abcde");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.req_body_len, 5);
  assert_int_equal(strncmp(http_fake_out(e.f), CONTINUE "HTTP/1.1 200 OK\r\n", strlen(CONTINUE) + 17), 0);

  /* Without a body there is nothing to continue. */
  http_fake_out_clear(e.f);
  http_fake_send_str(e.f, "GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  assert_null(strstr(http_fake_out(e.f), "100 Continue"));
  env_fini(&e);
}

static void test_refuse(void **state) {
  (void)state;
  env_t e;
  /* With Expect: dispatched at once, no body, no 100 Continue, then closed. */
  env_init(&e, HTTP_BODY_REFUSE, 0, ON_REQ_REPLY);
  http_fake_send_str(e.f, "POST /nope HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.req_error, HTTP_ERR_NONE);
  assert_int_equal(e.req_body_len, 0);
  assert_int_equal(e.out_at_req, 0);
  assert_null(strstr(http_fake_out(e.f), "100 Continue"));
  expect_close(&e);
  env_fini(&e);

  /* Without Expect the body is read and dropped, and the connection stays. */
  env_init(&e, HTTP_BODY_REFUSE, 0, ON_REQ_REPLY);
  http_fake_send_str(e.f, "POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET /next HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  assert_int_equal(e.req_body_len, 0);
  assert_null(strstr(http_fake_out(e.f), "Connection: close"));
  env_fini(&e);
}

/* A streamed-body handler that answers without reading: the unread body
 * goes with the connection. */
static void test_stream_reply_without_reading(void **state) {
  (void)state;
  env_t e;
  env_init(&e, HTTP_BODY_STREAM, 0, ON_REQ_REPLY);
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nabGET /x HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.ndata, 0);
  expect_close(&e);
  assert_int_equal(e.nreq, 1);
  env_fini(&e);
}

/* ---- the handler replies while the body streams ---- */

static int on_data_reply(http_req_t *req, const char *data, size_t len, void *ud) {
  env_t *e = ud;
  on_data(req, data, len, ud);
  if (e->ndata == 1)
    http_reply(req, 403, "text/plain", NULL, "no", 2);
  return 0;
}

static void on_end_count(http_req_t *req, http_req_error_t status, void *ud) {
  env_t *e = ud;
  e->nend++;
  e->end_status = status;
}

static void on_request_reply_in_data(http_req_t *req, void *data) {
  env_t *e = data;
  e->nreq++;
  e->req = req;
  http_body_read(req, on_data_reply, on_end_count, e);
}

/* A data callback that replies (403 on the first piece): no further piece,
 * no end callback, the reply goes out and the connection closes after it
 * (the rest of the body, and what is pipelined behind it, is never read). */
static void test_reply_from_data_callback(void **state) {
  (void)state;
  for (int i = 0; i < 2; i++) {
    env_t e;
    env_init_cb(&e, HTTP_BODY_STREAM, 0, ON_REQ_HOLD, 600000, on_request_reply_in_data);
    if (i == 0) {
      http_fake_send_str(e.f, "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
      http_test_turns(&e.loop, 3);
      http_fake_send_str(e.f, "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    } else {
      http_fake_send_str(e.f, "POST /u HTTP/1.1\r\nContent-Length: 6\r\n\r\nab");
      http_test_turns(&e.loop, 3);
      http_fake_send_str(e.f, "cdef");
    }
    http_test_turns(&e.loop, 10);
    assert_int_equal(e.nreq, 1);
    assert_int_equal(e.ndata, 1);
    assert_int_equal(e.nend, 0);
    const char *out = http_fake_out(e.f);
    assert_int_equal(strncmp(out, "HTTP/1.1 403 ", 13), 0);
    assert_non_null(strstr(out, "\r\n\r\nno"));
    assert_null(strstr(out + 1, "HTTP/1.1"));
    expect_close(&e);
    assert_int_equal(e.ndata, 1);
    assert_int_equal(e.nend, 0);
    assert_int_equal(e.nreq, 1);
    env_fini(&e);
  }
}

/* ---- a body paused by the handler ---- */

#define TINY_TIMEOUT_MS 100

static void on_abort_count(http_req_t *req, void *data) {
  env_t *e = data;
  e->naborts++;
  e->req = NULL;
}

static void on_request_abortable(http_req_t *req, void *data) {
  env_t *e = data;
  e->nreq++;
  e->req = req;
  http_req_on_abort(req, on_abort_count, e);
  http_body_read(req, on_data, on_end, e);
}

static void on_resume_timer(uv_timer_t *t) {
  env_t *e = t->data;
  e->resumed = true;
  e->pause_each = false;
  if (e->req) /* not aborted meanwhile */
    http_body_resume(e->req);
}

/* The handler's pause is not the client's fault: paused for four request
 * timeouts, the body still completes once resumed. */
static void test_pause_longer_than_request_timeout(void **state) {
  (void)state;
  env_t e;
  env_init_cb(&e, HTTP_BODY_STREAM, 0, ON_REQ_HOLD, TINY_TIMEOUT_MS, on_request_abortable);
  e.pause_each = true;
  uv_timer_init(&e.loop, &e.timer);
  e.timer.data = &e;
  http_fake_send_str(e.f, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  POLL(&e.loop, true, e.ndata == 1);
  uv_timer_start(&e.timer, on_resume_timer, 4 * TINY_TIMEOUT_MS, 0);
  POLL(&e.loop, true, e.resumed);
  POLL(&e.loop, true, e.nend == 1 || http_fake_closed(e.f));
  uv_close((uv_handle_t *)&e.timer, NULL);
  assert_int_equal(e.naborts, 0); /* not dropped while paused */
  assert_int_equal(e.nend, 1);
  assert_int_equal(e.end_status, HTTP_ERR_NONE);
  assert_int_equal(e.body_len, 6);
  assert_memory_equal(e.body, "abcdef", 6);
  assert_non_null(strstr(http_fake_out(e.f), "HTTP/1.1 200 OK\r\n"));
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_content_length),
      cmocka_unit_test(test_stream_chunked_pause_resume),
      cmocka_unit_test(test_stream_chunked_too_big),
      cmocka_unit_test(test_declared_length_over_limit),
      cmocka_unit_test(test_expect_continue_stream),
      cmocka_unit_test(test_expect_continue_buffer),
      cmocka_unit_test(test_refuse),
      cmocka_unit_test(test_stream_reply_without_reading),
      cmocka_unit_test(test_reply_from_data_callback),
      cmocka_unit_test(test_pause_longer_than_request_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
