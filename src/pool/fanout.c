/* pool/fanout: pool_parallel (offload/pool.h), fan-out and fan-in inside
 * one running item.
 *
 * On a pool's worker thread: the caller publishes a `help` (the chunks and
 * a shared cursor) on its pool's list and wakes the idle workers; every
 * idle worker (one with no queued item to take: items come first) joins,
 * and each participant claims chunk after chunk with one atomic
 * fetch-add until none is left. The caller waits, under the queue lock,
 * until no helper is inside, so the help (on the caller's stack) is never
 * touched after it returns.
 *
 * Anywhere else (a worker process, the loop in inline mode, a test): local
 * helper threads, one per online core but the caller's.
 *
 * Lock rules: `mu` (the pool's queue lock) guards the help list and each
 * help's `helpers` count; the cursor is atomic. No chunk runs under a lock. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool/pool_int.h"

static _Thread_local pool_t *tls_pool; /* the pool whose worker thread this is */

void pool__set_current(pool_t *p) { tls_pool = p; }

/* Claims and runs chunks until none is left (or `stop` says so, which also
 * skips the rest for everyone). Returns how many this thread ran. */
static size_t run_chunks(pool_help_t *h) {
  size_t ran = 0;
  for (;;) {
    if (h->stop && h->stop(h->stop_ctx)) {
      atomic_store(&h->next, h->n); /* nobody claims more */
      atomic_store(&h->stopped, true);
      break;
    }
    size_t i = atomic_fetch_add(&h->next, 1);
    if (i >= h->n)
      break;
    h->fn(h->ctx, i);
    ran++;
  }
  atomic_fetch_add(&h->ran, ran);
  return ran;
}

static void unlink_help(pool_t *p, pool_help_t *h) {
  for (pool_help_t **pp = &p->helps; *pp; pp = &(*pp)->next_help)
    if (*pp == h) {
      *pp = h->next_help;
      h->next_help = NULL;
      return;
    }
}

/* A worker thread with nothing queued: helps the oldest help. Caller holds
 * `mu` (and still does on return). */
void pool__help_locked(pool_t *p) {
  pool_help_t *h = p->helps;
  h->helpers++;
  pthread_mutex_unlock(&p->mu);
  run_chunks(h);
  pthread_mutex_lock(&p->mu);
  if (atomic_load(&h->next) >= h->n)
    unlink_help(p, h); /* every chunk is claimed: nobody else need join */
  if (--h->helpers == 0)
    pthread_cond_broadcast(&h->done);
}

/* ---- off a pool: local threads ---- */

static void *local_helper(void *arg) {
  run_chunks(arg);
  return NULL;
}

static size_t parallel_local(pool_help_t *h) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  size_t extra = cores > 1 ? (size_t)cores - 1 : 0;
  if (extra > h->n - 1)
    extra = h->n - 1;
  pthread_t *ts = extra ? calloc(extra, sizeof *ts) : NULL;
  size_t started = 0;
  for (size_t k = 0; ts && k < extra; k++)
    if (pthread_create(&ts[k], NULL, local_helper, h) == 0)
      started++;
    else
      break;
  run_chunks(h);
  for (size_t k = 0; k < started; k++)
    pthread_join(ts[k], NULL);
  free(ts);
  return atomic_load(&h->ran);
}

size_t pool_parallel(size_t n, pool_chunk_fn fn, void *ctx, bool (*stop)(void *), void *stop_ctx) {
  if (n == 0)
    return 0;
  pool_help_t h = {.fn = fn, .ctx = ctx, .n = n, .stop = stop, .stop_ctx = stop_ctx};
  atomic_init(&h.next, 0);
  atomic_init(&h.ran, 0);
  atomic_init(&h.stopped, false);
  pool_t *p = tls_pool;
  if (!p || n == 1)
    return n == 1 ? run_chunks(&h) : parallel_local(&h);
  pthread_cond_init(&h.done, NULL);
  pthread_mutex_lock(&p->mu);
  pool_help_t **tail = &p->helps;
  while (*tail)
    tail = &(*tail)->next_help;
  *tail = &h;
  pthread_cond_broadcast(&p->cond); /* idle workers wake and join */
  pthread_mutex_unlock(&p->mu);
  run_chunks(&h);
  pthread_mutex_lock(&p->mu);
  unlink_help(p, &h);
  while (h.helpers > 0)
    pthread_cond_wait(&h.done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_cond_destroy(&h.done);
  return atomic_load(&h.ran);
}
