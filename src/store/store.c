/* store: the loop side of the store and its thread. See store.h.
 *
 * DESIGN: writes made during a loop turn collect in `pend` (loop only). A
 * uv_check handle, which runs once per turn after I/O, hands the whole list
 * to the store thread (one mutex hold, one signal). The store thread takes
 * everything handed over since it last looked, applies it as one
 * transaction (group commit: under load a batch holds many turns' writes),
 * and appends the batch to the done list with one uv_async_send. The loop
 * takes the whole done list and runs each write's callback in order (one
 * producer and one consumer, each holding the lock for O(1): a plain FIFO
 * keeps the order the callbacks must run in). The memory backend has no thread: its
 * writes "commit" when the turn ends, so callbacks never run inside
 * store_write for either backend.
 *
 * Lock rules: `mu` guards the hand-over list, the done list, `stopping`
 * and `commits`, held for O(1) by either side. The store thread holds no lock while it talks to SQLite. */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store/pg.h"
#include "store/sqlite.h"
#include "util/clock.h"
#include "util/log.h"

struct store {
  store_config_t cfg;
  uv_loop_t *loop;
  uv_check_t turn;
  uv_async_t async;
  store_write_t *pend_head, *pend_tail; /* this turn's writes; loop only */

  sq_t *sq; /* SQLite: the store thread's once it runs */
  pg_t *pg; /* PostgreSQL: the same */
  int wake_fd; /* PostgreSQL: an eventfd the store thread polls with its socket (-1 = none) */
  store_event_t *ev_head, *ev_tail; /* told by the store thread, not yet to the loop; guarded by mu */
  bool ok;                          /* loop only: the database answers (PostgreSQL: UP/DOWN) */
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  store_write_t *q_head, *q_tail; /* handed over, not yet taken; guarded by mu */
  bool stopping;                  /* guarded by mu */
  store_write_t *d_head, *d_tail; /* applied, callbacks not yet run; guarded by mu */
  uint64_t commits;               /* guarded by mu */
  uint64_t expired;               /* guarded by mu */

  store_stats_t stats; /* loop only */
  int open_handles;    /* at store_close: handles whose close is pending */
};

void store_job_fini(store_job_t *j) {
  free(j->task);
  free(j->params);
  free(j->result);
  free(j->err_code);
  free(j->err_message);
  free(j->idem_key);
  for (size_t i = 0; i < j->nfiles; i++) {
    free(j->files[i].name);
    free(j->files[i].content_type);
  }
  free(j->files);
  free(j->input_type);
  free(j->owner);
  free(j->pin);
  if (j->input_fd)
    close(j->input_fd - 1);
  memset(j, 0, sizeof *j);
}

void store_nodes_free(store_node_t *nodes, size_t n) {
  for (size_t i = 0; nodes && i < n; i++) {
    free(nodes[i].id);
    free(nodes[i].url);
  }
  free(nodes);
}

void store_rows_free(store_job_t *rows, size_t n) {
  for (size_t i = 0; rows && i < n; i++)
    store_job_fini(&rows[i]);
  free(rows);
}

/* ---- the store thread ---- */

#define EXPIRE_EVERY_MS 1000
#define EXPIRE_BATCH 500

/* An applied batch goes to the loop's done list (its callbacks run there). */
static void hand_back(store_t *s, store_write_t *batch, store_write_t *last, int rc) {
  pthread_mutex_lock(&s->mu);
  if (s->d_tail)
    s->d_tail->_next = batch;
  else
    s->d_head = batch;
  s->d_tail = last;
  s->commits += rc == 0;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->async);
}

/* While idle: retention, a batch at a time, so a write never waits behind
 * a long delete. */
static int expire_some(store_t *s) {
  if (!s->cfg.retention_ms && !s->cfg.max_finished)
    return 0;
  int64_t cutoff = s->cfg.retention_ms ? clock_wall_ms() - s->cfg.retention_ms : 0;
  int n = sq_expire(s->sq, cutoff, s->cfg.max_finished, EXPIRE_BATCH);
  if (n > 0) {
    pthread_mutex_lock(&s->mu);
    s->expired += (uint64_t)n;
    pthread_mutex_unlock(&s->mu);
  }
  return n;
}

static void *store_main(void *arg) {
  store_t *s = arg;
  int64_t last_expire = clock_mono_ms();
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->q_head && !s->stopping) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += EXPIRE_EVERY_MS / 1000;
      if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT && !s->q_head && !s->stopping) {
        pthread_mutex_unlock(&s->mu);
        last_expire = clock_mono_ms();
        while (expire_some(s) == EXPIRE_BATCH) {
          pthread_mutex_lock(&s->mu);
          bool busy = s->q_head || s->stopping;
          pthread_mutex_unlock(&s->mu);
          if (busy)
            break; /* writes first */
        }
        pthread_mutex_lock(&s->mu);
      }
    }
    store_write_t *batch = s->q_head, *last = s->q_tail;
    s->q_head = s->q_tail = NULL;
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (batch) {
      int rc = sq_apply(s->sq, batch);
      if (rc != 0)
        log_warn("store: a transaction failed (disk full or I/O error); its writes were not kept");
      hand_back(s, batch, last, rc);
      if (clock_mono_ms() - last_expire >= EXPIRE_EVERY_MS) {
        /* Busy for a second: one batch of expiry between commits. */
        last_expire = clock_mono_ms();
        expire_some(s);
      }
    }
    if (stop && !batch)
      break;
  }
  return NULL;
}

