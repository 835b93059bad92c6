/* httpc_test: the HTTP client (util/httpc.h) against a canned server on
 * 127.0.0.1 in the same loop: Content-Length, chunked and read-to-EOF
 * bodies, keep-alive, streamed pieces and stopping them, error replies
 * gathered while streaming, refused connections, non-HTTP replies, a reply
 * cut short; and the URL parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/httpc.h"
#include "util/test_poll.h"

/* ---- URLs --------------------------------------------------------------- */

static void test_url(void **state) {
  (void)state;
  httpc_url_t u;
  char err[128];
  assert_int_equal(httpc_url_parse("http://127.0.0.1:3000", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "127.0.0.1");
  assert_string_equal(u.authority, "127.0.0.1:3000");
  assert_int_equal(u.port, 3000);
  assert_string_equal(u.base, "");
  assert_int_equal(httpc_url_parse("HTTP://[::1]:8080/api/v1/", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "::1");
  assert_string_equal(u.authority, "[::1]:8080");
  assert_string_equal(u.base, "/api/v1");
  assert_int_equal(httpc_url_parse("localhost", &u, err, sizeof err), 0);
  assert_int_equal(u.port, 80);
  assert_string_equal(u.authority, "localhost");
  assert_int_equal(httpc_url_parse("example.org:99/", &u, err, sizeof err), 0);
  assert_int_equal(u.port, 99);
  assert_string_equal(u.base, "");
  const char *bad[] = {"https://x",      "ftp://x",     "http://",     "http://:80",  "http://x:0",
                       "http://x:65536", "http://x:8a", "http://x:",   "http://[::1", "http://[::1]x",
                       "http://x/a?b=1", "http://x/#f", "http://u@x/", "http://[]:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    if (httpc_url_parse(bad[i], &u, err, sizeof err) != -1)
      fail_msg("accepted %s", bad[i]);
    assert_true(err[0] != '\0');
  }
  httpc_addrs_t a;
  assert_int_equal(httpc_url_parse("http://127.0.0.1:1", &u, err, sizeof err), 0);
  assert_int_equal(httpc_resolve(&u, &a), 0);
  assert_int_equal(a.n, 1);
  assert_int_equal(httpc_url_parse("http://[::1]:1", &u, err, sizeof err), 0);
  assert_int_equal(httpc_resolve(&u, &a), 0);
  assert_int_equal(a.addr[0].ss_family, AF_INET6);
}

/* ---- a canned server ---------------------------------------------------- */

typedef struct canned {
  const char *path;  /* the request line's target */
  const char *reply; /* sent when the request's head is complete */
  bool close;        /* close after the reply */
} canned_t;

static const canned_t replies[] = {
    {"/cl", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}", false},
    {"/chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-TYPE: text/plain\r\n\r\n"
     "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
     false},
    {"/eof", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n", true},
    {"/404", "HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n{\"e\":\"no\"}\n", false},
    {"/continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", false},
    {"/junk", "SMTP ready\r\n\r\n", false},
    {"/cut", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", true},
};

typedef struct srv_conn {
  uv_tcp_t tcp;
  buf_t in;
  uv_write_t w;
  const canned_t *c;
} srv_conn_t;

static uv_loop_t loop;
static uv_tcp_t listener;
static int port;
static buf_t seen; /* every request head the server read */

static void srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  static char rb[65536];
  *b = uv_buf_init(rb, sizeof rb);
}

static void srv_closed(uv_handle_t *h) {
  srv_conn_t *c = h->data;
  buf_free(&c->in);
  free(c);
}

static void srv_written(uv_write_t *w, int status) {
  srv_conn_t *c = w->data;
  if (c->c && c->c->close && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, srv_closed);
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  srv_conn_t *c = s->data;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)s))
      uv_close((uv_handle_t *)s, srv_closed);
    return;
  }
  buf_append(&c->in, b->base, (size_t)n);
  char *end;
  while (c->in.data && (end = strstr(c->in.data, "\r\n\r\n"))) {
    size_t hl = (size_t)(end + 4 - c->in.data);
    const char *cl = strcasestr(c->in.data, "Content-Length: ");
    size_t body = cl && cl < end ? (size_t)atoi(cl + 16) : 0;
    if (c->in.len < hl + body)
      return;
    buf_append(&seen, c->in.data, hl + body);
    c->c = NULL;
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
      size_t pl = strlen(replies[i].path);
      const char *target = strchr(c->in.data, ' ') + 1;
      if (strncmp(target, replies[i].path, pl) == 0 && target[pl] == ' ')
        c->c = &replies[i];
    }
    assert_non_null(c->c);
    buf_consume(&c->in, hl + body);
    uv_buf_t out = uv_buf_init((char *)c->c->reply, (unsigned)strlen(c->c->reply));
    c->w.data = c;
    uv_write(&c->w, s, &out, 1, srv_written);
  }
}

static void srv_accept(uv_stream_t *l, int status) {
  srv_conn_t *c = calloc(1, sizeof *c);
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
  uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  uv_tcp_init(&loop, &listener);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&listener, 16, srv_accept), 0);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len);
  port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

/* What is left open: the listener and the server's connections (each its
 * own data; the tests close their client connections themselves). */
static void close_all(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, h != (uv_handle_t *)&listener && h->data == h ? srv_closed : NULL);
}

