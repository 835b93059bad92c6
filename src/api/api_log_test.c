/* api_log_test: GET /jobs/<id>/log on fake connections
 * (api/api_test_env.h). The errors (unknown job, a task that keeps no
 * log, bad follow values, 405), a queued job's empty log, a running job's
 * tail (exactly the last 64 KiB), a finished job's saved tail (live and
 * cold), and ?follow=1: the tail then every write in order across
 * wake-ups, the skip mark when the ring overtook the follower, a slow
 * client caught up after its drain, the end with the job (a run that ended
 * unseen sends its saved tail; a queued job canceled ends empty), a client
 * that leaves (ASan: no follower or log reference leaks), shutdown.
 *
 * No runner exists here: the test writes the job's log itself
 * (cmdlog_open/_write/_save/_close, as the runner will), and its command
 * task's run is the stand-in below, which holds the worker until the test
 * lets it go. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_test_env.h"
#include "commands/log.h"
#include "commands/run.h"

/* ---- the runner's stand-in ---- */

static _Atomic int releases; /* runs allowed to return */

/* Weak: the real runner (commands/run.c) wins once it exists. A run waits
 * for a release (or a cancel) and completes. */
__attribute__((weak)) void commands_run(offload_task_t *t) {
  for (;;) {
    int n = atomic_load(&releases);
    if (n > 0 && atomic_compare_exchange_weak(&releases, &n, n - 1))
      return;
    if (offload_task_canceled(t))
      return;
    usleep(200);
  }
}

static const offload_task_def_t cmd_def = {
    .name = "cmdtest",
    .description = "A command task's stand-in: it runs until the test lets it go.",
    .run = commands_run,
    .isolation = OFFLOAD_ISOLATION_THREAD,
};
static const offload_task_def_t *const extra[] = {&cmd_def};

typedef struct fixture {
  env_t e;
  char root[64]; /* the files root (the jobs' saved tails) */
} fixture_t;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void fx_init_store(fixture_t *fx, const char *store_dir, size_t cache) {
  atomic_store(&releases, 0);
  env_init_extra(&fx->e, 1, 100, 0, store_dir, cache, extra, 1);
  snprintf(fx->root, sizeof fx->root, "/tmp/offload-logapi-XXXXXX");
  assert_non_null(mkdtemp(fx->root));
  fx->e.api.files_root = fx->root;
}

static void fx_init(fixture_t *fx) { fx_init_store(fx, NULL, 0); }

static void fx_fini(fixture_t *fx) {
  env_fini(&fx->e);
  nftw(fx->root, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void release_one(void) { atomic_fetch_add(&releases, 1); }

static const char *submit_cmd(env_t *e, char id[JOB_ID_LEN + 1]) {
  reply_t *r = post_job(e, "{\"task\":\"cmdtest\",\"params\":{}}");
  assert_int_equal(r->status, 202);
  snprintf(id, JOB_ID_LEN + 1, "%s", jstr(r->json, "id"));
  return id;
}

/* The saved tail, as the runner writes it at the end of a run. */
static void save_tail(fixture_t *fx, cmdlog_t *l, const char *id) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", fx->root, id);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof path, "%s/%s/" CMDLOG_FILE, fx->root, id);
  assert_int_equal(cmdlog_save(l, path), 0);
}

/* The byte printed at position p (never periodic in 64 KiB). */
static char byte_at(uint64_t p) { return (char)('a' + (p * 7 + p / 26) % 26); }

static void print_span(cmdlog_t *l, uint64_t from, size_t len) {
  char *b = malloc(len);
  assert_non_null(b);
  for (size_t i = 0; i < len; i++)
    b[i] = byte_at(from + i);
  cmdlog_write(l, b, len);
  free(b);
}

static void check_span(const char *buf, uint64_t start, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != byte_at(start + i))
      fail_msg("byte %zu (position %llu) is wrong", i, (unsigned long long)(start + i));
}

static reply_t *get_log(env_t *e, const char *method, const char *id, const char *query) {
  char target[128];
  snprintf(target, sizeof target, "/jobs/%s/log%s", id, query ? query : "");
  return req(e, method, target);
}

