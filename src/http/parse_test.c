/* parse_test: request parsing (http/parse.c, conn.c) on the fake
 * connection (http/http_fake.h): the request line and target, headers,
 * errors and limits, pipelining order, chunked bodies, HTTP/1.0.
 *
 * Each test owns a private loop and a server that never listens; the client
 * is played by the fake. Waits are on conditions (util/test_poll.h) or on a
 * counted number of loop turns, never on time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/test_poll.h"

#define MAXREQ 8

typedef struct rec {
  http_method_t method;
  char method_name[16];
  char path[128];
  char query[128]; /* "(none)" when NULL */
  char host[64], thing[64], ctype[64], missing[8];
  http_req_error_t error;
  char detail[64];
  char body[256];
  size_t body_len;
  int64_t content_length;
  bool chunked, http10;
} rec_t;

typedef struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  int nreq;
  rec_t rec[MAXREQ];
  bool hold;         /* keep the request instead of replying */
  http_req_t *held;
} env_t;

static void copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src ? src : "(none)"); }

static void reply_for(http_req_t *req, int n) {
  char body[16];
  int len = snprintf(body, sizeof body, "r%d", n);
  http_reply(req, req->error ? 400 : 200, "text/plain", NULL, body, (size_t)len);
}

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  assert_true(e->nreq < MAXREQ);
  rec_t *r = &e->rec[e->nreq++];
  r->method = req->method;
  copy(r->method_name, sizeof r->method_name, req->method_name);
  copy(r->path, sizeof r->path, req->path);
  copy(r->query, sizeof r->query, req->query);
  copy(r->host, sizeof r->host, http_req_header(req, "HOST"));
  copy(r->thing, sizeof r->thing, http_req_header(req, "x-thing"));
  copy(r->ctype, sizeof r->ctype, req->content_type);
  copy(r->missing, sizeof r->missing, http_req_header(req, "x-missing"));
  r->error = req->error;
  copy(r->detail, sizeof r->detail, req->error_detail);
  assert_true(req->body_len < sizeof r->body);
  memcpy(r->body, req->body, req->body_len);
  r->body_len = req->body_len;
  r->content_length = req->content_length;
  r->chunked = req->chunked;
  r->http10 = req->http10;
  if (e->hold)
    e->held = req;
  else
    reply_for(req, e->nreq);
}

static void env_init(env_t *e, size_t max_header_bytes) {
  memset(e, 0, sizeof *e);
  http_config_t cfg = http_test_config();
  cfg.max_header_bytes = max_header_bytes;
  http_test_env_open(&e->base, &cfg, NULL, on_request, e);
  http_fake_set_reading(e->f, true);
}

static void env_fini(env_t *e) { http_test_env_close(&e->base); }

