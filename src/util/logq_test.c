/* logq_test: the log-line queue (util/logq.h) and its writer thread: lines
 * arrive whole and in order through a pipe, a socket and a regular file;
 * lines longer than PIPE_BUF; a full queue drops and counts and a push
 * never waits for a reader that is stuck; logq_free returns within its
 * flush time even then; a reader that went away (EPIPE) costs dropped
 * lines, not the process; and several threads pushing at once (TSan).
 *
 * Waits are on conditions with generous deadlines (util/test_poll.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/logq.h"
#include "util/test_poll.h"

/* Reads what is there (non-blocking) into `out`. */
static void drain(int fd, buf_t *out) {
  char tmp[65536];
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0)
      return;
    assert_int_equal(buf_append(out, tmp, (size_t)n), 0);
  }
}

static void nonblocking(int fd) { assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }

static void expect_stats(logq_t *q, uint64_t lines, uint64_t dropped) {
  logq_stats_t st;
  logq_stats(q, &st);
  if (st.lines != lines || st.dropped != dropped)
    fail_msg("lines %llu dropped %llu, want %llu %llu", (unsigned long long)st.lines, (unsigned long long)st.dropped,
             (unsigned long long)lines, (unsigned long long)dropped);
}

static bool stats_lines_are(logq_t *q, uint64_t lines) {
  logq_stats_t st;
  logq_stats(q, &st);
  return st.lines == lines;
}

static bool stats_dropped_are(logq_t *q, uint64_t dropped) {
  logq_stats_t st;
  logq_stats(q, &st);
  return st.dropped == dropped;
}

static void test_pipe_in_order(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  nonblocking(p[0]);
  logq_t *q = logq_new(p[1], LOGQ_MAX_PENDING_DEFAULT);
  assert_non_null(q);
  buf_t want = BUF_INIT, got = BUF_INIT;
  for (int i = 0; i < 1000; i++) {
    char line[64];
    int n = snprintf(line, sizeof line, "line %d of the access log\n", i);
    assert_int_equal(logq_push(q, line, (size_t)n), 0);
    assert_int_equal(buf_append(&want, line, (size_t)n), 0);
  }
  POLL(NULL, false, (drain(p[0], &got), got.len == want.len));
  assert_memory_equal(got.data, want.data, want.len);
  POLL(NULL, false, stats_lines_are(q, 1000));
  expect_stats(q, 1000, 0);
  logq_free(q);
  close(p[0]);
  close(p[1]); /* borrowed: still ours */
  buf_free(&want);
  buf_free(&got);
}

/* A line longer than PIPE_BUF goes in pieces, and still arrives whole. */
static void test_long_lines(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  nonblocking(p[0]);
  logq_t *q = logq_new(p[1], LOGQ_MAX_PENDING_DEFAULT);
  assert_non_null(q);
  buf_t want = BUF_INIT, got = BUF_INIT;
  for (int i = 0; i < 20; i++) {
    size_t n = (size_t)PIPE_BUF * (size_t)(1 + i % 4) + (size_t)i * 7;
    char *line = malloc(n);
    assert_non_null(line);
    for (size_t k = 0; k + 1 < n; k++)
      line[k] = (char)('a' + (k + (size_t)i) % 26);
    line[n - 1] = '\n';
    assert_int_equal(logq_push(q, line, n), 0);
    assert_int_equal(buf_append(&want, line, n), 0);
    free(line);
  }
  POLL(NULL, false, (drain(p[0], &got), got.len == want.len));
  assert_memory_equal(got.data, want.data, want.len);
  POLL(NULL, false, stats_lines_are(q, 20));
  logq_free(q);
  close(p[0]);
  close(p[1]);
  buf_free(&want);
  buf_free(&got);
}

/* A reader that never reads: the pipe is full, the writer is stuck, the
 * queue fills, pushes drop and count without waiting, and logq_free still
 * returns, after its flush time (the rest is dropped, counted). */
