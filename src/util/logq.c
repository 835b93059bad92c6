/* util/logq: see logq.h.
 *
 * DESIGN: two buffers of max_pending bytes, allocated up front. Pushers
 * append to `pending` under the mutex; a line that does not fit is dropped
 * and counted, so a pusher never waits for the descriptor. The writer swaps
 * `pending` with its own empty buffer under the mutex (a pointer swap) and
 * writes without holding it, so a pusher waits at most for a memcpy.
 *
 * The writer itself must never block for good either, or logq_free could
 * not stop it: a pipe or a terminal is reopened through /proc/self/fd with
 * O_NONBLOCK (a new open file description: the flags of the one stderr
 * shares with our parent stay as they are), a socket is written with
 * MSG_DONTWAIT, and EAGAIN means poll, 100 ms at a time, so a stop is
 * noticed even while a reader is stuck: from logq_free on the writer has
 * LOGQ_FLUSH_MS, then drops what is left. A regular file is written as it
 * is (it does not fill up; it fails). Should the reopen fail, the writer
 * polls before each blocking write, which cannot block while it is the
 * descriptor's only writer.
 *
 * Writes are cut into pieces of at most PIPE_BUF bytes that end at a line's
 * end where they can: a write of at most PIPE_BUF bytes to a pipe is atomic
 * (all or EAGAIN), so a line another writer of the same pipe prints
 * (util/log.c on stderr) never lands inside one of ours. A write that fails
 * (EPIPE, ENOSPC, EBADF) drops the rest of its batch, counted, and the next
 * batch tries again. */
#include "util/logq.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

typedef enum {
  LOGQ_W_PLAIN,    /* a regular file (or a reopen failed): poll, then write */
  LOGQ_W_NONBLOCK, /* our own O_NONBLOCK description of a pipe or terminal (owned) */
  LOGQ_W_SOCKET,   /* send(MSG_DONTWAIT) */
} logq_wmode_t;

struct logq {
  int fd; /* what the writer writes to: the caller's, or our reopened one */
  logq_wmode_t wmode;
  size_t max;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  buf_t pending;                /* lines waiting: under mu */
  buf_t writing;                /* the writer's batch: writer only (swapped under mu) */
  bool writer_waiting;          /* under mu: the writer sleeps on cv */
  bool stopping;                /* under mu */
  _Atomic uint64_t deadline_ns; /* 0 until logq_free: then when to give up */
  _Atomic uint64_t lines, dropped;
};

static uint64_t count_lines(const char *p, size_t n) {
  uint64_t k = 0;
  for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
    k++;
  return k;
}

/* The next piece to write: at most PIPE_BUF bytes, ending after a '\n'
 * unless one line is longer than that (it goes in PIPE_BUF pieces). */
static size_t piece_len(const char *p, size_t len) {
  if (len <= PIPE_BUF)
    return len;
  const char *nl = memrchr(p, '\n', PIPE_BUF);
  return nl ? (size_t)(nl - p) + 1 : PIPE_BUF;
}

/* Waits until the descriptor takes bytes. False when it never will (an
 * error, a closed reader) or the stop deadline passed. */
static bool wait_writable(logq_t *q) {
  for (;;) {
    uint64_t dl = atomic_load(&q->deadline_ns);
    if (dl && clock_mono_ns() > dl)
      return false;
    struct pollfd pfd = {.fd = q->fd, .events = POLLOUT};
    int n = poll(&pfd, 1, 100);
    if (n > 0)
      return !(pfd.revents & (POLLERR | POLLNVAL));
    if (n < 0 && errno != EINTR)
      return false;
  }
}

static ssize_t put(logq_t *q, const char *p, size_t n) {
  if (q->wmode == LOGQ_W_SOCKET)
    return send(q->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  return write(q->fd, p, n);
}

static void write_batch(logq_t *q, const char *p, size_t len) {
  while (len > 0) {
    size_t n = piece_len(p, len);
    if (q->wmode == LOGQ_W_PLAIN && !wait_writable(q))
      break;
    ssize_t w = put(q, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN && wait_writable(q)) /* EAGAIN: the reader is behind */
        continue;
      break;
    }
    atomic_fetch_add(&q->lines, count_lines(p, (size_t)w));
    p += w;
    len -= (size_t)w;
  }
  if (len > 0) /* a line cut by a partial write counts as dropped: its '\n' is here */
    atomic_fetch_add(&q->dropped, count_lines(p, len));
}