/* PostgreSQL's store thread: batches as they come, and between them the
 * connection's own work (pg_service: reconnect, heartbeat, reaper,
 * notifications), waiting on the socket and the wake-up eventfd. */
static void pg_post(store_event_t *ev, void *data) {
  store_t *s = data;
  ev->_next = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->ev_tail)
    s->ev_tail->_next = ev;
  else
    s->ev_head = ev;
  s->ev_tail = ev;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->async);
}

static void *pg_main(void *arg) {
  store_t *s = arg;
  int64_t last_expire = clock_mono_ms();
  for (;;) {
    pthread_mutex_lock(&s->mu);
    store_write_t *batch = s->q_head, *last = s->q_tail;
    s->q_head = s->q_tail = NULL;
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (batch) {
      hand_back(s, batch, last, pg_apply(s->pg, batch));
    }
    if (stop && !batch)
      break;
    if (s->cfg.retention_ms && clock_mono_ms() - last_expire >= EXPIRE_EVERY_MS) {
      last_expire = clock_mono_ms();
      int n = pg_expire(s->pg, clock_wall_ms() - s->cfg.retention_ms, EXPIRE_BATCH);
      if (n > 0) {
        pthread_mutex_lock(&s->mu);
        s->expired += (uint64_t)n;
        pthread_mutex_unlock(&s->mu);
      }
    }
    if (!batch)
      pg_service(s->pg, s->wake_fd);
  }
  return NULL;
}

/* ---- the loop side ---- */

/* PostgreSQL: wakes the store thread from its poll (the eventfd). */
static void wake(store_t *s) {
  uint64_t one = 1;
  if (s->wake_fd >= 0 && write(s->wake_fd, &one, sizeof one) < 0)
    log_debug("store: wake-up write failed"); /* the counter is full: the thread is awake anyway */
}

/* Runs the callbacks of a finished list, in the order written. */
static void run_callbacks(store_t *s, store_write_t *list) {
  while (list) {
    store_write_t *next = list->_next;
    list->_next = NULL;
    if (list->kind == STORE_R_FETCH)
      s->stats.reads++;
    else
      s->stats.writes++;
    if (list->_rc == OFF_ESTORE)
      s->stats.failures++;
    else if (list->_rc == OFF_EFENCED)
      s->stats.fenced++;
    if (list->kind == STORE_R_CLAIM && list->_rc == 0)
      s->stats.claimed += list->nout;
    if (list->cb)
      list->cb(list, list->_rc, list->data);
    list = next;
  }
}

static void on_async(uv_async_t *h) {
  store_t *s = h->data;
  pthread_mutex_lock(&s->mu);
  store_write_t *list = s->d_head;
  s->d_head = s->d_tail = NULL;
  s->stats.commits = s->commits;
  s->stats.expired = s->expired;
  store_event_t *evs = s->ev_head;
  s->ev_head = s->ev_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  /* Events first: a claim's callback may want to know the store is up. */
  while (evs) {
    store_event_t *ev = evs;
    evs = ev->_next;
    if (ev->kind == STORE_EV_UP || ev->kind == STORE_EV_DOWN)
      s->ok = ev->kind == STORE_EV_UP;
    if (s->cfg.on_event)
      s->cfg.on_event(ev, s->cfg.event_data);
    store_nodes_free(ev->nodes, ev->nnodes);
    free(ev->payload);
    free(ev);
  }
  run_callbacks(s, list);
}

static void on_turn(uv_check_t *h) {
  store_t *s = h->data;
  if (!s->pend_head)
    return;
  store_write_t *list = s->pend_head;
  s->pend_head = s->pend_tail = NULL;
  if (s->cfg.kind == STORE_MEMORY) {
    for (store_write_t *w = list; w; w = w->_next)
      w->_rc = 0;
    s->stats.commits++;
    run_callbacks(s, list);
    return;
  }
  pthread_mutex_lock(&s->mu);
  if (s->q_tail)
    s->q_tail->_next = list;
  else
    s->q_head = list;
  while (list->_next)
    list = list->_next;
  s->q_tail = list;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->mu);
  wake(s);
}

/* ---- life ---- */