static void test_stuck_reader(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  char line[1000];
  memset(line, 'x', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  nonblocking(p[1]); /* to fill it here; the queue writes through a description of its own */
  size_t filled = 0;
  while (write(p[1], line, sizeof line) == (ssize_t)sizeof line)
    filled += sizeof line;
  assert_int_equal(errno, EAGAIN);
  logq_t *q = logq_new(p[1], 8192);
  assert_non_null(q);
  int ok = 0, full = 0;
  uint64_t t0 = clock_mono_ns();
  for (int i = 0; i < 2000; i++) { /* 2 MB */
    int rc = logq_push(q, line, sizeof line);
    assert_true(rc == 0 || rc == OFF_EFULL);
    if (rc == 0)
      ok++;
    else
      full++;
  }
  assert_true(clock_mono_ns() - t0 < UINT64_C(5000) * 1000000u); /* never waited for the reader */
  assert_true(ok >= 8 && full > 0);
  logq_stats_t st;
  logq_stats(q, &st);
  assert_int_equal(st.lines, 0);
  assert_int_equal(st.dropped, (uint64_t)full);
  t0 = clock_mono_ns();
  logq_free(q);
  uint64_t took_ms = (clock_mono_ns() - t0) / 1000000u;
  assert_true(took_ms + 150 >= LOGQ_FLUSH_MS); /* it did try for its flush time ... */
  assert_true(took_ms < LOGQ_FLUSH_MS + 3000); /* ... and no longer */
  /* Nothing of ours got in: the pipe holds what filled it, whole lines. */
  nonblocking(p[0]);
  buf_t got = BUF_INIT;
  drain(p[0], &got);
  assert_int_equal(got.len, filled);
  for (size_t i = 0; i < got.len; i += sizeof line)
    assert_memory_equal(got.data + i, line, sizeof line);
  buf_free(&got);
  close(p[0]);
  close(p[1]);
}

/* A reader that reads late: the writer waits (EAGAIN, poll) and then
 * writes everything, in order, nothing dropped. */
static void test_slow_reader(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  char line[1000];
  memset(line, 'y', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  nonblocking(p[1]);
  size_t filled = 0;
  while (write(p[1], line, sizeof line) == (ssize_t)sizeof line)
    filled += sizeof line;
  logq_t *q = logq_new(p[1], LOGQ_MAX_PENDING_DEFAULT);
  assert_non_null(q);
  for (int i = 0; i < 200; i++)
    assert_int_equal(logq_push(q, line, sizeof line), 0);
  usleep(300 * 1000); /* the writer is stuck meanwhile (not a wait on a condition: nothing to observe) */
  expect_stats(q, 0, 0);
  nonblocking(p[0]);
  buf_t got = BUF_INIT;
  POLL(NULL, false, (drain(p[0], &got), got.len == filled + 200 * sizeof line));
  POLL(NULL, false, stats_lines_are(q, 200));
  expect_stats(q, 200, 0);
  logq_free(q);
  buf_free(&got);
  close(p[0]);
  close(p[1]);
}

/* The reader went away: writes fail with EPIPE (never SIGPIPE: the writer
 * blocks it), the lines are dropped and counted, and the queue goes on. */
static void test_reader_gone(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  close(p[0]);
  logq_t *q = logq_new(p[1], 4096);
  assert_non_null(q);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(logq_push(q, "gone\n", 5), 0);
    usleep(1000);
  }
  POLL(NULL, false, stats_dropped_are(q, 10));
  expect_stats(q, 0, 10);
  logq_drop(q);
  expect_stats(q, 0, 11);
  logq_free(q);
  close(p[1]);
}

static void test_file_and_socket(void **state) {
  (void)state;
  char path[] = "/tmp/logq_test_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  logq_t *q = logq_new(fd, 4096);
  assert_non_null(q);
  assert_int_equal(logq_push(q, "one\n", 4), 0);
  assert_int_equal(logq_push(q, "two\n", 4), 0);
  POLL(NULL, false, stats_lines_are(q, 2));
  logq_free(q);
  char back[16] = {0};
  assert_int_equal(pread(fd, back, sizeof back - 1, 0), 8);
  assert_string_equal(back, "one\ntwo\n");
  close(fd);

  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  nonblocking(sv[0]);
  q = logq_new(sv[1], 4096);
  assert_non_null(q);
  assert_int_equal(logq_push(q, "over a socket\n", 14), 0);
  buf_t got = BUF_INIT;
  POLL(NULL, false, (drain(sv[0], &got), got.len == 14));
  assert_memory_equal(got.data, "over a socket\n", 14);
  logq_free(q);
  buf_free(&got);
  close(sv[0]);
  close(sv[1]);
}

/* A line that can never fit is dropped; the empty queue takes the next. */
static void test_line_over_the_bound(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  nonblocking(p[0]);
  logq_t *q = logq_new(p[1], 64);
  assert_non_null(q);
  char big[65];
  memset(big, 'b', sizeof big);
  assert_int_equal(logq_push(q, big, sizeof big), OFF_EFULL);
  assert_int_equal(logq_push(q, "fits\n", 5), 0);
  buf_t got = BUF_INIT;
  POLL(NULL, false, (drain(p[0], &got), got.len == 5));
  expect_stats(q, 1, 1);
  logq_free(q);
  buf_free(&got);
  close(p[0]);
  close(p[1]);
}

#define NPUSHERS 4
#define NLINES 2000

static logq_t *shared_q;

static void *pusher(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < NLINES; i++) {
    char line[48];
    int n = snprintf(line, sizeof line, "t%d %d\n", id, i);
    assert_int_equal(logq_push(shared_q, line, (size_t)n), 0);
  }
  return NULL;
}

