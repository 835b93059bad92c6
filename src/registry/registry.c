/* registry: jobs by id, in creation, queue and finish order. See registry.h.
 *
 * DESIGN: four intrusive structures hang off each job: a hash chain (by id),
 * the creation-ordered list (for /jobs and ids), the loop's view of the queue
 * (for queuePosition), and the finished list (for eviction). The queue view
 * is pruned lazily: workers pop in FIFO order, so jobs that started sit at its
 * front and are dropped the next time anyone walks it. */
#include "registry/registry.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

static const double run_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800};

struct registry {
  registry_config_t cfg;
  pool_t *pool;
  uv_timer_t evict_timer;

  job_t **buckets;
  size_t nbuckets; /* power of two */
  size_t njobs;

  job_t *newest, *oldest; /* creation order */
  job_t *q_head, *q_tail; /* queue view */
  job_t *f_head, *f_tail; /* finished, oldest first */
  size_t nqview;          /* jobs in the queue view */
  uint64_t next_seq;      /* creation order */
  /* Per status (processing and the final ones), newest created first, so a
   * filtered /jobs is O(limit). Queued jobs are found through the queue view. */
  job_t *s_newest[JOB_NSTATUS], *s_oldest[JOB_NSTATUS];
  size_t nfinished;
  size_t in_flight;

  bool draining;
  void (*idle_cb)(void *);
  void *idle_data;

  registry_stats_t stats;
};

const char *job_status_name(job_status_t s) {
  static const char *const names[] = {"queued", "processing", "complete", "failed", "canceled"};
  return s < JOB_NSTATUS ? names[s] : "unknown";
}

/* ---- ids and the hash ---- */

static void new_id(char out[JOB_ID_LEN + 1]) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t raw[17] = {0};
  size_t got = 0;
  while (got < 16) {
    ssize_t n = getrandom(raw + got, 16 - got, 0);
    if (n > 0)
      got += (size_t)n;
    else
      assert(n >= 0); /* EINTR retries; any other failure means no entropy at all */
  }
  /* 128 bits -> 22 base64url characters (6 bits each, the last one 2 bits). */
  for (int i = 0; i < JOB_ID_LEN; i++) {
    int bit = i * 6;
    unsigned v = ((unsigned)raw[bit / 8] << 8 | raw[bit / 8 + 1]) >> (10 - bit % 8);
    out[i] = alphabet[v & 63];
  }
  out[JOB_ID_LEN] = '\0';
}

