/* registry: the life of a job: final states, cancel, drain, eviction.
 * See registry.h; submit.c brings jobs in, outcome.c records what a worker
 * left (and retries), index.c finds jobs, persist.c and files.c keep them. */
#include "registry/registry.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "pool/item.h"

#include "registry/registry_int.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

static const double run_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800};

const char *job_status_name(job_status_t s) {
  static const char *const names[] = {"queued", "processing", "complete", "failed", "canceled"};
  return s < JOB_NSTATUS ? names[s] : "unknown";
}

static void on_retry_closed(uv_handle_t *h) { free(h->data); }

void reg_job_free(job_t *j) {
  assert(!j->_item && !j->_watches);
  if (j->_retry) {
    j->_retry->data = j->_retry; /* the retry_t, freed once closed */
    uv_close((uv_handle_t *)j->_retry, on_retry_closed);
  }
  json_decref(j->params);
  json_decref(j->_run_params);
  json_decref(j->result);
  reg_files_free(j);
  reg_input_close(j);
  free(j->input_type);
  free(j->idem_key);
  free(j->err_code);
  free(j->err_message);
  free(j->json_cache);
  free(j);
}

/* `expired`: past retention (a cluster's node then removes its files: its
 * row expires in the store, which cannot reach this node's disk). */
static void evict(registry_t *r, job_t *j, bool expired) {
  reg_persist_delete(r, j); /* disk keeps what memory keeps (the store removes the files with the row) */
  if ((!reg_durable(r) || (r->cfg.cluster && expired)) && (j->nfiles || j->def->files))
    reg_remove_files(r, j->id);
  index_remove(r, j);
  reg_job_free(j);
}

bool reg_evictable(const job_t *j) { return !j->_item && !j->_accepting && !j->_writes && !j->_unsaved; }

static void evict_expired(registry_t *r) {
  uint64_t now = (uint64_t)clock_mono_ms();
  while (r->f_head && reg_evictable(r->f_head) && r->f_head->_finished_mono_ms + (uint64_t)r->cfg.retention_ms <= now)
    evict(r, r->f_head, true);
}

static void evict_over_limit(registry_t *r);

void reg_evict_old(registry_t *r) {
  evict_over_limit(r);
  evict_expired(r);
}

/* Each second: retention, and another try for writes that failed. */
static void on_evict_timer(uv_timer_t *t) {
  registry_t *r = t->data;
  registry_save_unsaved(r);
  evict_expired(r);
}

void registry_save_unsaved(registry_t *r) {
  job_t *list = r->unsaved;
  r->unsaved = NULL;
  while (list) {
    job_t *j = list;
    list = j->_u_next;
    j->_u_next = NULL;
    j->_unsaved = false;
    if (reg_persist(r, j, false) != 0) { /* no memory: next time */
      j->_unsaved = true;
      j->_u_next = r->unsaved;
      r->unsaved = j;
    }
  }
}

/* ---- final states ---- */

void reg_set_error(job_t *j, const char *code, const char *message) {
  free(j->err_code);
  free(j->err_message);
  j->err_code = strdup(code);
  j->err_message = strdup(message);
}

/* Moves `j` to another status list. */
void reg_set_status(registry_t *r, job_t *j, job_status_t status) {
  index_status_unlink(r, j);
  j->status = status;
  index_status_link(r, j);
}

/* Makes `j` final in the record: status, times, the finished list, stats.
 * Fires nothing and frees nothing, so it is safe anywhere, even while a
 * caller walks the job lists (registry_refresh uses it). */
void reg_mark_final(registry_t *r, job_t *j, job_status_t status) {
  assert(!job_is_final(j) && status >= JOB_COMPLETE);
  index_queue_unlink(r, j);
  reg_set_status(r, j, status);
  j->finished_at = clock_wall_ms();
  j->retry_at = 0;
  json_decref(j->_run_params); /* a secret is kept no longer than it may run */
  j->_run_params = NULL;
  if (j->_input_fd) { /* so is the input, in memory and on disk */
    reg_input_close(j);
    if (reg_durable(r))
      reg_remove_input(r, j->id);
  }
  if (status == JOB_COMPLETE)
    j->progress = 1.0;
  j->_finished_mono_ms = (uint64_t)clock_mono_ms();
  DLIST_APPEND(r->f_head, r->f_tail, j, _f_prev, _f_next);
  if (!r->f_warm)
    r->f_warm = j;
  r->nfinished++;

  size_t idx = (size_t)(j->def - r->cfg.catalog->defs);
  r->stats.finals[idx][status]++;
  reg_persist(r, j, false);
  if (j->started_at)
    hist_observe(&r->stats.run_seconds, (double)(j->finished_at - j->started_at) / 1000.0);
}