typedef struct reader {
  int fd;
  buf_t got;
  size_t want;
} reader_t;

static void *reader_main(void *arg) {
  reader_t *r = arg;
  uint64_t deadline = clock_mono_ns() + WAIT_NS;
  while (r->got.len < r->want && clock_mono_ns() < deadline) {
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    poll(&pfd, 1, 100);
    drain(r->fd, &r->got);
  }
  return NULL;
}

/* Several threads push at once (TSan checks the lock); a reader thread
 * keeps up. Every line arrives whole, each thread's in its order. */
static void test_threads(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  nonblocking(p[0]);
  shared_q = logq_new(p[1], LOGQ_MAX_PENDING_DEFAULT);
  assert_non_null(shared_q);
  size_t want = 0;
  for (int t = 0; t < NPUSHERS; t++)
    for (int i = 0; i < NLINES; i++)
      want += (size_t)snprintf(NULL, 0, "t%d %d\n", t, i);
  reader_t r = {.fd = p[0], .got = BUF_INIT, .want = want};
  pthread_t rd, th[NPUSHERS];
  assert_int_equal(pthread_create(&rd, NULL, reader_main, &r), 0);
  for (int t = 0; t < NPUSHERS; t++)
    assert_int_equal(pthread_create(&th[t], NULL, pusher, (void *)(intptr_t)t), 0);
  for (int t = 0; t < NPUSHERS; t++)
    pthread_join(th[t], NULL);
  pthread_join(rd, NULL);
  assert_int_equal(r.got.len, want);
  int next[NPUSHERS] = {0};
  char *save = NULL;
  for (char *l = strtok_r(r.got.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    int t, i;
    assert_int_equal(sscanf(l, "t%d %d", &t, &i), 2);
    assert_true(t >= 0 && t < NPUSHERS);
    assert_int_equal(i, next[t]);
    next[t]++;
  }
  for (int t = 0; t < NPUSHERS; t++)
    assert_int_equal(next[t], NLINES);
  POLL(NULL, false, stats_lines_are(shared_q, NPUSHERS * NLINES));
  logq_free(shared_q);
  buf_free(&r.got);
  close(p[0]);
  close(p[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipe_in_order),       cmocka_unit_test(test_long_lines),
      cmocka_unit_test(test_stuck_reader),        cmocka_unit_test(test_slow_reader),
      cmocka_unit_test(test_reader_gone),         cmocka_unit_test(test_file_and_socket),
      cmocka_unit_test(test_line_over_the_bound), cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