static void *writer_main(void *arg) {
  logq_t *q = arg;
  /* A reader that went away is EPIPE here, never a SIGPIPE for the
   * process (a pipe's SIGPIPE goes to the writing thread). */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->pending.len == 0 && !q->stopping) {
      q->writer_waiting = true;
      pthread_cond_wait(&q->cv, &q->mu);
    }
    q->writer_waiting = false;
    if (q->pending.len == 0)
      break; /* stopping, and everything is written */
    buf_t t = q->pending;
    q->pending = q->writing;
    q->writing = t;
    pthread_mutex_unlock(&q->mu);
    write_batch(q, q->writing.data, q->writing.len);
    buf_reset(&q->writing);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

/* How the writer writes to `fd` (see DESIGN); sets q->fd and q->wmode. */
static void choose_wmode(logq_t *q, int fd) {
  q->fd = fd;
  q->wmode = LOGQ_W_PLAIN;
  struct stat st;
  if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode))
    return;
  if (S_ISSOCK(st.st_mode)) {
    q->wmode = LOGQ_W_SOCKET;
    return;
  }
  if ((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
    return;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int own = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (own >= 0) {
    q->fd = own;
    q->wmode = LOGQ_W_NONBLOCK;
  }
}

logq_t *logq_new(int fd, size_t max_pending) {
  logq_t *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  choose_wmode(q, fd);
  q->max = max_pending;
  if (buf_reserve(&q->pending, max_pending) != 0 || buf_reserve(&q->writing, max_pending) != 0)
    goto fail_bufs;
  buf_reset(&q->pending);
  buf_reset(&q->writing);
  if (pthread_mutex_init(&q->mu, NULL) != 0)
    goto fail_bufs;
  if (pthread_cond_init(&q->cv, NULL) != 0)
    goto fail_mutex;
  if (pthread_create(&q->thread, NULL, writer_main, q) != 0)
    goto fail_cond;
  return q;

fail_cond:
  pthread_cond_destroy(&q->cv);
fail_mutex:
  pthread_mutex_destroy(&q->mu);
fail_bufs:
  buf_free(&q->pending);
  buf_free(&q->writing);
  if (q->wmode == LOGQ_W_NONBLOCK)
    close(q->fd);
  free(q);
  return NULL;
}

int logq_push(logq_t *q, const char *line, size_t len) {
  pthread_mutex_lock(&q->mu);
  if (len > q->max - q->pending.len) {
    pthread_mutex_unlock(&q->mu);
    atomic_fetch_add(&q->dropped, 1);
    return OFF_EFULL;
  }
  memcpy(q->pending.data + q->pending.len, line, len); /* room reserved at logq_new */
  q->pending.len += len;
  q->pending.data[q->pending.len] = '\0';
  bool wake = q->writer_waiting;
  q->writer_waiting = false; /* one wake-up per sleep, however many lines come */
  pthread_mutex_unlock(&q->mu);
  if (wake)
    pthread_cond_signal(&q->cv);
  return 0;
}

void logq_drop(logq_t *q) { atomic_fetch_add(&q->dropped, 1); }

void logq_stats(const logq_t *q, logq_stats_t *out) {
  out->lines = atomic_load(&q->lines);
  out->dropped = atomic_load(&q->dropped);
}

void logq_free(logq_t *q) {
  if (!q)
    return;
  atomic_store(&q->deadline_ns, clock_mono_ns() + (uint64_t)LOGQ_FLUSH_MS * 1000000u);
  pthread_mutex_lock(&q->mu);
  q->stopping = true;
  pthread_mutex_unlock(&q->mu);
  pthread_cond_signal(&q->cv);
  pthread_join(q->thread, NULL);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  buf_free(&q->pending);
  buf_free(&q->writing);
  if (q->wmode == LOGQ_W_NONBLOCK)
    close(q->fd);
  free(q);
}