/* Drops the oldest finished jobs beyond --max-finished. A job whose item the
 * pool still holds (recorded early by registry_refresh) is never freed; the
 * eviction resumes at its done callback. */
static void evict_over_limit(registry_t *r) {
  while (r->nfinished > r->cfg.max_finished && reg_evictable(r->f_head))
    evict(r, r->f_head, false);
}

/* The side effects of a final job: wake its watchers, evict old jobs. */
void reg_notify_final(registry_t *r, job_t *j) {
  while (j->_watches) {
    job_watch_t *w = j->_watches;
    registry_unwatch(j, w);
    w->cb(j, w);
  }
  if (!j->_final_told) { /* a job canceled while its row was on the way comes here twice */
    j->_final_told = true;
    reg_tell(r, j, REG_EV_FINAL);
  }
  evict_over_limit(r);
  reg_cool(r);
}

void reg_finalize(registry_t *r, job_t *j, job_status_t status) {
  reg_mark_final(r, j, status);
  reg_notify_final(r, j);
}

void reg_maybe_idle(registry_t *r) {
  if (r->draining && r->in_flight == 0 && !r->b_head && reg_accepting(r) == 0 && r->idle_cb) {
    void (*cb)(void *) = r->idle_cb;
    r->idle_cb = NULL;
    cb(r->idle_data);
  }
}

/* The error message of each way a job is canceled. */
const char msg_by_client[] = "The job was canceled by a client request.";
const char msg_shutdown_queued[] = "The server shut down before the job could run.";
const char msg_shutdown_running[] = "The server shut down before the job finished.";

const char *reg_cancel_message(const job_t *j, bool ran) {
  if (!j->canceled_by_shutdown)
    return msg_by_client;
  return ran ? msg_shutdown_running : msg_shutdown_queued;
}

/* ---- items ---- */

/* Builds the job's next item and hands it to its lane's pool. */
int reg_hand_to_pool(registry_t *r, job_t *j, bool force) {
  item_t *it = item_new(j->def, j->_run_params ? j->_run_params : j->params, j->_timeout_ms);
  if (it)
    it->files_root = j->def->files ? r->cfg.files_root : NULL;
  if (it && j->_input_fd) {
    it->input_fd = dup(j->_input_fd - 1);
    it->input_len = j->input_bytes;
    snprintf(it->input_type, sizeof it->input_type, "%s", j->input_type);
    if (it->input_fd < 0) {
      item_free(it);
      return OFF_ENOMEM;
    }
  }
  if (!it)
    return OFF_ENOMEM;
  it->owner = j;
  memcpy(it->job_id, j->id, JOB_ID_LEN + 1);
  it->work.order = j->_seq;
  pool_t *pool = r->pools[j->_lane];
  int rc = force ? pool_submit_force(pool, &it->work) : pool_submit(pool, &it->work);
  if (rc != 0) {
    item_free(it);
    return rc;
  }
  j->_item = it;
  j->_run_counted = false;
  index_queue_insert(r, j);
  r->in_flight++;
  return 0;
}

/* Takes a queued job's item back from the pool and makes the job canceled
 * (its watches fire). Returns false, changing nothing, when a worker already
 * has it or the pool is stopping. The caller checks maybe_idle. */
static bool cancel_queued(registry_t *r, job_t *j, bool by_shutdown) {
  if (pool_remove(r->pools[j->_lane], &j->_item->work) != 0)
    return false;
  item_free(j->_item);
  j->_item = NULL;
  r->in_flight--;
  if (by_shutdown)
    j->canceled_by_shutdown = true;
  reg_set_error(j, "canceled", by_shutdown ? msg_shutdown_queued : msg_by_client);
  reg_finalize(r, j, JOB_CANCELED);
  return true;
}

/* ---- registry.h ---- */

