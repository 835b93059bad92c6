/* reply_test: the reply and stream writers (http/reply.c, stream.c) on the
 * fake connection (http/http_fake.h): whole replies and the header builder,
 * HEAD, Connection: close, streamed replies (chunked, close-delimited,
 * Content-Length), drain and slow-client backpressure, files through the
 * read fallback, pipelining behind a streamed reply, and the output
 * high-water mark.
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/conn.h"
#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/err.h"
#include "util/test_poll.h"

typedef struct env env_t;
typedef void (*handler_fn)(env_t *e, http_req_t *req);

struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  handler_fn handler;
  int nreq, naborts, ndrains, nsent, sent_status;
  char paths[64][16];
  http_req_t *req; /* the latest request */
  size_t unsent_at_drain;
  size_t reply_size;
};

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  if (e->nreq < 64)
    snprintf(e->paths[e->nreq], sizeof e->paths[0], "%s", req->path);
  e->nreq++;
  e->req = req;
  e->handler(e, req);
}

static void on_abort(http_req_t *req, void *data) { ((env_t *)data)->naborts++; }

static void env_init(env_t *e, handler_fn handler) {
  memset(e, 0, sizeof *e);
  e->handler = handler;
  http_config_t cfg = http_test_config();
  http_test_env_open(&e->base, &cfg, NULL, on_request, e);
}

static void env_fini(env_t *e) { http_test_env_close(&e->base); }

static void hold(env_t *e, http_req_t *req) { http_req_on_abort(req, on_abort, e); }

static void reply_hello(env_t *e, http_req_t *req) {
  http_headers_t h = HTTP_HEADERS_INIT;
  assert_int_equal(http_headers_add(&h, "X-Request-Id", "abc-123"), 0);
  assert_int_equal(http_headers_addf(&h, "Retry-After", "%d", 5), 0);
  http_reply(req, 201, "text/plain", &h, "hello", 5);
  http_headers_fini(&h);
}

/* ---- whole replies, headers ---- */