static void check_text(const reply_t *r, size_t len) {
  if (r->status != 200)
    fail_msg("status %d: %s", r->status, r->body);
  assert_string_equal(rheader(r, "Content-Type"), "text/plain; charset=utf-8");
  assert_string_equal(rheader(r, "Cache-Control"), "no-store");
  assert_int_equal(r->body_len, len);
}

/* ---- a chunked reply, decoded as it arrives ---- */

typedef struct stream {
  int status;
  char *head;
  char *body; /* decoded so far (owned) */
  size_t len;
  bool ended;     /* the last chunk came */
  size_t end_off; /* where the next reply starts, once ended */
} stream_t;

static void stream_free(stream_t *s) {
  free(s->head);
  free(s->body);
  memset(s, 0, sizeof *s);
}

/* Decodes client c's output from its offset; false until the head came. */
static bool stream_read(client_t *c, stream_t *s) {
  const char *out = http_fake_out(c->f) + c->off;
  size_t avail = http_fake_out_len(c->f) - c->off;
  const char *end = find_crlf2(out, avail);
  if (!end)
    return false;
  stream_free(s);
  size_t hlen = (size_t)(end - out) + 4;
  s->head = strndup(out, hlen - 2);
  s->status = atoi(out + 9);
  s->body = malloc(avail + 1);
  assert_non_null(s->body);
  size_t at = hlen;
  for (;;) {
    const char *line = out + at, *crlf = memmem(line, avail - at, "\r\n", 2);
    if (!crlf)
      break;
    size_t n = (size_t)strtoull(line, NULL, 16);
    if (n == 0) {
      if (avail - at >= 5 && memcmp(line, "0\r\n\r\n", 5) == 0) {
        s->ended = true;
        s->end_off = c->off + at + 5;
      }
      break;
    }
    size_t data = (size_t)(crlf - out) + 2;
    if (avail < data + n + 2)
      break;
    memcpy(s->body + s->len, out + data, n);
    s->len += n;
    at = data + n + 2;
  }
  s->body[s->len] = '\0';
  return true;
}

/* Sends a follow request on client i and waits for its head. */
static void follow(env_t *e, int i, const char *id, stream_t *s) {
  char raw[160];
  snprintf(raw, sizeof raw, "GET /jobs/%s/log?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n", id);
  http_fake_send_str(e->c[i].f, raw);
  POLL(&e->loop, true, stream_read(&e->c[i], s));
  assert_int_equal(s->status, 200);
  assert_non_null(strstr(s->head, "Transfer-Encoding: chunked"));
  assert_non_null(strstr(s->head, "Content-Type: text/plain; charset=utf-8"));
  assert_non_null(strstr(s->head, "Cache-Control: no-store"));
}

static void wait_len(env_t *e, int i, stream_t *s, size_t len) {
  POLL(&e->loop, true, stream_read(&e->c[i], s) && s->len >= len);
  assert_int_equal(s->len, len);
}

static void wait_ended(env_t *e, int i, stream_t *s) {
  POLL(&e->loop, true, stream_read(&e->c[i], s) && s->ended);
  e->c[i].off = s->end_off;
}

static size_t followers(env_t *e) { return api_logs_followers(e->api.logs); }

/* ---- tests ---- */

static void test_errors(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  check_error(get_log(e, "GET", "AAAAAAAAAAAAAAAAAAAAAA", NULL), 404, "not_found", NULL);
  assert_int_equal(get_log(e, "HEAD", "AAAAAAAAAAAAAAAAAAAAAA", NULL)->status, 404);
  char spin[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1];
  submit_spin(e, 1, spin);
  wait_job_done(e, spin);
  reply_t *r = get_log(e, "GET", spin, NULL);
  check_error(r, 404, "no_log", NULL);
  assert_non_null(strstr(err_message(r), "only command tasks"));
  check_error(get_log(e, "GET", spin, "?follow=1"), 404, "no_log", NULL);

  submit_cmd(e, id);
  check_error(get_log(e, "GET", id, "?follow=2"), 400, "invalid_param", "follow");
  check_error(get_log(e, "GET", id, "?follow="), 400, "invalid_param", "follow");
  check_error(get_log(e, "GET", id, "?follow=yes"), 400, "invalid_param", "follow");
  check_error(get_log(e, "GET", id, "?follow=1&follow=1"), 400, "invalid_param", "follow");
  check_error(get_log(e, "GET", id, "?tail=10"), 400, "unknown_param", "tail");
  /* The query is checked before the id is looked up, as GET /jobs/<id>. */
  check_error(get_log(e, "GET", "AAAAAAAAAAAAAAAAAAAAAA", "?follow=x"), 400, "invalid_param", "follow");
  static const char *const methods[] = {"PUT", "POST", "DELETE", "PATCH"};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    r = get_log(e, methods[i], id, NULL);
    check_error(r, 405, "method_not_allowed", NULL);
    assert_string_equal(rheader(r, "Allow"), "GET, HEAD");
  }
  /* follow=0 and follow=false: as without it. */
  check_text(get_log(e, "GET", id, "?follow=0"), 0);
  check_text(get_log(e, "GET", id, "?follow=false"), 0);
  fx_fini(&fx);
}