static int teardown(void **state) {
  (void)state;
  uv_walk(&loop, close_all, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  buf_free(&seen);
  return 0;
}

/* ---- the client --------------------------------------------------------- */

typedef struct result {
  int connected, done, status;
  buf_t pieces;
  int stop_after; /* pieces before asking to stop; 0: never */
  int npieces;
} result_t;

static httpc_t http;

static void on_connect(httpc_conn_t *c, int status) {
  result_t *r = c->data;
  r->connected = status == 0 ? 1 : status;
}

static void on_done(httpc_conn_t *c, int status) {
  result_t *r = c->data;
  r->done = 1;
  r->status = status;
}

static int on_piece(httpc_conn_t *c, const char *at, size_t n) {
  result_t *r = c->data;
  buf_append(&r->pieces, at, n);
  r->npieces++;
  return r->stop_after && r->npieces >= r->stop_after;
}

static void open_conn(httpc_conn_t *c, result_t *r) {
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  memset(r, 0, sizeof *r);
  assert_int_equal(httpc_conn_init(&http, c), 0);
  c->data = r;
  assert_int_equal(httpc_connect(c, (const struct sockaddr *)&a, on_connect), 0);
  POLL(&loop, true, r->connected != 0);
  assert_int_equal(r->connected, 1);
}

static void run(httpc_conn_t *c, result_t *r, const char *method, const char *path, const char *body, bool stream) {
  r->done = 0;
  assert_int_equal(
      httpc_request(c, method, path, NULL, body, body ? strlen(body) : 0, on_done, stream ? on_piece : NULL), 0);
  assert_int_equal(httpc_request(c, "GET", "/cl", NULL, NULL, 0, on_done, NULL), UV_EBUSY);
  POLL(&loop, true, r->done);
}

static void close_conn(httpc_conn_t *c, result_t *r) {
  httpc_close(c, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  buf_free(&r->pieces);
}

static void test_keep_alive(void **state) {
  (void)state;
  httpc_init(&http, &loop, "example:1", "s3cret");
  httpc_conn_t c;
  result_t r;
  open_conn(&c, &r);
  buf_reset(&seen);
  run(&c, &r, "GET", "/cl", NULL, false);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.content_type, "application/json");
  assert_string_equal(c.body, "{\"a\":1}");
  assert_true(c.keep_alive);
  run(&c, &r, "POST", "/chunked", "xyz", false);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.content_type, "text/plain");
  assert_string_equal(c.body, "abcdefg");
  assert_string_equal(seen.data, "GET /cl HTTP/1.1\r\nHost: example:1\r\nAuthorization: Bearer s3cret\r\n\r\n"
                                 "POST /chunked HTTP/1.1\r\nHost: example:1\r\nAuthorization: Bearer s3cret\r\n"
                                 "Content-Length: 3\r\n\r\nxyz");
  /* an interim 100 is skipped; a POST without a body says Content-Length: 0 */
  run(&c, &r, "POST", "/continue", NULL, false);
  assert_int_equal(c.status, 201);
  assert_string_equal(c.body, "ok");
  assert_non_null(strstr(seen.data, "POST /continue HTTP/1.1\r\nHost: example:1\r\nAuthorization: Bearer s3cret\r\n"
                                    "Content-Length: 0\r\n\r\n"));
  size_t len;
  char *b = httpc_take_body(&c, &len);
  assert_int_equal(len, 2);
  assert_null(c.body);
  free(b);
  close_conn(&c, &r);
}

static void test_streams(void **state) {
  (void)state;
  httpc_init(&http, &loop, "h", NULL);
  httpc_conn_t c;
  result_t r;
  open_conn(&c, &r);
  buf_reset(&seen);
  /* a 404 is gathered even when pieces were asked for */
  run(&c, &r, "GET", "/404", NULL, true);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.status, 404);
  assert_string_equal(c.body, "{\"e\":\"no\"}\n");
  assert_int_equal(r.npieces, 0);
  assert_null(strstr(seen.data, "Authorization"));
  /* a body that runs to EOF: pieces, then done; the connection is spent */
  run(&c, &r, "GET", "/eof", NULL, true);
  assert_int_equal(r.status, 0);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.content_type, "text/event-stream");
  assert_string_equal(r.pieces.data, "data: 1\n\ndata: 2\n\n");
  assert_false(c.keep_alive);
  assert_int_equal(httpc_request(&c, "GET", "/cl", NULL, NULL, 0, on_done, NULL), UV_ENOTCONN);
  close_conn(&c, &r);
  /* a body callback that stops */
  open_conn(&c, &r);
  r.stop_after = 1;
  run(&c, &r, "GET", "/chunked", NULL, true);
  assert_int_equal(r.status, HTTPC_ESTOPPED);
  assert_int_equal(c.status, 200);
  assert_string_equal(r.pieces.data, "abc");
  close_conn(&c, &r);
}

static void test_failures(void **state) {
  (void)state;
  httpc_init(&http, &loop, "h", NULL);
  httpc_conn_t c;
  result_t r;
  open_conn(&c, &r);
  run(&c, &r, "GET", "/junk", NULL, false);
  assert_int_equal(r.status, HTTPC_EPROTO);
  close_conn(&c, &r);
  open_conn(&c, &r);
  run(&c, &r, "GET", "/cut", NULL, false);
  assert_int_equal(r.status, UV_EOF);
  close_conn(&c, &r);
  /* refused: the listener is closed first */
  uv_close((uv_handle_t *)&listener, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  memset(&r, 0, sizeof r);
  assert_int_equal(httpc_conn_init(&http, &c), 0);
  c.data = &r;
  assert_int_equal(httpc_connect(&c, (const struct sockaddr *)&a, on_connect), 0);
  POLL(&loop, true, r.connected != 0);
  assert_int_equal(r.connected, UV_ECONNREFUSED);
  assert_int_equal(httpc_request(&c, "GET", "/cl", NULL, NULL, 0, on_done, NULL), UV_ENOTCONN);
  close_conn(&c, &r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url),
      cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_streams, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