store_t *store_open(uv_loop_t *loop, const store_config_t *cfg, char *err, size_t errsz) {
  store_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errsz, "out of memory");
    return NULL;
  }
  s->cfg = *cfg;
  s->loop = loop;
  s->wake_fd = -1;
  s->ok = true;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cond, NULL);
  if (cfg->kind == STORE_POSTGRES) {
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->pg = s->wake_fd >= 0 ? pg_open(cfg, pg_post, s, err, errsz) : NULL;
    if (!s->pg) {
      if (s->wake_fd < 0)
        snprintf(err, errsz, "cannot create an eventfd");
      else
        close(s->wake_fd);
      store_event_t *ev = s->ev_head; /* told while opening: nobody listens yet */
      while (ev) {
        store_event_t *next = ev->_next;
        store_nodes_free(ev->nodes, ev->nnodes);
        free(ev->payload);
        free(ev);
        ev = next;
      }
      pthread_cond_destroy(&s->cond);
      pthread_mutex_destroy(&s->mu);
      free(s);
      return NULL;
    }
  }
  if (cfg->kind == STORE_SQLITE) {
    s->sq = sq_open(cfg->data_dir, cfg->strict, err, errsz);
    if (!s->sq) {
      pthread_cond_destroy(&s->cond);
      pthread_mutex_destroy(&s->mu);
      free(s);
      return NULL;
    }
  }
  uv_check_init(loop, &s->turn);
  s->turn.data = s;
  uv_check_start(&s->turn, on_turn); /* both keep the loop alive until store_close */
  uv_async_init(loop, &s->async, on_async);
  s->async.data = s;
  return s;
}

int store_load(store_t *s, void (*row)(const store_job_t *j, void *data), void *data) {
  assert(!s->thread_started);
  if (s->cfg.kind == STORE_MEMORY)
    return 0;
  if (s->cfg.kind == STORE_POSTGRES) { /* nothing to load: every node reads the shared rows when asked */
    if (pthread_create(&s->thread, NULL, pg_main, s) == 0)
      s->thread_started = true;
    return s->thread_started ? 0 : OFF_ESTORE;
  }
  int rc = sq_load(s->sq, row, data);
  if (rc == 0 && pthread_create(&s->thread, NULL, store_main, s) == 0)
    s->thread_started = true;
  return rc == 0 && s->thread_started ? 0 : OFF_ESTORE;
}

void store_write(store_t *s, store_write_t *w) {
  /* Writes made while store_load restores jobs wait in `pend` until the
   * first loop turn, when the store thread runs. */
  assert(w->kind == STORE_R_FETCH || w->kind == STORE_W_CANCEL ? w->ids && w->rows
         : w->kind == STORE_R_CLAIM || w->kind == STORE_R_LIST ? w->max > 0
                                                                : w->job != NULL);
  assert(s->cfg.kind == STORE_POSTGRES || w->kind <= STORE_R_FETCH);
  w->_next = NULL;
  w->_rc = 0;
  if (s->pend_tail)
    s->pend_tail->_next = w;
  else
    s->pend_head = w;
  s->pend_tail = w;
}

static void on_closed(uv_handle_t *h) {
  store_t *s = h->data;
  if (--s->open_handles > 0)
    return; /* libuv runs close callbacks in no promised order */
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

void store_close(store_t *s) {
  if (s->cfg.kind != STORE_MEMORY && !s->thread_started) {
    /* Never got to run (a failed start): what was written is not kept. */
    store_write_t *list = s->pend_head;
    s->pend_head = s->pend_tail = NULL;
    for (store_write_t *w = list; w; w = w->_next)
      w->_rc = OFF_ESTOPPED;
    run_callbacks(s, list);
  }
  on_turn(&s->turn); /* hand over what this turn wrote */
  if (s->thread_started) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    wake(s);
    pthread_join(s->thread, NULL);
    on_async(&s->async); /* the last callbacks */
  }
  sq_close(s->sq);
  s->sq = NULL;
  pg_close(s->pg);
  s->pg = NULL;
  if (s->wake_fd >= 0)
    close(s->wake_fd);
  s->wake_fd = -1;
  s->open_handles = 2;
  uv_close((uv_handle_t *)&s->turn, on_closed);
  uv_close((uv_handle_t *)&s->async, on_closed);
}

const store_stats_t *store_stats(const store_t *s) { return &s->stats; }
store_kind_t store_kind(const store_t *s) { return s->cfg.kind; }
const char *store_data_dir(const store_t *s) { return s->cfg.kind == STORE_SQLITE ? s->cfg.data_dir : NULL; }
bool store_ok(const store_t *s) { return s->ok; }

void store_set_load(store_t *s, int workers_total, int workers_busy, int streams) {
  if (!s->pg)
    return;
  pg_set_load(s->pg, workers_total, workers_busy, streams);
  if (streams > 0)
    wake(s); /* a first stream is told at once (pg_set_load asked for a heartbeat) */
}

void store_roundtrip(store_t *s, hist_t *out) {
  if (s->pg)
    pg_roundtrip(s->pg, out);
  else
    memset(out, 0, sizeof *out);
}
