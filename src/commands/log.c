/* commands/log: see log.h. The table is a short list (one entry per
 * running command: at most the pool's workers), searched linearly. */
#include "commands/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fault.h"

struct cmdlog {
  _Atomic unsigned refs;
  pthread_mutex_t mu; /* guards ring, total, done */
  char ring[CMDLOG_TAIL];
  uint64_t total; /* bytes written so far; ring[total % CMDLOG_TAIL] is the next */
  bool done;
  char job_id[64];
  cmdlog_t *next; /* the table (under table_mu) */
};

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static cmdlog_t *table;
static void (*notify_fn)(void *);
static void *notify_ctx;

void cmdlog_set_notify(void (*fn)(void *), void *ctx) {
  notify_fn = fn;
  notify_ctx = ctx;
}

static void notify(void) {
  if (notify_fn)
    notify_fn(notify_ctx);
}

cmdlog_t *cmdlog_open(const char *job_id) {
  cmdlog_t *l = FAULT_HIT(FAULT_ALLOC) ? NULL : calloc(1, sizeof *l);
  if (!l)
    return NULL;
  atomic_init(&l->refs, 1);
  pthread_mutex_init(&l->mu, NULL);
  strncpy(l->job_id, job_id ? job_id : "", sizeof l->job_id - 1);
  pthread_mutex_lock(&table_mu);
  l->next = table;
  table = l;
  pthread_mutex_unlock(&table_mu);
  return l;
}

void cmdlog_write(cmdlog_t *l, const void *data, size_t len) {
  const char *p = data;
  /* One critical section: a reader never sees a total whose bytes are not
   * in the ring yet. */
  pthread_mutex_lock(&l->mu);
  if (len > CMDLOG_TAIL) { /* only the last CMDLOG_TAIL bytes can stay */
    p += len - CMDLOG_TAIL;
    l->total += len - CMDLOG_TAIL;
    len = CMDLOG_TAIL;
  }
  size_t at = (size_t)(l->total % CMDLOG_TAIL), first = CMDLOG_TAIL - at < len ? CMDLOG_TAIL - at : len;
  memcpy(l->ring + at, p, first);
  memcpy(l->ring, p + first, len - first);
  l->total += len;
  pthread_mutex_unlock(&l->mu);
  notify();
}

void cmdlog_close(cmdlog_t *l) {
  pthread_mutex_lock(&table_mu);
  for (cmdlog_t **pp = &table; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  pthread_mutex_unlock(&table_mu);
  pthread_mutex_lock(&l->mu);
  l->done = true;
  pthread_mutex_unlock(&l->mu);
  notify();
  cmdlog_unref(l);
}

cmdlog_t *cmdlog_find(const char *job_id) {
  cmdlog_t *found = NULL;
  pthread_mutex_lock(&table_mu);
  for (cmdlog_t *l = table; l; l = l->next)
    if (strcmp(l->job_id, job_id) == 0) {
      found = cmdlog_ref(l);
      break;
    }
  pthread_mutex_unlock(&table_mu);
  return found;
}

cmdlog_t *cmdlog_ref(cmdlog_t *l) {
  atomic_fetch_add(&l->refs, 1);
  return l;
}

void cmdlog_unref(cmdlog_t *l) {
  if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
    return;
  pthread_mutex_destroy(&l->mu);
  free(l);
}

size_t cmdlog_read(cmdlog_t *l, uint64_t from, char *buf, size_t cap, uint64_t *start, uint64_t *total, bool *done) {
  pthread_mutex_lock(&l->mu);
  uint64_t oldest = l->total > CMDLOG_TAIL ? l->total - CMDLOG_TAIL : 0;
  if (from < oldest)
    from = oldest;
  if (from > l->total)
    from = l->total;
  size_t n = (size_t)(l->total - from);
  if (n > cap)
    n = cap;
  size_t at = (size_t)(from % CMDLOG_TAIL), first = CMDLOG_TAIL - at < n ? CMDLOG_TAIL - at : n;
  memcpy(buf, l->ring + at, first);
  memcpy(buf + first, l->ring, n - first);
  if (start)
    *start = from;
  if (total)
    *total = l->total;
  if (done)
    *done = l->done;
  pthread_mutex_unlock(&l->mu);
  return n;
}

int cmdlog_save(cmdlog_t *l, const char *path) {
  char *buf = malloc(CMDLOG_TAIL);
  if (!buf)
    return -1;
  size_t n = cmdlog_read(l, 0, buf, CMDLOG_TAIL, NULL, NULL, NULL);
  int fd =
      FAULT_HIT(FAULT_CMD_DISK) ? (errno = ENOSPC, -1) : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = fd < 0 ? -1 : 0;
  for (size_t off = 0; rc == 0 && off < n;) {
    ssize_t w = write(fd, buf + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      rc = -1;
    else
      off += (size_t)w;
  }
  if (fd >= 0 && close(fd) != 0)
    rc = -1;
  free(buf);
  return rc;
}