static void test_request_line_and_headers(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  http_fake_send_str(e.f, "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Thing: One\r\nx-thing: two\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  rec_t *r = &e.rec[0];
  assert_int_equal(r->method, HTTP_M_GET);
  assert_string_equal(r->method_name, "GET");
  assert_string_equal(r->path, "/a/b");
  assert_string_equal(r->query, "x=1&y=2");
  assert_string_equal(r->host, "example");
  assert_string_equal(r->thing, "One"); /* first occurrence, any case */
  assert_string_equal(r->ctype, "text/plain; charset=utf-8");
  assert_string_equal(r->missing, "(none)");
  assert_int_equal(r->error, HTTP_ERR_NONE);
  assert_int_equal(r->content_length, -1);
  assert_false(r->chunked);
  assert_false(r->http10);
  assert_int_equal(r->body_len, 0);
  assert_non_null(strstr(http_fake_out(e.f), "HTTP/1.1 200 OK\r\n"));

  /* No query; a header split over several reads; other methods. */
  http_fake_send_str(e.f, "PATCH /p HTTP/1.1\r\nX-Th");
  http_fake_send_str(e.f, "ing: spl");
  http_fake_send_str(e.f, "it\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  assert_int_equal(e.rec[1].method, HTTP_M_PATCH);
  assert_string_equal(e.rec[1].path, "/p");
  assert_string_equal(e.rec[1].query, "(none)");
  assert_string_equal(e.rec[1].thing, "split");
  assert_string_equal(e.rec[1].ctype, "(none)");

  http_fake_send_str(e.f, "PROPFIND /d? HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 3);
  assert_int_equal(e.rec[2].method, HTTP_M_OTHER);
  assert_string_equal(e.rec[2].method_name, "PROPFIND");
  assert_string_equal(e.rec[2].query, ""); /* present but empty */
  env_fini(&e);
}

static void test_absolute_form(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  http_fake_send_str(e.f, "GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
                          "GET HTTP://example.com HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  assert_string_equal(e.rec[0].path, "/p/q");
  assert_string_equal(e.rec[0].query, "z=1");
  assert_string_equal(e.rec[1].path, "/");
  assert_string_equal(e.rec[1].query, "(none)");
  env_fini(&e);
}

/* "Content Length: 5" must not be skipped as a header (the body would then
 * be read as a second request): a parse error, and nothing after it. */
static void test_header_name_with_space(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  http_fake_send_str(e.f, "POST /a HTTP/1.1\r\nContent Length: 18\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.rec[0].error, HTTP_ERR_PARSE);
  assert_string_equal(e.rec[0].detail, "HPE_INVALID_HEADER_TOKEN");
  http_test_expect_close(&e.base);
  assert_int_equal(e.nreq, 1);
  const char *out = http_fake_out(e.f);
  assert_int_equal(http_test_count(out, "HTTP/1.1 "), 1);
  assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request\r\n"));
  assert_non_null(strstr(out, "Connection: close\r\n"));
  assert_int_equal(http_server_stats(e.srv)->by_status[400], 1);
  env_fini(&e);
}

static void test_header_too_big(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 256);
  char big[400];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  http_fake_send_str(e.f, "GET /big HTTP/1.1\r\nX-Big: ");
  assert_int_equal(e.nreq, 0);
  http_fake_send_str(e.f, big);
  http_fake_send_str(e.f, "\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.rec[0].error, HTTP_ERR_HEADER_TOO_BIG);
  http_test_expect_close(&e.base);
  assert_int_equal(e.nreq, 1);
  assert_non_null(strstr(http_fake_out(e.f), "Connection: close\r\n"));
  env_fini(&e);

  /* Just under the limit is fine. */
  env_init(&e, 256);
  http_fake_send_str(e.f, "GET /ok HTTP/1.1\r\nX-Ok: 1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.rec[0].error, HTTP_ERR_NONE);
  env_fini(&e);
}

/* Pipelined requests are dispatched one at a time: the next only after the
 * previous one's reply, even when the reply is held across loop turns. */
static void test_pipelined_in_order(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  e.hold = true;
  http_fake_send_str(e.f, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  http_test_turns(&e.loop, 20);
  assert_int_equal(e.nreq, 1);
  assert_int_equal(http_fake_out_len(e.f), 0);
  for (int i = 1; i <= 3; i++) {
    assert_string_equal(e.rec[i - 1].path, i == 1 ? "/1" : i == 2 ? "/2" : "/3");
    http_req_t *req = e.held;
    e.held = NULL;
    reply_for(req, i);
    if (i < 3)
      POLL(&e.loop, true, e.nreq == i + 1);
  }
  http_test_turns(&e.loop, 5);
  assert_int_equal(e.nreq, 3);
  const char *out = http_fake_out(e.f);
  const char *r1 = strstr(out, "\r\n\r\nr1"), *r2 = strstr(out, "\r\n\r\nr2"), *r3 = strstr(out, "\r\n\r\nr3");
  assert_true(r1 && r2 && r3 && r1 < r2 && r2 < r3);
  assert_int_equal(http_test_count(out, "HTTP/1.1 200 OK"), 3);
  env_fini(&e);
}

static void test_chunked_body(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  const char *msg = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (const char *p = msg; *p; p++) /* one byte per read */
    http_fake_send(e.f, p, 1);
  assert_int_equal(e.nreq, 1);
  assert_int_equal(e.rec[0].body_len, 11);
  assert_memory_equal(e.rec[0].body, "hello world", 11);
  assert_true(e.rec[0].chunked);
  assert_int_equal(e.rec[0].content_length, -1);

  /* Content-Length, split; then a request right behind it. */
  http_fake_send_str(e.f, "PUT /l HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc");
  assert_int_equal(e.nreq, 1);
  http_fake_send_str(e.f, "defGET /after HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 3);
  assert_int_equal(e.rec[1].body_len, 6);
  assert_memory_equal(e.rec[1].body, "abcdef", 6);
  assert_int_equal(e.rec[1].content_length, 6);
  assert_string_equal(e.rec[2].path, "/after");
  assert_int_equal(e.rec[2].body_len, 0);
  env_fini(&e);
}

static void test_http10_keep_alive(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  http_fake_send_str(e.f, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_true(e.rec[0].http10);
  assert_non_null(strstr(http_fake_out(e.f), "Connection: keep-alive\r\n"));
  http_test_turns(&e.loop, 5);
  assert_false(http_fake_closed(e.f));
  http_fake_out_clear(e.f);

  /* Without keep-alive, HTTP/1.0 closes after the reply. */
  http_fake_send_str(e.f, "GET /c HTTP/1.0\r\n\r\n");
  assert_int_equal(e.nreq, 2);
  const char *out = http_fake_out(e.f);
  assert_non_null(strstr(out, "Connection: close\r\n"));
  assert_null(strstr(out, "keep-alive"));
  POLL(&e.loop, true, http_fake_shut(e.f));
  env_fini(&e);
}

/* Every header is kept, however many come before it (the head is bounded by
 * max_header_bytes alone): 40 headers, then the ones the server and the
 * handler look up. */
static void test_many_headers(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 8192);
  char head[4096] = "POST /many HTTP/1.1\r\n";
  for (int i = 1; i <= 40; i++)
    snprintf(head + strlen(head), sizeof head - strlen(head), "X-H%d: v%d\r\n", i, i);
  snprintf(head + strlen(head), sizeof head - strlen(head),
           "Host: late\r\nX-Thing: forty-second\r\nContent-Type: application/json\r\n"
           "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  http_fake_send_str(e.f, head);
  assert_int_equal(e.nreq, 0);
  assert_non_null(strstr(http_fake_out(e.f), "HTTP/1.1 100 Continue\r\n\r\n")); /* Expect was the 44th */
  http_fake_send_str(e.f, "{}");
  assert_int_equal(e.nreq, 1);
  rec_t *r = &e.rec[0];
  assert_int_equal(r->error, HTTP_ERR_NONE);
  assert_string_equal(r->host, "late");
  assert_string_equal(r->thing, "forty-second");
  assert_string_equal(r->ctype, "application/json");
  assert_int_equal(r->body_len, 2);

  /* Many more, each looked up (the last of 300 too). */
  e.hold = true;
  char *big = malloc(8192);
  assert_non_null(big);
  strcpy(big, "GET /more HTTP/1.1\r\n");
  for (int i = 1; i <= 300; i++)
    snprintf(big + strlen(big), 8192 - strlen(big), "X-%d: %d\r\n", i, i);
  strcat(big, "\r\n");
  http_fake_send_str(e.f, big);
  free(big);
  assert_int_equal(e.nreq, 2);
  assert_non_null(e.held);
  const char *want[] = {"1", "32", "33", "40", "299", "300"};
  const char *names[] = {"x-1", "X-32", "x-33", "X-40", "x-299", "X-300"};
  for (size_t i = 0; i < 6; i++) {
    const char *v = http_req_header(e.held, names[i]);
    assert_non_null(v);
    assert_string_equal(v, want[i]);
  }
  assert_null(http_req_header(e.held, "x-301"));
  http_reply(e.held, 200, "text/plain", NULL, "ok", 2);
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_line_and_headers), cmocka_unit_test(test_absolute_form),
      cmocka_unit_test(test_header_name_with_space),   cmocka_unit_test(test_header_too_big),
      cmocka_unit_test(test_pipelined_in_order),       cmocka_unit_test(test_chunked_body),
      cmocka_unit_test(test_http10_keep_alive),        cmocka_unit_test(test_many_headers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