static void test_headers_builder(void **state) {
  (void)state;
  http_headers_t h = HTTP_HEADERS_INIT;
  assert_int_equal(http_headers_add(&h, "X-Ok", "a value\twith tab"), 0);
  assert_int_equal(http_headers_error(&h), 0);
  const char *bad_values[] = {"a\r\nX-Injected: 1", "a\rb", "a\nb", "a\x01" "b", "a\x7f"};
  for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
    assert_int_equal(http_headers_add(&h, "X-Bad", bad_values[i]), OFF_EINVAL);
  const char *bad_names[] = {"", "Bad Name", "X:", "X\r\nY", "Ü", "a(b)", "x/y"};
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
    assert_int_equal(http_headers_add(&h, bad_names[i], "v"), OFF_EINVAL);
  assert_int_equal(http_headers_add(&h, NULL, "v"), OFF_EINVAL);
  assert_int_equal(http_headers_add(&h, "X-Null", NULL), OFF_EINVAL);
  /* A NUL inside a formatted value would cut it short silently. */
  assert_int_equal(http_headers_addf(&h, "X-Nul", "a%cb", 0), OFF_EINVAL);
  assert_int_equal(http_headers_addf(&h, "X-Crlf", "%s", "a\r\nb"), OFF_EINVAL);
  assert_int_equal(http_headers_add(&h, "!#$%&'*+-.^_`|~09azAZ", ""), 0); /* every token char; empty value */
  assert_string_equal(h.lines.data, "X-Ok: a value\twith tab\r\n!#$%&'*+-.^_`|~09azAZ: \r\n"); /* refused: not added */
  assert_int_equal(http_headers_error(&h), OFF_EINVAL); /* remembered */
  /* A long formatted value (past the small buffer). */
  char big[1000];
  memset(big, 'b', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(http_headers_addf(&h, "X-Nul", "%s%cb", big, 0), OFF_EINVAL);
  size_t before = h.lines.len;
  assert_int_equal(http_headers_addf(&h, "X-Big", "<%s>", big), 0);
  assert_int_equal(h.lines.len - before, strlen("X-Big: <") + 999 + strlen(">\r\n"));
  http_headers_fini(&h);
  assert_int_equal(http_headers_error(&h), 0);
}

static void test_reply_with_headers(void **state) {
  (void)state;
  env_t e;
  env_init(&e, reply_hello);
  http_fake_send_str(e.f, "GET /x HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_string_equal(http_fake_out(e.f), "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Request-Id: abc-123\r\n"
                                          "Retry-After: 5\r\nContent-Length: 5\r\n\r\nhello");
  assert_int_equal(http_server_stats(e.srv)->by_status[201], 1);
  assert_int_equal(http_fake_pending(e.f), http_fake_out_len(e.f)); /* not written until the client reads */
  assert_int_equal(http_fake_flush(e.f), http_fake_out_len(e.f));
  assert_int_equal(http_fake_pending(e.f), 0);

  /* HEAD: no body, same length. */
  http_fake_out_clear(e.f);
  http_fake_send_str(e.f, "HEAD /x HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  const char *out = http_fake_out(e.f);
  assert_non_null(strstr(out, "Content-Length: 5\r\n\r\n"));
  assert_int_equal(strlen(out) - (size_t)(strstr(out, "\r\n\r\n") + 4 - out), 0);
  assert_null(strstr(out, "hello"));
  env_fini(&e);
}

static void test_connection_close(void **state) {
  (void)state;
  env_t e;
  env_init(&e, reply_hello);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_non_null(strstr(http_fake_out(e.f), "Connection: close\r\n"));
  POLL(&e.loop, true, http_fake_shut(e.f)); /* half-closed once the reply is out */
  assert_false(http_fake_closed(e.f));
  http_fake_eof(e.f); /* the client closes its side too */
  POLL(&e.loop, true, http_fake_closed(e.f));
  assert_int_equal(e.nreq, 1); /* nothing after the close */
  assert_int_equal(http_test_count(http_fake_out(e.f), "HTTP/1.1"), 1);
  env_fini(&e);

  /* After stop_accepting, every reply says close. */
  env_init(&e, reply_hello);
  http_fake_send_str(e.f, "GET /1 HTTP/1.1\r\n\r\n");
  assert_null(strstr(http_fake_out(e.f), "Connection: close"));
  http_server_stop_accepting(e.srv);
  http_fake_send_str(e.f, "GET /2 HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  assert_int_equal(http_test_count(http_fake_out(e.f), "Connection: close\r\n"), 1);
  env_fini(&e);
}

/* ---- streamed replies ---- */

static void stream_unknown(env_t *e, http_req_t *req) {
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, "text/plain", NULL, HTTP_LEN_UNKNOWN), 0);
  assert_int_equal(http_stream_write(req, "hello", 5), 0);
  assert_int_equal(http_stream_write(req, "", 0), 0); /* nothing: never a "0" chunk */
  assert_int_equal(http_stream_write(req, "abcdefghijklmnopqrstuvwxyz", 26), 0);
  http_stream_end(req);
}

static void test_stream_chunked(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_unknown);
  http_fake_send_str(e.f, "GET /s HTTP/1.1\r\n\r\nGET /t HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  const char *one = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
  size_t n = strlen(one);
  assert_int_equal(http_fake_out_len(e.f), 2 * n);
  assert_memory_equal(http_fake_out(e.f), one, n);
  assert_memory_equal(http_fake_out(e.f) + n, one, n);
  assert_int_equal(e.naborts, 0);
  http_test_turns(&e.loop, 3);
  assert_false(http_fake_closed(e.f)); /* keep-alive */
  env_fini(&e);
}

static void test_stream_http10_close_delimited(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_unknown);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_string_equal(http_fake_out(e.f), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                                          "helloabcdefghijklmnopqrstuvwxyz");
  http_test_expect_close(&e.base); /* the end of the body is the close */
  env_fini(&e);
}

static void stream_length(env_t *e, http_req_t *req) {
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, NULL, NULL, 10), 0);
  assert_int_equal(http_stream_write(req, "0123", 4), 0);
  assert_int_equal(http_stream_write(req, "456789", 6), 0);
  http_stream_end(req);
}

static void test_stream_content_length(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_length);
  http_fake_send_str(e.f, "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  const char *one = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  size_t n = strlen(one);
  assert_int_equal(http_fake_out_len(e.f), 2 * n + 10); /* HEAD: the writes are swallowed */
  assert_memory_equal(http_fake_out(e.f), one, n);
  assert_memory_equal(http_fake_out(e.f) + n, "0123456789", 10);
  assert_memory_equal(http_fake_out(e.f) + n + 10, one, n);
  /* HEAD owes no body: its reply is complete, the connection stays. */
  http_fake_set_reading(e.f, true);
  http_test_turns(&e.loop, 5);
  assert_false(http_fake_shut(e.f));
  http_fake_out_clear(e.f);
  http_fake_send_str(e.f, "GET /c HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 3);
  assert_int_equal(http_fake_out_len(e.f), n + 10);
  env_fini(&e);
}

/* ---- backpressure ---- */

#define PIECE (32 * 1024)

static void on_drain(http_req_t *req, void *data) {
  env_t *e = data;
  e->ndrains++;
  e->unsent_at_drain = http_stream_unsent(req);
}

static void stream_big(env_t *e, http_req_t *req) {
  static char piece[PIECE];
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, NULL, NULL, 8 * PIECE), 0);
  for (int i = 0; i < 8; i++)
    assert_int_equal(http_stream_write(req, piece, sizeof piece), 0);
  http_stream_on_drain(req, on_drain, e);
}

