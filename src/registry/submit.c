/* registry/submit: how a job comes in: submission (with an idempotency
 * key, an input), the accept path of a durable store (the row first, the
 * pool once it is kept), and finding a job by its key. Loop thread only.
 * See registry.h. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/item.h"
#include "registry/registry_int.h"
#include "util/clock.h"
#include "util/err.h"

static int submit(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms, int retries,
                  const char *key, int input_fd, int64_t input_len, const char *input_type, job_t **out);

int registry_submit(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                    int retries, job_t **out) {
  return registry_submit_keyed(r, def, params, timeout_ms, retries, NULL, out);
}

job_t *registry_find_key(registry_t *r, const char *key) {
  job_t *j = index_key_find(r, key);
  if (j)
    registry_refresh(r, j);
  return j;
}

int registry_submit_keyed(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                          int retries, const char *key, job_t **out) {
  return registry_submit_input(r, def, params, timeout_ms, retries, key, -1, 0, NULL, out);
}

int registry_submit_input(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                          int retries, const char *key, int input_fd, int64_t input_len, const char *input_type,
                          job_t **out) {
  int rc = submit(r, def, params, timeout_ms, retries, key, input_fd, input_len, input_type, out);
  if (rc != 0 && input_fd >= 0)
    close(input_fd);
  return rc;
}

static int submit(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms, int retries,
                  const char *key, int input_fd, int64_t input_len, const char *input_type, job_t **out) {
  /* Stats are indexed by the def's place in the catalog. */
  assert(def >= r->cfg.catalog->defs && def < r->cfg.catalog->defs + r->cfg.catalog->n);
  if (r->draining)
    return OFF_ESTOPPED;
  if (r->cfg.cluster && !store_ok(r->cfg.store))
    return OFF_ESTORE; /* the database is away: 503 store_unavailable, nothing half-accepted */
  lane_t lane = def->isolation == OFFLOAD_ISOLATION_PROCESS ? LANE_PROCESS : LANE_THREAD;
  assert(r->pools[lane]);
  if (r->njobs + 1 > r->nbuckets && index_hash_grow(r) != 0)
    return OFF_ENOMEM;
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return OFF_ENOMEM;
  bool secret = tasks_has_secret(def);
  j->params = secret ? tasks_redact(def, params) : json_deep_copy(params);
  j->_run_params = secret ? json_deep_copy(params) : NULL;
  j->idem_key = key ? strdup(key) : NULL;
  j->input_type = input_fd >= 0 ? strdup(input_type ? input_type : "application/octet-stream") : NULL;
  if (!j->params || (secret && !j->_run_params) || (key && !j->idem_key) || (input_fd >= 0 && !j->input_type)) {
    json_decref(j->params);
    json_decref(j->_run_params);
    free(j->idem_key);
    free(j->input_type);
    free(j);
    return OFF_ENOMEM;
  }
  if (input_fd >= 0) { /* taken: reg_job_free closes it from now on */
    j->_input_fd = input_fd + 1;
    j->input_bytes = input_len;
  }
  if (secret && key) { /* a replay must match the real params, which are not kept */
    j->_params_hash = registry_params_hash(params);
    j->_hashed = true;
  }
  j->def = def;
  j->status = JOB_QUEUED;
  j->created_at = clock_wall_ms();
  j->retries = retries;
  j->_lane = lane;
  j->_timeout_ms = timeout_ms < 0 ? r->cfg.default_timeout_ms : timeout_ms;
  if (def->timeout_ms > 0 && (j->_timeout_ms <= 0 || j->_timeout_ms > def->timeout_ms))
    j->_timeout_ms = def->timeout_ms; /* the task's own limit */
  do
    index_new_id(j->id);
  while (index_find(r, j->id)); /* 2^-128 per pair: never, but cheap to be sure */
  j->_seq = r->next_seq + 1;    /* what index_add gives it; the queues sort by it */
  if (reg_durable(r)) {
    /* The row first: the job reaches a pool once it is committed
     * (reg_on_accepted). Its place in the queue is held from now. */
    pool_t *pool = r->pools[lane];
    if (pool_depth(pool) + r->accepting[lane] >= pool_capacity(pool)) {
      reg_job_free(j);
      return OFF_EFULL;
    }
    j->_accepting = true;
    index_add(r, j);
    index_status_link(r, j);
    if (reg_persist(r, j, true) != 0) {
      index_forget(r, j);
      reg_job_free(j);
      return OFF_ENOMEM;
    }
    r->accepting[lane]++;
  } else {
    int rc = reg_hand_to_pool(r, j, false);
    if (rc != 0) {
      reg_job_free(j);
      return rc;
    }
    index_add(r, j);
    index_status_link(r, j);
  }
  if (j->idem_key)
    index_key_add(r, j);
  r->stats.submitted++;
  *out = j;
  if (!j->_accepting) /* a durable store's job is told once its row is kept */
    reg_tell(r, j, REG_EV_CREATED);
  return 0;
}