static void test_queued_and_running(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  char run[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
  submit_cmd(e, run);
  wait_processing(e, run);
  submit_cmd(e, queued);
  check_text(get_log(e, "GET", queued, NULL), 0);
  reply_t *r = get_log(e, "HEAD", queued, NULL);
  assert_int_equal(r->status, 200);
  assert_string_equal(rheader(r, "Content-Length"), "0");

  /* Running, before it printed anything. */
  check_text(get_log(e, "GET", run, NULL), 0);
  cmdlog_t *l = cmdlog_open(run);
  check_text(get_log(e, "GET", run, NULL), 0);
  print_span(l, 0, 100);
  r = get_log(e, "GET", run, NULL);
  check_text(r, 100);
  check_span(r->body, 0, 100);
  /* More than the ring holds: exactly the last 64 KiB. */
  uint64_t total = 100;
  for (size_t piece = 1000; total < CMDLOG_TAIL + 12345; total += piece)
    print_span(l, total, piece);
  r = get_log(e, "GET", run, NULL);
  check_text(r, CMDLOG_TAIL);
  check_span(r->body, total - CMDLOG_TAIL, CMDLOG_TAIL);
  r = get_log(e, "HEAD", run, NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(r->body_len, 0);
  assert_string_equal(rheader(r, "Content-Length"), "65536");
  assert_int_equal(e->c[0].off, http_fake_out_len(e->c[0].f));

  /* The run ends: the log leaves the table; the saved tail is served. */
  save_tail(&fx, l, run);
  cmdlog_close(l);
  release_one();
  wait_job_done(e, run);
  r = get_log(e, "GET", run, NULL);
  check_text(r, CMDLOG_TAIL);
  check_span(r->body, total - CMDLOG_TAIL, CMDLOG_TAIL);
  r = get_log(e, "HEAD", run, NULL);
  assert_int_equal(r->status, 200);
  assert_string_equal(rheader(r, "Content-Length"), "65536");

  /* A run that saved nothing: an empty log. */
  wait_processing(e, queued);
  release_one();
  wait_job_done(e, queued);
  check_text(get_log(e, "GET", queued, NULL), 0);
  fx_fini(&fx);
}

/* The tail first, then every write in order, across wake-ups, to two
 * followers at once; the body ends when the job does. */
static void test_follow(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  env_open(e, 1);
  char id[JOB_ID_LEN + 1];
  submit_cmd(e, id);
  wait_processing(e, id);
  cmdlog_t *l = cmdlog_open(id);
  print_span(l, 0, 70000);
  stream_t s = {0}, s2 = {0};
  follow(e, 0, id, &s);
  wait_len(e, 0, &s, CMDLOG_TAIL); /* the tail, no skip mark */
  check_span(s.body, 70000 - CMDLOG_TAIL, CMDLOG_TAIL);
  uint64_t at = 70000;
  follow(e, 1, id, &s2);
  wait_len(e, 1, &s2, CMDLOG_TAIL);
  assert_int_equal(followers(e), 2);
  size_t want = CMDLOG_TAIL;
  for (int k = 1; k <= 50; k++) {
    print_span(l, at, (size_t)k * 37);
    at += (size_t)k * 37;
    want += (size_t)k * 37;
    if (k % 3 == 0) /* sometimes two writes per wake-up */
      continue;
    wait_len(e, 0, &s, want);
    wait_len(e, 1, &s2, want);
  }
  check_span(s.body, 70000 - CMDLOG_TAIL, want);
  check_span(s2.body, 70000 - CMDLOG_TAIL, want);
  assert_false(s.ended);
  cmdlog_close(l);
  turns(e, 5);
  assert_false(stream_read(&e->c[0], &s) && s.ended); /* the job is not final yet */
  release_one();
  wait_ended(e, 0, &s);
  wait_ended(e, 1, &s2);
  assert_int_equal(s.len, want);
  assert_int_equal(s2.len, want);
  assert_int_equal(followers(e), 0);
  /* The connection serves the next request. */
  check_text(get_log(e, "GET", id, NULL), 0); /* nothing was saved */
  stream_free(&s);
  stream_free(&s2);
  fx_fini(&fx);
}

/* A follower the ring overtook between two wake-ups says how much it
 * missed and goes on from the oldest byte held. */
static void test_follow_skipped(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  char id[JOB_ID_LEN + 1];
  submit_cmd(e, id);
  wait_processing(e, id);
  cmdlog_t *l = cmdlog_open(id);
  print_span(l, 0, 10);
  stream_t s = {0};
  follow(e, 0, id, &s);
  wait_len(e, 0, &s, 10);
  for (uint64_t at = 10; at < 10 + 200000; at += 40000)
    print_span(l, at, 40000); /* no loop turn in between */
  static const char mark[] = "\n[offload: 134464 bytes skipped]\n";
  wait_len(e, 0, &s, 10 + sizeof mark - 1 + CMDLOG_TAIL);
  assert_memory_equal(s.body + 10, mark, sizeof mark - 1);
  check_span(s.body + 10 + sizeof mark - 1, 200010 - CMDLOG_TAIL, CMDLOG_TAIL);
  cmdlog_close(l);
  release_one();
  wait_ended(e, 0, &s);
  stream_free(&s);
  fx_fini(&fx);
}

/* A client that stops reading: the follower stops writing at half the
 * stream limit (the connection is not dropped), then catches up after
 * the drain, with a skip mark for what the ring lost meanwhile. */
static void test_follow_slow_client(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  char id[JOB_ID_LEN + 1];
  submit_cmd(e, id);
  wait_processing(e, id);
  cmdlog_t *l = cmdlog_open(id);
  stream_t s = {0};
  follow(e, 0, id, &s);
  http_fake_set_reading(e->c[0].f, false);
  uint64_t at = 0;
  size_t out = http_fake_out_len(e->c[0].f);
  for (int k = 0; k < 12; k++) { /* 12 x 64 KiB, a wake-up each */
    print_span(l, at, CMDLOG_TAIL);
    at += CMDLOG_TAIL;
    turns(e, 3);
  }
  assert_true(http_fake_pending(e->c[0].f) > HTTP_STREAM_MAX_UNSENT / 2);
  assert_true(http_fake_pending(e->c[0].f) <= HTTP_STREAM_MAX_UNSENT);
  out = http_fake_out_len(e->c[0].f);
  print_span(l, at, 1000);
  at += 1000;
  turns(e, 5);
  assert_int_equal(http_fake_out_len(e->c[0].f), out); /* paused: nothing written */
  assert_int_equal(http_server_stats(e->http)->dropped_slow, 0);
  http_fake_set_reading(e->c[0].f, true);
  POLL(&e->loop, true, stream_read(&e->c[0], &s) && s.len > 0 && s.body[s.len - 1] == byte_at(at - 1));
  /* What was sent before the pause, then a skip mark, then the tail. */
  const char *m = strstr(s.body, "\n[offload: ");
  assert_non_null(m);
  size_t before = (size_t)(m - s.body);
  check_span(s.body, 0, before);
  unsigned long long skipped = strtoull(m + 11, NULL, 10);
  assert_int_equal(before + skipped + CMDLOG_TAIL, at);
  const char *rest = strstr(m, " bytes skipped]\n") + 16;
  assert_int_equal(s.len - (size_t)(rest - s.body), CMDLOG_TAIL);
  check_span(rest, at - CMDLOG_TAIL, CMDLOG_TAIL);
  cmdlog_close(l);
  release_one();
  wait_ended(e, 0, &s);
  stream_free(&s);
  fx_fini(&fx);
}

/* Following a queued job: only the head until it runs; a run that ended
 * between two wake-ups (never seen) is sent from its saved tail; a queued
 * job canceled ends the body empty. */
static void test_follow_queued(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  env_open(e, 1);
  env_open(e, 2);
  char blocker[JOB_ID_LEN + 1], a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1], c[JOB_ID_LEN + 1];
  submit_cmd(e, blocker);
  wait_processing(e, blocker);
  submit_cmd(e, a);
  submit_cmd(e, b);
  submit_cmd(e, c);
  stream_t sa = {0}, sb = {0}, sc = {0};
  follow(e, 0, a, &sa);
  follow(e, 1, b, &sb);
  follow(e, 2, c, &sc);
  turns(e, 5);
  assert_true(stream_read(&e->c[0], &sa) && sa.len == 0 && !sa.ended);

  /* c is canceled while queued: its body ends, empty. */
  assert_int_equal(registry_cancel(e->reg, registry_get(e->reg, c)), 0);
  wait_ended(e, 2, &sc);
  assert_int_equal(sc.len, 0);
  assert_int_equal(followers(e), 2);

  /* The blocker ends and a runs: found at its first write. */
  release_one();
  wait_processing(e, a);
  cmdlog_t *l = cmdlog_open(a);
  turns(e, 3);
  assert_true(stream_read(&e->c[0], &sa) && sa.len == 0);
  cmdlog_write(l, "hello\n", 6);
  wait_len(e, 0, &sa, 6);
  assert_string_equal(sa.body, "hello\n");
  cmdlog_write(l, "world\n", 6);
  save_tail(&fx, l, a);
  cmdlog_close(l);
  release_one();
  wait_ended(e, 0, &sa);
  assert_string_equal(sa.body, "hello\nworld\n"); /* the saved tail is not sent again */

  /* b's whole run happens between two wake-ups: it was never seen, so its
   * saved tail is what the follower gets. */
  wait_processing(e, b);
  l = cmdlog_open(b);
  cmdlog_write(l, "quick\n", 6);
  save_tail(&fx, l, b);
  cmdlog_close(l);
  release_one();
  wait_ended(e, 1, &sb);
  assert_string_equal(sb.body, "quick\n");
  assert_int_equal(followers(e), 0);
  stream_free(&sa);
  stream_free(&sb);
  stream_free(&sc);
  fx_fini(&fx);
}

/* A finished job followed: its saved tail, then the end; HEAD: the
 * stream's head and no body (a stream's HEAD closes the connection). */
static void test_follow_finished(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  env_open(e, 1);
  char id[JOB_ID_LEN + 1], none[JOB_ID_LEN + 1];
  submit_cmd(e, id);
  wait_processing(e, id);
  cmdlog_t *l = cmdlog_open(id);
  print_span(l, 0, 70000);
  save_tail(&fx, l, id);
  cmdlog_close(l);
  release_one();
  wait_job_done(e, id);
  stream_t s = {0};
  follow(e, 0, id, &s);
  wait_ended(e, 0, &s);
  assert_int_equal(s.len, CMDLOG_TAIL);
  check_span(s.body, 70000 - CMDLOG_TAIL, CMDLOG_TAIL);
  /* One that saved nothing, then a canceled queued one: empty bodies. */
  submit_cmd(e, none);
  wait_processing(e, none);
  release_one();
  wait_job_done(e, none);
  follow(e, 0, none, &s);
  wait_ended(e, 0, &s);
  assert_int_equal(s.len, 0);
  assert_int_equal(followers(e), 0);

  char raw[160];
  snprintf(raw, sizeof raw, "HEAD /jobs/%s/log?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n", id);
  reply_t *r = client_raw(e, &e->c[1], raw, strlen(raw));
  assert_int_equal(r->status, 200);
  assert_string_equal(rheader(r, "Content-Type"), "text/plain; charset=utf-8");
  assert_string_equal(rheader(r, "Cache-Control"), "no-store");
  POLL(&e->loop, true, http_fake_closed(e->c[1].f));
  assert_int_equal(e->c[1].off, http_fake_out_len(e->c[1].f));
  stream_free(&s);
  fx_fini(&fx);
}

/* Clients that leave: while following a running job, a queued one, and
 * while the saved tail is being read. Nothing leaks (ASan), the job goes on. */
static void test_follow_client_leaves(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  env_open(e, 1);
  env_open(e, 2);
  char run[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
  submit_cmd(e, run);
  wait_processing(e, run);
  submit_cmd(e, queued);
  cmdlog_t *l = cmdlog_open(run);
  print_span(l, 0, 5000);
  stream_t s = {0}, s2 = {0};
  follow(e, 1, run, &s);
  wait_len(e, 1, &s, 5000);
  follow(e, 2, queued, &s2);
  assert_int_equal(followers(e), 2);
  http_fake_eof(e->c[1].f);
  http_fake_eof(e->c[2].f);
  POLL(&e->loop, true, http_fake_closed(e->c[1].f) && http_fake_closed(e->c[2].f));
  assert_int_equal(followers(e), 0);
  print_span(l, 5000, 100); /* a wake-up with nobody to serve */
  turns(e, 3);
  assert_int_equal(job_status_of(e, run), JOB_PROCESSING);
  save_tail(&fx, l, run);
  cmdlog_close(l);
  release_one();
  wait_job_done(e, run);
  http_fake_free(e->c[1].f);
  http_fake_free(e->c[2].f);
  e->c[1].f = e->c[2].f = NULL;
  /* Gone while its saved tail is opened and sent. */
  for (int k = 0; k < 2; k++) {
    env_open(e, 1);
    char raw[160];
    snprintf(raw, sizeof raw, "GET /jobs/%s/log%s HTTP/1.1\r\nHost: x\r\n\r\n", run, k ? "?follow=1" : "");
    http_fake_send_str(e->c[1].f, raw);
    http_fake_eof(e->c[1].f);
    POLL(&e->loop, true, http_fake_closed(e->c[1].f));
    http_fake_free(e->c[1].f);
    e->c[1].f = NULL;
  }
  assert_int_equal(followers(e), 0);
  stream_free(&s);
  stream_free(&s2);
  fx_fini(&fx);
}

/* Shutdown: api_logs_stop ends every follower's body; a follow request
 * after it gets the log as it is now. */
static void test_stop(void **state) {
  (void)state;
  fixture_t fx;
  fx_init(&fx);
  env_t *e = &fx.e;
  char id[JOB_ID_LEN + 1];
  submit_cmd(e, id);
  wait_processing(e, id);
  cmdlog_t *l = cmdlog_open(id);
  cmdlog_write(l, "abc", 3);
  stream_t s = {0};
  follow(e, 0, id, &s);
  wait_len(e, 0, &s, 3);
  api_logs_stop(e->api.logs);
  wait_ended(e, 0, &s);
  assert_int_equal(followers(e), 0);
  reply_t *r = get_log(e, "GET", id, "?follow=1");
  check_text(r, 3);
  assert_string_equal(r->body, "abc");
  cmdlog_close(l);
  stream_free(&s);
  fx_fini(&fx);
}

/* A cold job (its params and result only in the store) reads its saved
 * tail as a live one does. */
static void test_cold(void **state) {
  (void)state;
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/offload-logcold-XXXXXX");
  assert_non_null(mkdtemp(dir));
  fixture_t fx;
  fx_init_store(&fx, dir, 1);
  env_t *e = &fx.e;
  char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1];
  submit_cmd(e, a);
  wait_processing(e, a);
  cmdlog_t *l = cmdlog_open(a);
  cmdlog_write(l, "cold\n", 5);
  save_tail(&fx, l, a);
  cmdlog_close(l);
  release_one();
  wait_job_done(e, a);
  submit_cmd(e, b);
  wait_processing(e, b);
  release_one();
  wait_job_done(e, b);
  POLL(&e->loop, true, registry_stats(e->reg)->cold == 1);
  assert_true(job_is_cold(registry_get(e->reg, a)));
  reply_t *r = get_log(e, "GET", a, NULL);
  check_text(r, 5);
  assert_string_equal(r->body, "cold\n");
  stream_t s = {0};
  follow(e, 0, a, &s);
  wait_ended(e, 0, &s);
  assert_string_equal(s.body, "cold\n");
  stream_free(&s);
  fx_fini(&fx);
  nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_queued_and_running),
      cmocka_unit_test(test_follow),
      cmocka_unit_test(test_follow_skipped),
      cmocka_unit_test(test_follow_slow_client),
      cmocka_unit_test(test_follow_queued),
      cmocka_unit_test(test_follow_finished),
      cmocka_unit_test(test_follow_client_leaves),
      cmocka_unit_test(test_stop),
      cmocka_unit_test(test_cold),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