static void test_stream_drain(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_big);
  http_fake_send_str(e.f, "GET /d HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  size_t head = http_fake_out_len(e.f) - 8 * PIECE;
  assert_int_equal(http_stream_unsent(e.req), head + 8 * PIECE);
  http_test_turns(&e.loop, 5);
  assert_int_equal(e.ndrains, 0); /* the client does not read */
  http_fake_flush(e.f);
  assert_int_equal(e.ndrains, 1);
  assert_int_equal(e.unsent_at_drain, 2 * PIECE); /* fired as soon as it fell to the low-water mark */
  assert_true(e.unsent_at_drain <= HTTP_STREAM_LOW_WATER);
  assert_int_equal(http_stream_unsent(e.req), 0);
  http_fake_flush(e.f);
  http_test_turns(&e.loop, 3);
  assert_int_equal(e.ndrains, 1); /* once */
  http_stream_end(e.req);
  assert_int_equal(e.naborts, 0);
  env_fini(&e);
}

static void stream_forever(env_t *e, http_req_t *req) {
  static char piece[64 * 1024];
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, NULL, NULL, HTTP_LEN_UNKNOWN), 0);
  size_t queued = http_stream_unsent(req);
  int rc;
  /* The bound (http.h): a write is refused once more than MAX_UNSENT is
   * queued, so the client costs at most MAX_UNSENT plus one write (and its
   * chunk framing). A single large write on an empty queue is not a slow
   * client. */
  while ((rc = http_stream_write(req, piece, sizeof piece)) == 0) {
    queued = http_stream_unsent(req);
    assert_true(queued <= HTTP_STREAM_MAX_UNSENT + sizeof piece + 16);
  }
  assert_int_equal(rc, OFF_EFULL);
  assert_true(queued > HTTP_STREAM_MAX_UNSENT);
  e->sent_status = rc;
}

static void test_stream_slow_client_dropped(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_forever);
  http_fake_send_str(e.f, "GET /forever HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.sent_status, OFF_EFULL);
  assert_int_equal(http_server_stats(e.srv)->dropped_slow, 1);
  assert_int_equal(http_server_stats(e.srv)->connections, 0);
  assert_int_equal(e.naborts, 0); /* the writer learned it from the return value */
  POLL(&e.loop, true, http_fake_closed(e.f));
  env_fini(&e);
}

/* ---- files (the fake has no socket: the read fallback) ---- */

typedef struct file_case {
  int fd;
  int64_t offset;
  uint64_t len;
  int64_t content_length;
} file_case_t;

static file_case_t fcase;

static void on_sent(http_req_t *req, int status, void *data) {
  env_t *e = data;
  e->nsent++;
  e->sent_status = status;
  if (status == 0) {
    assert_int_equal(http_stream_write(req, "post", 4), 0);
    http_stream_end(req);
  }
}

static void stream_file(env_t *e, http_req_t *req) {
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, "application/octet-stream", NULL, fcase.content_length), 0);
  assert_int_equal(http_stream_write(req, "pre", 3), 0);
  assert_int_equal(http_stream_file(req, fcase.fd, fcase.offset, fcase.len, on_sent, e), 0);
  assert_int_equal(http_stream_write(req, "x", 1), OFF_EINVAL); /* not while the file goes */
}

static int temp_file(char *data, size_t n) {
  char path[] = "/tmp/offload-reply-test-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)(i * 7 + i / 251);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  return fd;
}

static void test_stream_file(void **state) {
  (void)state;
  enum { SIZE = 200 * 1024 + 17 };
  char *data = malloc(SIZE);
  int fd = temp_file(data, SIZE);
  env_t e;

  /* Content-Length: the whole file between two memory pieces. */
  fcase = (file_case_t){fd, 0, SIZE, 3 + SIZE + 4};
  env_init(&e, stream_file);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /f HTTP/1.1\r\n\r\n");
  POLL(&e.loop, true, e.nsent == 1);
  assert_int_equal(e.sent_status, 0);
  size_t len;
  const char *b = http_test_body_of(e.f, &len);
  assert_int_equal(len, 3 + SIZE + 4);
  assert_memory_equal(b, "pre", 3);
  assert_memory_equal(b + 3, data, SIZE);
  assert_memory_equal(b + 3 + SIZE, "post", 4);
  assert_int_equal(e.naborts, 0);
  env_fini(&e);

  /* Chunked, from an offset. */
  fcase = (file_case_t){fd, 1000, 70000, HTTP_LEN_UNKNOWN};
  env_init(&e, stream_file);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /f HTTP/1.1\r\n\r\n");
  POLL(&e.loop, true, e.nsent == 1);
  assert_int_equal(e.sent_status, 0);
  b = http_test_body_of(e.f, &len);
  const char *pre = "3\r\npre\r\n11170\r\n", *post = "\r\n4\r\npost\r\n0\r\n\r\n";
  assert_int_equal(len, strlen(pre) + 70000 + strlen(post));
  assert_memory_equal(b, pre, strlen(pre));
  assert_memory_equal(b + strlen(pre), data + 1000, 70000);
  assert_memory_equal(b + strlen(pre) + 70000, post, strlen(post));
  env_fini(&e);

  /* A file shorter than promised: the callback fails, the connection closes. */
  fcase = (file_case_t){fd, SIZE - 10, 100, HTTP_LEN_UNKNOWN};
  env_init(&e, stream_file);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /f HTTP/1.1\r\n\r\n");
  POLL(&e.loop, true, e.nsent == 1);
  assert_int_equal(e.sent_status, OFF_ESYS);
  POLL(&e.loop, true, http_fake_closed(e.f));
  assert_int_equal(e.naborts, 0);
  env_fini(&e);

  close(fd);
  free(data);
}