static size_t id_hash(const char *id) {
  uint64_t h = 1469598103934665603u;
  for (const char *p = id; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211u;
  return (size_t)h;
}

static int hash_grow(registry_t *r) {
  size_t n = r->nbuckets ? r->nbuckets * 2 : 1024;
  job_t **b = calloc(n, sizeof *b);
  if (!b)
    return OFF_ENOMEM;
  for (size_t i = 0; i < r->nbuckets; i++) {
    job_t *j = r->buckets[i];
    while (j) {
      job_t *next = j->_hnext;
      size_t k = id_hash(j->id) & (n - 1);
      j->_hnext = b[k];
      b[k] = j;
      j = next;
    }
  }
  free(r->buckets);
  r->buckets = b;
  r->nbuckets = n;
  return 0;
}

static job_t *hash_find(const registry_t *r, const char *id) {
  if (strlen(id) != JOB_ID_LEN)
    return NULL;
  for (job_t *j = r->buckets[id_hash(id) & (r->nbuckets - 1)]; j; j = j->_hnext)
    if (memcmp(j->id, id, JOB_ID_LEN) == 0)
      return j;
  return NULL;
}

static void hash_remove(registry_t *r, job_t *job) {
  job_t **pp = &r->buckets[id_hash(job->id) & (r->nbuckets - 1)];
  while (*pp != job)
    pp = &(*pp)->_hnext;
  *pp = job->_hnext;
}

/* ---- lists ---- */

static void queue_unlink(registry_t *r, job_t *j) {
  if (!j->_in_queue_list)
    return;
  DLIST_UNLINK(r->q_head, r->q_tail, j, _q_prev, _q_next);
  j->_in_queue_list = false;
  r->nqview--;
}

/* Files `j` in its status list by creation order. Jobs mostly change status
 * in creation order, so the walk from the newest end is short. */
static void status_link(registry_t *r, job_t *j) {
  job_status_t st = j->status;
  job_t *newer = NULL, *older = r->s_newest[st];
  while (older && older->_seq > j->_seq) {
    newer = older;
    older = older->_s_next;
  }
  j->_s_prev = newer;
  j->_s_next = older;
  if (newer)
    newer->_s_next = j;
  else
    r->s_newest[st] = j;
  if (older)
    older->_s_prev = j;
  else
    r->s_oldest[st] = j;
}

static void status_unlink(registry_t *r, job_t *j) {
  if (j->status == JOB_QUEUED)
    return; /* queued jobs live in the queue view instead */
  DLIST_UNLINK(r->s_newest[j->status], r->s_oldest[j->status], j, _s_prev, _s_next);
}

static void job_free(job_t *j) {
  assert(!j->_item && !j->_watches);
  json_decref(j->params);
  json_decref(j->result);
  free(j->err_code);
  free(j->err_message);
  free(j->json_cache);
  free(j);
}

static void evict(registry_t *r, job_t *j) {
  assert(job_is_final(j));
  hash_remove(r, j);
  DLIST_UNLINK(r->newest, r->oldest, j, _all_prev, _all_next);
  DLIST_UNLINK(r->f_head, r->f_tail, j, _f_prev, _f_next);
  status_unlink(r, j);
  r->njobs--;
  r->nfinished--;
  job_free(j);
}

static void evict_expired(registry_t *r) {
  uint64_t now = (uint64_t)clock_mono_ms();
  while (r->f_head && !r->f_head->_item && r->f_head->_finished_mono_ms + (uint64_t)r->cfg.retention_ms <= now)
    evict(r, r->f_head);
}

static void on_evict_timer(uv_timer_t *t) { evict_expired(t->data); }

/* ---- life of a job ---- */

static void set_error(job_t *j, const char *code, const char *message) {
  free(j->err_code);
  free(j->err_message);
  j->err_code = strdup(code);
  j->err_message = strdup(message);
}

/* Makes `j` final in the record: status, times, the finished list, stats.
 * Fires nothing and frees nothing, so it is safe anywhere, even while a
 * caller walks the job lists (registry_refresh uses it). */
static void mark_final(registry_t *r, job_t *j, job_status_t status) {
  assert(!job_is_final(j) && status >= JOB_COMPLETE);
  queue_unlink(r, j);
  status_unlink(r, j);
  j->status = status;
  status_link(r, j);
  j->finished_at = clock_wall_ms();
  if (status == JOB_COMPLETE)
    j->progress = 1.0;
  j->_finished_mono_ms = (uint64_t)clock_mono_ms();
  DLIST_APPEND(r->f_head, r->f_tail, j, _f_prev, _f_next);
  r->nfinished++;

  size_t idx = (size_t)(j->def - r->cfg.catalog->defs);
  r->stats.finals[idx][status]++;
  if (j->started_at)
    hist_observe(&r->stats.run_seconds, (double)(j->finished_at - j->started_at) / 1000.0);
}

/* Drops the oldest finished jobs beyond --max-finished. A job whose item the
 * pool still holds (recorded early by registry_refresh) is never freed; the
 * eviction resumes at its done callback. */
static void evict_over_limit(registry_t *r) {
  while (r->nfinished > r->cfg.max_finished && !r->f_head->_item)
    evict(r, r->f_head);
}

/* The side effects of a final job: wake its watchers, evict old jobs. */
static void notify_final(registry_t *r, job_t *j) {
  while (j->_watches) {
    job_watch_t *w = j->_watches;
    registry_unwatch(j, w);
    w->cb(j, w);
  }
  evict_over_limit(r);
}

static void finalize(registry_t *r, job_t *j, job_status_t status) {
  mark_final(r, j, status);
  notify_final(r, j);
}

/* The error message of each way a job is canceled. */
static const char msg_by_client[] = "The job was canceled by a client request.";
static const char msg_shutdown_queued[] = "The server shut down before the job could run.";
static const char msg_shutdown_running[] = "The server shut down before the job finished.";

/* Takes a queued job's item back from the pool and makes the job canceled
 * (its watches fire). Returns false, changing nothing, when a worker already
 * has it or the pool is stopping. The caller checks maybe_idle. */
static bool cancel_queued(registry_t *r, job_t *j, bool by_shutdown) {
  if (pool_remove(r->pool, &j->_item->work) != 0)
    return false;
  item_free(j->_item);
  j->_item = NULL;
  r->in_flight--;
  if (by_shutdown)
    j->canceled_by_shutdown = true;
  set_error(j, "canceled", by_shutdown ? msg_shutdown_queued : msg_by_client);
  finalize(r, j, JOB_CANCELED);
  return true;
}

/* Records what the worker left in `it` (its run is over: state DONE). */
static void record_outcome(registry_t *r, job_t *j, item_t *it) {
  if (!j->started_at)
    j->started_at = pool_work_started_ms(&it->work);
  double p = item_progress(it);
  if (p > j->progress)
    j->progress = p;
  switch (item_outcome(it)) {
  case ITEM_OUT_COMPLETE:
    j->result = item_result_json(it);
    mark_final(r, j, JOB_COMPLETE);
    break;
  case ITEM_OUT_FAILED:
    set_error(j, it->result.err_code, it->result.err_message ? it->result.err_message : "The task failed.");
    mark_final(r, j, JOB_FAILED);
    break;
  case ITEM_OUT_TIMEOUT: {
    char msg[128];
    snprintf(msg, sizeof msg, "The job ran longer than its timeout of %lld ms.", (long long)it->timeout_ms);
    set_error(j, "timeout", msg);
    mark_final(r, j, JOB_FAILED);
    break;
  }
  case ITEM_OUT_CANCELED:
    set_error(j, "canceled", j->canceled_by_shutdown ? msg_shutdown_running : msg_by_client);
    mark_final(r, j, JOB_CANCELED);
    break;
  }
}

void registry_refresh(registry_t *r, job_t *j) {
  if (!j->_item || job_is_final(j))
    return;
  pool_work_state_t state = pool_work_state(&j->_item->work);
  if (state == POOL_WORK_DONE) {
    /* The worker is finished (and may have moved on to the next job): show
     * the outcome now rather than when the loop gets to the done list, so no
     * reader sees more jobs processing than there are workers. The worker's
     * seq_cst store of DONE, which this load saw, came after its result
     * writes, so reading them here is ordered. */
    record_outcome(r, j, j->_item);
    return;
  }
  if (j->status == JOB_QUEUED && state == POOL_WORK_RUNNING) {
    j->status = JOB_PROCESSING;
    j->started_at = pool_work_started_ms(&j->_item->work);
    status_link(r, j);
  }
  double p = item_progress(j->_item);
  if (p > j->progress)
    j->progress = p;
}

static void maybe_idle(registry_t *r) {
  if (r->draining && r->in_flight == 0 && r->idle_cb) {
    void (*cb)(void *) = r->idle_cb;
    r->idle_cb = NULL;
    cb(r->idle_data);
  }
}

void registry_on_done(pool_work_t *w, void *data) {
  registry_t *r = data;
  item_t *it = item_of(w);
  job_t *j = it->owner;
  assert(j->_item == it);
  r->in_flight--;
  if (pool_work_state(w) == POOL_WORK_QUEUED) {
    /* The pool shut down before it ran. */
    j->canceled_by_shutdown = true;
    set_error(j, "canceled", msg_shutdown_queued);
    mark_final(r, j, JOB_CANCELED);
  } else if (!job_is_final(j)) {
    record_outcome(r, j, it);
  }
  j->_item = NULL;
  item_free(it);
  notify_final(r, j);
  maybe_idle(r);
}

registry_t *registry_new(uv_loop_t *loop, const registry_config_t *cfg) {
  assert(cfg->catalog && cfg->max_finished >= 1 && cfg->retention_ms >= 1);
  registry_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->cfg = *cfg;
  r->stats.finals = calloc(cfg->catalog->n, sizeof *r->stats.finals);
  if (!r->stats.finals || hash_grow(r) != 0) {
    free(r->stats.finals);
    free(r);
    return NULL;
  }
  hist_init(&r->stats.run_seconds, run_bounds, sizeof run_bounds / sizeof run_bounds[0]);
  uv_timer_init(loop, &r->evict_timer);
  r->evict_timer.data = r;
  /* Retention is in seconds; a check every second (or sooner) is precise enough. */
  uint64_t every = cfg->retention_ms < 1000 ? (uint64_t)cfg->retention_ms : 1000;
  uv_timer_start(&r->evict_timer, on_evict_timer, every, every);
  uv_unref((uv_handle_t *)&r->evict_timer);
  return r;
}

void registry_attach(registry_t *r, pool_t *pool) { r->pool = pool; }

static void on_timer_closed(uv_handle_t *h) {
  registry_t *r = h->data;
  free(r->stats.finals);
  free(r);
}

void registry_free(registry_t *r) {
  job_t *j = r->newest;
  while (j) {
    job_t *next = j->_all_next;
    assert(!j->_item); /* the pool must be gone first */
    j->_watches = NULL;
    job_free(j);
    j = next;
  }
  free(r->buckets);
  uv_close((uv_handle_t *)&r->evict_timer, on_timer_closed);
}

int registry_submit(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                    job_t **out) {
  /* Stats are indexed by the def's place in the catalog. */
  assert(def >= r->cfg.catalog->defs && def < r->cfg.catalog->defs + r->cfg.catalog->n);
  if (r->draining)
    return OFF_ESTOPPED;
  if (r->njobs + 1 > r->nbuckets && hash_grow(r) != 0)
    return OFF_ENOMEM;
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return OFF_ENOMEM;
  j->params = json_deep_copy(params);
  j->_item = item_new(def, params, timeout_ms < 0 ? r->cfg.default_timeout_ms : timeout_ms);
  if (!j->params || !j->_item) {
    item_free(j->_item);
    json_decref(j->params);
    free(j);
    return OFF_ENOMEM;
  }
  j->def = def;
  j->status = JOB_QUEUED;
  j->created_at = clock_wall_ms();
  j->_item->owner = j;
  do
    new_id(j->id);
  while (hash_find(r, j->id)); /* 2^-128 per pair: never, but cheap to be sure */

  int rc = pool_submit(r->pool, &j->_item->work);
  if (rc != 0) {
    item_free(j->_item);
    j->_item = NULL;
    job_free(j);
    return rc;
  }
  size_t k = id_hash(j->id) & (r->nbuckets - 1);
  j->_hnext = r->buckets[k];
  r->buckets[k] = j;
  j->_all_next = r->newest;
  if (r->newest)
    r->newest->_all_prev = j;
  else
    r->oldest = j;
  r->newest = j;
  DLIST_APPEND(r->q_head, r->q_tail, j, _q_prev, _q_next);
  j->_in_queue_list = true;
  r->nqview++;
  j->_seq = ++r->next_seq;
  r->njobs++;
  r->in_flight++;
  r->stats.submitted++;
  *out = j;
  return 0;
}

job_t *registry_get(registry_t *r, const char *id) {
  job_t *j = hash_find(r, id);
  if (j)
    registry_refresh(r, j);
  return j;
}

/* Drops from the front of the queue view the jobs a worker has taken. Workers
 * pop in FIFO order, so they are all at the front: O(jobs started since the
 * last look), at most about the number of workers. */
static void prune_queue(registry_t *r) {
  while (r->q_head && pool_work_state(&r->q_head->_item->work) != POOL_WORK_QUEUED) {
    job_t *j = r->q_head;
    registry_refresh(r, j); /* processing, or final if already done */
    queue_unlink(r, j);
  }
}

size_t registry_sync(registry_t *r) {
  prune_queue(r);
  job_t *j = r->s_newest[JOB_PROCESSING];
  while (j) {
    job_t *older = j->_s_next;
    registry_refresh(r, j); /* a finished one moves to its final list */
    j = older;
  }
  return r->nqview;
}

size_t registry_position(registry_t *r, job_t *job) {
  registry_refresh(r, job);
  if (job->status != JOB_QUEUED)
    return 0;
  prune_queue(r);
  if (job->status != JOB_QUEUED)
    return 0;
  /* Walk from both ends at once: O(min(place, jobs behind it)), so a job
   * just submitted (the tail) costs O(1). */
  job_t *front = r->q_head, *back = r->q_tail;
  for (size_t k = 0; front && back; k++) {
    if (front == job)
      return k + 1;
    if (back == job)
      return r->nqview - k;
    front = front->_q_next;
    back = back->_q_prev;
  }
  assert(!"a queued job is always in the queue view");
  return 0;
}

job_t *registry_first_with(registry_t *r, job_status_t status) {
  return status == JOB_QUEUED ? r->q_tail : r->s_newest[status];
}

job_t *registry_next_with(const job_t *job, job_status_t status) {
  return status == JOB_QUEUED ? job->_q_prev : job->_s_next;
}

int registry_cancel(registry_t *r, job_t *j) {
  registry_refresh(r, j);
  if (job_is_final(j))
    return OFF_EBUSY;
  if (j->status == JOB_QUEUED && cancel_queued(r, j, false)) {
    maybe_idle(r);
    return 0;
  }
  /* A worker has it (perhaps since a moment ago): ask it to stop. */
  j->cancel_requested = true;
  item_cancel(j->_item);
  registry_refresh(r, j);
  return 1;
}

job_t *registry_newest(registry_t *r) { return r->newest; }
job_t *registry_older(job_t *job) { return job->_all_next; }

void registry_watch(job_t *job, job_watch_t *w) {
  assert(!job_is_final(job));
  w->_prev = NULL;
  w->_next = job->_watches;
  if (job->_watches)
    job->_watches->_prev = w;
  job->_watches = w;
}

void registry_unwatch(job_t *job, job_watch_t *w) {
  if (w->_prev)
    w->_prev->_next = w->_next;
  else if (job->_watches == w)
    job->_watches = w->_next;
  else
    return; /* not watching */
  if (w->_next)
    w->_next->_prev = w->_prev;
  w->_next = w->_prev = NULL;
}

void registry_drain(registry_t *r) {
  r->draining = true;
  job_t *j = r->q_head;
  while (j) {
    job_t *next = j->_q_next;
    /* Only jobs no worker has taken: the running ones get the drain time. */
    if (job_is_final(j) || !cancel_queued(r, j, true)) {
      registry_refresh(r, j); /* a worker has it: file it as processing */
      queue_unlink(r, j);
    }
    j = next;
  }
  maybe_idle(r);
}

void registry_cancel_running(registry_t *r) {
  registry_sync(r); /* every started job is in the processing list now */
  for (job_t *j = r->s_newest[JOB_PROCESSING]; j; j = j->_s_next) {
    if (!j->cancel_requested) {
      j->canceled_by_shutdown = true;
      j->cancel_requested = true;
      item_cancel(j->_item);
    }
  }
}

size_t registry_in_flight(const registry_t *r) { return r->in_flight; }

void registry_on_idle(registry_t *r, void (*cb)(void *), void *data) {
  r->idle_cb = cb;
  r->idle_data = data;
  maybe_idle(r);
}

const registry_stats_t *registry_stats(registry_t *r) {
  r->stats.jobs = r->njobs;
  r->stats.finished = r->nfinished;
  return &r->stats;
}