registry_t *registry_new(uv_loop_t *loop, const registry_config_t *cfg) {
  assert(cfg->catalog && cfg->max_finished >= 1 && cfg->retention_ms >= 1);
  registry_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->cfg = *cfg;
  if (r->cfg.retry_backoff_ms <= 0)
    r->cfg.retry_backoff_ms = 500;
  r->loop = loop;
  r->stats.finals = calloc(cfg->catalog->n ? cfg->catalog->n : 1, sizeof *r->stats.finals);
  if (!r->stats.finals || index_hash_grow(r) != 0) {
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

void registry_attach(registry_t *r, pool_t *threads, pool_t *procs) {
  r->pools[LANE_THREAD] = threads;
  r->pools[LANE_PROCESS] = procs;
}

static void on_timer_closed(uv_handle_t *h) {
  registry_t *r = h->data;
  free(r->stats.finals);
  free(r);
}

void registry_free(registry_t *r) {
  job_t *j = r->newest;
  while (j) {
    job_t *next = j->_all_next;
    assert(!j->_item); /* the pools must be gone first */
    j->_watches = NULL;
    reg_job_free(j);
    j = next;
  }
  free(r->buckets);
  free(r->kbuckets);
  json_decref(r->secrets);
  uv_close((uv_handle_t *)&r->evict_timer, on_timer_closed);
}

job_t *registry_get(registry_t *r, const char *id) {
  job_t *j = index_find(r, id);
  if (j)
    registry_refresh(r, j);
  return j;
}

int registry_cancel(registry_t *r, job_t *j) {
  registry_refresh(r, j);
  if (job_is_final(j))
    return OFF_EBUSY;
  if (j->status == JOB_QUEUED && !j->_item) { /* waiting for its row, to retry, or for the next start */
    if (j->_retry && uv_is_active((uv_handle_t *)j->_retry)) {
      uv_timer_stop(j->_retry);
      DLIST_UNLINK(r->b_head, r->b_tail, j, _b_prev, _b_next);
    }
    reg_set_error(j, "canceled", msg_by_client);
    reg_finalize(r, j, JOB_CANCELED);
    reg_maybe_idle(r);
    return 0;
  }
  if (j->status == JOB_QUEUED && cancel_queued(r, j, false)) {
    reg_maybe_idle(r);
    return 0;
  }
  /* A worker has it (perhaps since a moment ago): ask it to stop. */
  j->cancel_requested = true;
  pool_cancel(r->pools[j->_lane], &j->_item->work);
  registry_refresh(r, j);
  return 1;
}

void registry_set_observer(registry_t *r, registry_observer_cb cb, void *data) {
  r->observer = cb;
  r->observer_data = data;
}

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

/* Drain with a durable store: a queued job is taken back from its pool
 * and left `queued` (on disk too) for the next start. It keeps its place
 * in the queue view (without an item), so GET still shows where it will
 * run from: the queue is what the next start runs, in this order. */
static bool keep_queued(registry_t *r, job_t *j) {
  if (pool_remove(r->pools[j->_lane], &j->_item->work) != 0)
    return false;
  item_free(j->_item);
  j->_item = NULL;
  r->in_flight--;
  return true;
}

void registry_drain(registry_t *r) {
  r->draining = true;
  bool keep = reg_durable(r);
  for (int l = 0; l < LANE_N; l++) {
    job_t *j = r->q_head[l];
    while (j) {
      job_t *next = j->_q_next;
      /* Only jobs no worker has taken: the running ones get the drain time. */
      if (job_is_final(j) || !(keep ? keep_queued(r, j) : cancel_queued(r, j, true))) {
        registry_refresh(r, j); /* a worker has it: file it as processing */
        index_queue_unlink(r, j);
      } else if (r->cfg.cluster && !job_is_final(j)) {
        reg_cluster_requeue(r, j, 0); /* claimed, never started: back to the shared queue for another node */
      }
      j = next;
    }
  }
  while (r->b_head) {
    job_t *j = r->b_head;
    uv_timer_stop(j->_retry);
    DLIST_UNLINK(r->b_head, r->b_tail, j, _b_prev, _b_next);
    if (keep) {
      j->retry_at = 0; /* runs after the next start, in its place */
      index_queue_insert(r, j);
      continue;
    }
    j->canceled_by_shutdown = true;
    reg_set_error(j, "canceled", msg_shutdown_queued);
    reg_finalize(r, j, JOB_CANCELED);
  }
  reg_maybe_idle(r);
}

void registry_cancel_running(registry_t *r) {
  size_t queued[LANE_N];
  registry_sync(r, queued); /* every started job is in the processing list now */
  for (job_t *j = r->s_newest[JOB_PROCESSING]; j; j = j->_s_next) {
    if (!j->cancel_requested) {
      j->canceled_by_shutdown = true;
      j->cancel_requested = true;
      pool_cancel(r->pools[j->_lane], &j->_item->work);
    }
  }
}

size_t registry_in_flight(const registry_t *r) { return r->in_flight; }

size_t registry_lane_free(const registry_t *r, lane_t lane) {
  const pool_t *p = r->pools[lane];
  if (!p)
    return 0;
  size_t used = (size_t)pool_busy(p) + pool_depth(p);
  return pool_workers(p) > used ? pool_workers(p) - used : 0;
}

void registry_on_idle(registry_t *r, void (*cb)(void *), void *data) {
  r->idle_cb = cb;
  r->idle_data = data;
  reg_maybe_idle(r);
}

const registry_stats_t *registry_stats(registry_t *r) {
  r->stats.jobs = r->njobs;
  r->stats.finished = r->nfinished;
  r->stats.cold = r->ncold;
  return &r->stats;
}