/* ---- ordering and output high-water ---- */

static void stream_held(env_t *e, http_req_t *req) {
  hold(e, req);
  assert_int_equal(http_stream_start(req, 200, NULL, NULL, HTTP_LEN_UNKNOWN), 0);
  assert_int_equal(http_stream_write(req, e->paths[e->nreq - 1], strlen(e->paths[e->nreq - 1])), 0);
}

static void test_pipelined_after_stream(void **state) {
  (void)state;
  env_t e;
  env_init(&e, stream_held);
  http_fake_set_reading(e.f, true);
  http_fake_send_str(e.f, "GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  http_test_turns(&e.loop, 20);
  assert_int_equal(e.nreq, 1); /* waits for the end of the streamed reply */
  http_req_t *first = e.req;
  assert_int_equal(http_stream_write(first, "+more", 5), 0);
  http_stream_end(first);
  POLL(&e.loop, true, e.nreq == 2);
  assert_string_equal(e.paths[1], "/two");
  http_stream_end(e.req);
  const char *out = http_fake_out(e.f);
  const char *a = strstr(out, "4\r\n/one\r\n5\r\n+more\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
  assert_non_null(a);
  assert_non_null(strstr(a, "4\r\n/two\r\n0\r\n\r\n"));
  env_fini(&e);
}

static void reply_big(env_t *e, http_req_t *req) {
  char *body = calloc(1, e->reply_size);
  assert_non_null(body);
  http_reply_take(req, 200, NULL, NULL, body, e->reply_size);
}

static void test_output_high_water(void **state) {
  (void)state;
  enum { NREQ = 20 };
  env_t e;
  env_init(&e, reply_big);
  e.reply_size = 100 * 1024;
  char reqs[NREQ * 32] = "";
  for (int i = 0; i < NREQ; i++)
    snprintf(reqs + strlen(reqs), 32, "GET /%d HTTP/1.1\r\n\r\n", i);
  http_fake_send_str(e.f, reqs);
  http_test_turns(&e.loop, 50);
  const http_stats_t *st = http_server_stats(e.srv);
  assert_true(st->paused_output > 0);
  assert_true(e.nreq < NREQ);
  size_t head = http_fake_out_len(e.f) / (size_t)e.nreq - e.reply_size;
  assert_true(http_fake_pending(e.f) > HTTP_OUT_HIGH_WATER);
  assert_true(http_fake_pending(e.f) <= HTTP_OUT_HIGH_WATER + e.reply_size + head);
  int stalled = e.nreq;
  http_test_turns(&e.loop, 20);
  assert_int_equal(e.nreq, stalled); /* nothing more while the client does not read */

  http_fake_flush(e.f); /* the client reads once: parsing resumes */
  POLL(&e.loop, true, e.nreq > stalled);
  http_fake_set_reading(e.f, true);
  POLL(&e.loop, true, e.nreq == NREQ && http_fake_pending(e.f) == 0);
  assert_int_equal(http_fake_out_len(e.f), NREQ * (e.reply_size + head));
  for (int i = 0; i < NREQ; i++) {
    char want[16];
    snprintf(want, sizeof want, "/%d", i);
    assert_string_equal(e.paths[i], want);
  }
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_headers_builder),
      cmocka_unit_test(test_reply_with_headers),
      cmocka_unit_test(test_connection_close),
      cmocka_unit_test(test_stream_chunked),
      cmocka_unit_test(test_stream_http10_close_delimited),
      cmocka_unit_test(test_stream_content_length),
      cmocka_unit_test(test_stream_drain),
      cmocka_unit_test(test_stream_slow_client_dropped),
      cmocka_unit_test(test_stream_file),
      cmocka_unit_test(test_pipelined_after_stream),
      cmocka_unit_test(test_output_high_water),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
