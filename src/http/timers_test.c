/* timers_test: the connection timer after a reply (http/conn.c) on the fake
 * connection (http/http_fake.h): the keep-alive limit counts from the last
 * byte written, not from the moment the reply was queued; a reply whose
 * bytes stay queued for a keep-alive period without progress is a slow
 * client (dropped and counted in stats.dropped_slow), kept-alive or not.
 *
 * Each test owns a private loop. The keep-alive period is short and real,
 * but no assertion depends on how fast the machine is: every check runs
 * from a loop timer started at the same loop time as the connection's own
 * timer, and libuv runs due timers in order of their due time, so a stalled
 * loop changes nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/http_fake.h"
#include "http/http_test_env.h"
#include "util/test_poll.h"

#define KA_MS 400
#define REPLY_SIZE (300 * 1024)

typedef struct env {
  HTTP_TEST_ENV; /* loop, srv, f */
  int nreq;
  uv_timer_t flush_timer, check_timer;
  bool flushed, checked;
  bool closed_at_check; /* the connection's state when the check timer ran */
  size_t pending_at_check;
} env_t;

static void on_request(http_req_t *req, void *data) {
  env_t *e = data;
  e->nreq++;
  char *body = malloc(REPLY_SIZE);
  assert_non_null(body);
  memset(body, 'j', REPLY_SIZE);
  http_reply_take(req, 200, "application/octet-stream", NULL, body, REPLY_SIZE);
}

static void env_init(env_t *e) {
  memset(e, 0, sizeof *e);
  http_config_t cfg = http_test_config();
  cfg.max_body = 1000;
  cfg.keepalive_timeout_ms = KA_MS;
  http_test_env_open(&e->base, &cfg, NULL, on_request, e);
  uv_timer_init(&e->loop, &e->flush_timer);
  uv_timer_init(&e->loop, &e->check_timer);
  e->flush_timer.data = e->check_timer.data = e;
}

static void env_fini(env_t *e) {
  uv_close((uv_handle_t *)&e->flush_timer, NULL);
  uv_close((uv_handle_t *)&e->check_timer, NULL);
  http_test_env_close(&e->base);
}

static void on_flush_timer(uv_timer_t *t) {
  env_t *e = t->data;
  e->flushed = true;
  http_fake_flush(e->f); /* the client takes every byte: the last one is written now */
}

static void on_check_timer(uv_timer_t *t) {
  env_t *e = t->data;
  e->checked = true;
  e->closed_at_check = http_fake_closed(e->f) || http_server_stats(e->srv)->connections == 0;
  e->pending_at_check = http_fake_pending(e->f);
}

/* A big reply the client reads (all of it) only after half the keep-alive
 * period: the idle limit starts from that last byte, so the connection is
 * still open a keep-alive period after the reply was queued. */
static void test_keepalive_counts_from_last_byte_written(void **state) {
  (void)state;
  env_t e;
  env_init(&e);
  http_fake_send_str(e.f, "GET /big HTTP/1.1\r\n\r\n");
  assert_int_equal(e.nreq, 1);
  assert_true(http_fake_pending(e.f) > REPLY_SIZE); /* queued, the client does not read */
  /* Same loop time as the connection's timer (armed by the reply above). */
  uv_timer_start(&e.flush_timer, on_flush_timer, KA_MS / 2, 0);
  uv_timer_start(&e.check_timer, on_check_timer, KA_MS + KA_MS / 4, 0);
  POLL(&e.loop, true, e.checked);
  assert_true(e.flushed);
  assert_int_equal(e.pending_at_check, 0);
  assert_false(e.closed_at_check); /* closed a keep-alive period after the reply was queued, not after its last byte */
  /* Then it is an idle keep-alive connection: closed, but not a slow client. */
  POLL(&e.loop, true, http_fake_closed(e.f));
  assert_int_equal(http_server_stats(e.srv)->dropped_slow, 0);
  assert_true(http_fake_out_len(e.f) > REPLY_SIZE);
  env_fini(&e);
}

/* A client that never reads its reply: dropped about a keep-alive period
 * after the reply was queued, and counted as a slow client — between
 * replies (keep-alive) and after the last one (Connection: close). */
static void test_reply_never_read_is_a_slow_client(void **state) {
  (void)state;
  const char *reqs[] = {"GET /big HTTP/1.1\r\n\r\n", "GET /big HTTP/1.1\r\nConnection: close\r\n\r\n"};
  for (size_t i = 0; i < 2; i++) {
    env_t e;
    env_init(&e);
    http_fake_send_str(e.f, reqs[i]);
    assert_int_equal(e.nreq, 1);
    uv_timer_start(&e.check_timer, on_check_timer, KA_MS / 2, 0);
    POLL(&e.loop, true, e.checked);
    assert_false(e.closed_at_check); /* not before a keep-alive period */
    POLL(&e.loop, true, http_fake_closed(e.f));
    assert_int_equal(http_server_stats(e.srv)->dropped_slow, 1);
    assert_false(http_fake_shut(e.f)); /* never a clean end: the reply was not delivered */
    env_fini(&e);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive_counts_from_last_byte_written),
      cmocka_unit_test(test_reply_never_read_is_a_slow_client),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