size_t reg_accepting(const registry_t *r) {
  size_t n = 0;
  for (int l = 0; l < LANE_N; l++)
    n += r->accepting[l];
  return n;
}

/* The accepted callbacks (the 202s), then, for a job canceled while its
 * row was on the way, its watchers. */
static void tell_accepted(registry_t *r, job_t *j) {
  for (job_watch_t *w = j->_watches, *next; w; w = next) {
    next = w->_next;
    if (w->accepted)
      w->accepted(j, w, 0);
  }
  if (job_is_final(j))
    reg_notify_final(r, j);
}

/* A cluster: the row is in the shared queue, where any node claims it.
 * This node tells its 202s and lets go of the job (a secret param's real
 * value stays here: its row is pinned to this node). */
static void accepted_in_cluster(registry_t *r, job_t *j) {
  if (j->_run_here && !job_is_final(j)) { /* claimed at insert: it runs here, as without a cluster */
    if (reg_hand_to_pool(r, j, true) != 0) {
      reg_set_error(j, "internal", "The job could not be queued (out of memory).");
      reg_mark_final(r, j, JOB_FAILED);
    } else {
      reg_tell(r, j, REG_EV_CREATED);
    }
    for (job_watch_t *w = j->_watches, *next; w; w = next) {
      next = w->_next;
      if (w->accepted)
        w->accepted(j, w, 0);
    }
    if (job_is_final(j))
      reg_notify_final(r, j);
    return;
  }
  if (!job_is_final(j)) {
    if (j->_run_params) {
      if (!r->secrets)
        r->secrets = json_object();
      if (r->secrets)
        json_object_set(r->secrets, j->id, j->_run_params);
    }
    reg_tell(r, j, REG_EV_CREATED);
  }
  tell_accepted(r, j);
  j->_release = true;
  reg_cluster_release(r, j); /* now, or once its cancel is written */
}

void reg_on_accepted(registry_t *r, job_t *j, int rc) {
  j->_accepting = false;
  r->accepting[j->_lane]--;
  if (rc != 0) {
    /* Never kept: the client hears 503 and the job never existed. */
    job_watch_t *w = j->_watches;
    while (w) {
      job_watch_t *next = w->_next;
      registry_unwatch(j, w);
      if (w->accepted)
        w->accepted(j, w, rc);
      w = next;
    }
    j->_watches = NULL;
    if (job_is_final(j)) { /* canceled meanwhile (seen in a listing) */
      index_remove(r, j);
    } else {
      index_forget(r, j);
    }
    reg_job_free(j);
    reg_maybe_idle(r);
    return;
  }
  if (j->_changed_while_accepting) { /* canceled while its row was on the way */
    j->_changed_while_accepting = false;
    reg_persist(r, j, false);
  }
  if (r->cfg.cluster) {
    accepted_in_cluster(r, j);
    return;
  }
  if (!job_is_final(j) && r->draining) {
    index_queue_insert(r, j); /* queued on disk for the next start, in its place */
  } else if (!job_is_final(j) && reg_hand_to_pool(r, j, true) != 0) {
    reg_set_error(j, "internal", "The job could not be queued (out of memory).");
    reg_mark_final(r, j, JOB_FAILED);
  }
  if (!job_is_final(j)) /* one canceled meanwhile was told final already */
    reg_tell(r, j, REG_EV_CREATED);
  tell_accepted(r, j);
  reg_maybe_idle(r);
}
