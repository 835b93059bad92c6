/* stream_test: streamed replies' edges (http/reply.c, stream.c) on the fake
 * connection (http/http_fake.h): a file send whose client leaves while a
 * thread-pool read is in flight (the abort callback waits for it, so the
 * handler may close its file there), and one write larger than
 * HTTP_STREAM_MAX_UNSENT on an empty queue (not a slow client).
 *
 * Each test owns a private loop; waits are on conditions (util/test_poll.h),
 * never on time. */
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

#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/err.h"
#include "util/test_poll.h"

typedef struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  int nreq, naborts, nsent;
  http_req_t *req;
  int fd; /* the handler's file: closed in its abort callback */
  bool fd_open_at_abort;
} env_t;

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  e->nreq++;
  e->req = req;
}

static void env_init(env_t *e) {
  memset(e, 0, sizeof *e);
  e->fd = -1;
  http_config_t cfg = http_test_config();
  http_test_env_open(&e->base, &cfg, NULL, on_request, e);
}

static void env_fini(env_t *e) { http_test_env_close(&e->base); }

/* ---- a file send the client leaves ---- */

static void on_abort_close_file(http_req_t *req, void *data) {
  env_t *e = data;
  e->naborts++;
  e->fd_open_at_abort = e->fd >= 0;
  if (e->fd >= 0)
    close(e->fd); /* what a handler does: the file is its own */
  e->fd = -1;
}

static void on_sent(http_req_t *req, int status, void *data) { ((env_t *)data)->nsent++; }

static int big_temp_file(size_t n) {
  char path[] = "/tmp/offload-stream-test-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  char *data = malloc(n);
  assert_non_null(data);
  memset(data, 'f', n);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  free(data);
  return fd;
}

static void test_file_abort_waits_for_pool_op(void **state) {
  (void)state;
  enum { SIZE = 4 * 1024 * 1024 };
  env_t e;
  env_init(&e);
  e.fd = big_temp_file(SIZE);
  http_fake_send_str(e.f, "GET /file HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  http_req_on_abort(e.req, on_abort_close_file, &e);
  assert_int_equal(http_stream_start(e.req, 200, "application/octet-stream", NULL, SIZE), 0);
  http_fake_flush(e.f); /* the head is out: the file send starts on an empty queue */
  assert_int_equal(http_fake_pending(e.f), 0);
  assert_int_equal(http_stream_file(e.req, e.fd, 0, SIZE, on_sent, &e), 0);
  /* A read is on the thread pool now (the fake has no socket); its result
   * comes back only on a loop turn. The client leaves meanwhile. */
  http_fake_eof(e.f);
  int aborts_while_busy = e.naborts;
  bool fd_closed_while_busy = e.fd < 0;
  POLL(&e.loop, true, http_fake_closed(e.f));
  int aborts = e.naborts, sent = e.nsent;
  bool fd_open_at_abort = e.fd_open_at_abort;
  if (e.fd >= 0)
    close(e.fd);
  env_fini(&e);
  /* Checked after teardown, so a failure leaks nothing. */
  assert_int_equal(aborts_while_busy, 0); /* not while a pool thread may still read the file */
  assert_false(fd_closed_while_busy);
  assert_int_equal(aborts, 1);
  assert_true(fd_open_at_abort);
  assert_int_equal(sent, 0);
}

/* ---- one write larger than the slow-client bound ---- */

static void test_one_big_write_is_not_a_slow_client(void **state) {
  (void)state;
  const size_t n = HTTP_STREAM_MAX_UNSENT + 4096;
  env_t e;
  env_init(&e);
  http_fake_send_str(e.f, "GET /big HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  http_req_on_abort(e.req, on_abort_close_file, &e);
  assert_int_equal(http_stream_start(e.req, 200, NULL, NULL, (int64_t)n), 0);
  http_fake_flush(e.f); /* an empty queue */
  http_fake_out_clear(e.f);
  char *piece = malloc(n);
  assert_non_null(piece);
  memset(piece, 'b', n);
  int rc = http_stream_write(e.req, piece, n);
  free(piece);
  assert_int_equal(rc, 0);
  assert_int_equal(http_server_stats(e.srv)->dropped_slow, 0);
  assert_int_equal(http_server_stats(e.srv)->connections, 1);
  assert_true(http_stream_unsent(e.req) >= n);
  http_stream_end(e.req);
  http_fake_set_reading(e.f, true);
  POLL(&e.loop, true, http_fake_pending(e.f) == 0);
  assert_int_equal(http_fake_out_len(e.f), n);
  assert_int_equal(e.naborts, 0);
  assert_false(http_fake_closed(e.f)); /* keep-alive: the reply was complete */
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_abort_waits_for_pool_op),
      cmocka_unit_test(test_one_big_write_is_not_a_slow_client),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
