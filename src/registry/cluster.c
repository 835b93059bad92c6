/* registry/cluster: the registry's part in a cluster of nodes sharing one
 * PostgreSQL (registry.h, registry_config_t.cluster; docs/CLUSTER.md).
 *
 * The store is the truth; a node's registry holds only the jobs it has a
 * reason to hold: one on the way to the store (until its 202 is sent), and
 * one it claimed, from its claim until its final state is written (and
 * then as a cache, evicted as usual but never deleted from the store). A
 * claimed job's writes carry its token (the attempt its claim made): the
 * store applies them only while the row still has it (store/pg_apply.c).
 * A write that does not apply means another node holds the job now: the
 * copy here is canceled and let go of (registry_lose), and nothing it does
 * reaches the row. Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/registry_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

void reg_cluster_release(registry_t *r, job_t *j) {
  while (j->_watches) { /* (a ?wait on a job that leaves: it answers with the job as it is) */
    job_watch_t *w = j->_watches;
    registry_unwatch(j, w);
    w->cb(j, w);
  }
  if (j->_u_next || j->_unsaved || j->_item || j->_writes)
    return; /* still needed; released when the last write is done */
  if (job_is_final(j)) {
    index_remove(r, j);
  } else {
    index_queue_unlink(r, j);
    index_forget(r, j);
  }
  reg_job_free(j);
  reg_maybe_idle(r);
}

void reg_cluster_requeue(registry_t *r, job_t *j, int64_t delay_ms) {
  free(j->err_code);
  free(j->err_message);
  j->err_code = j->err_message = NULL;
  j->started_at = 0;
  j->progress = 0;
  index_queue_unlink(r, j);
  reg_set_status(r, j, JOB_QUEUED);
  j->retry_at = delay_ms > 0 ? clock_wall_ms() + delay_ms : 0;
  j->_release = true;
  reg_persist(r, j, false); /* released once written (persist.c) */
  if (delay_ms > 0)
    reg_tell(r, j, REG_EV_RETRY);
}

/* A claimed job that cannot run here is written back failed. */
static void fail_adopted(registry_t *r, job_t *j, const char *code, const char *message) {
  j->status = JOB_QUEUED;
  index_status_link(r, j);
  j->attempts = j->_token;
  reg_set_error(j, code, message);
  reg_finalize(r, j, JOB_FAILED);
}

int registry_adopt(registry_t *r, const store_job_t *row) {
  const offload_task_def_t *def = tasks_catalog_find(r->cfg.catalog, row->task);
  if (r->njobs + 1 > r->nbuckets && index_hash_grow(r) != 0)
    return OFF_ENOMEM;
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return OFF_ENOMEM;
  j->params = json_loads(row->params, 0, NULL);
  memcpy(j->id, row->id, JOB_ID_LEN + 1);
  j->def = def ? def : &r->cfg.catalog->defs[0];
  j->status = JOB_QUEUED; /* here, until a worker takes it (the row says processing) */
  j->_token = row->attempts;
  j->_claimed_at = row->started_at;
  j->attempts = row->attempts - 1; /* the run counts it again when it starts */
  j->retries = row->retries;
  j->created_at = row->created_at;
  j->_lane = j->def->isolation == OFFLOAD_ISOLATION_PROCESS ? LANE_PROCESS : LANE_THREAD;
  j->_timeout_ms = row->timeout_ms;
  j->idem_key = row->idem_key ? strdup(row->idem_key) : NULL;
  if (row->input_type) {
    j->input_type = strdup(row->input_type);
    j->input_bytes = row->input_bytes;
  }
  j->_progress_sent = 0;
  index_add(r, j);
  if (!def || !j->params) {
    if (!j->params)
      j->params = json_object();
    fail_adopted(r, j, "internal",
                 !def ? "The node that claimed the job does not offer its task." : "The job's params are unreadable.");
    return 0;
  }
  if (tasks_has_secret(def)) {
    json_t *real = r->secrets ? json_object_get(r->secrets, j->id) : NULL;
    if (!real) {
      fail_adopted(r, j, "secret_lost",
                   "The node that accepted the job restarted before it ran, and its secret parameters are never "
                   "stored; submit it again.");
      return 0;
    }
    j->_run_params = json_incref(real);
    json_object_del(r->secrets, j->id);
  }
  /* Its input, opened by the store thread with the claim (row->input_fd). */
  int in = row->input_type && row->input_fd ? dup(row->input_fd - 1) : -1;
  if (in >= 0)
    j->_input_fd = in + 1;
  if (row->input_type && in < 0) {
    fail_adopted(r, j, "input_lost", "The job's stored input is missing from this node's files; submit it again.");
    return 0;
  }
  index_status_link(r, j);
  if (reg_hand_to_pool(r, j, true) != 0) {
    reg_set_error(j, "internal", "The job could not be queued (out of memory).");
    j->attempts = j->_token;
    reg_finalize(r, j, JOB_FAILED);
  }
  return 0;
}

void registry_lose(registry_t *r, job_t *j) {
  if (!j->_lost)
    log_warn("job %s: another node holds it now (this node's claim on attempt %d lapsed); its copy here is %s",
             j->id, j->_token, job_is_final(j) ? "discarded" : "canceled and its result discarded");
  j->_lost = true;
  j->_release = true;
  if (!job_is_final(j)) {
    registry_cancel(r, j); /* its final write is fenced, then it is let go of */
    return;
  }
  reg_cluster_release(r, j);
}

void registry_run_here(registry_t *r, job_t *j) {
  if (!r->cfg.cluster || !j->_accepting || !j->_insert_rec)
    return;
  store_job_t *rec = j->_insert_rec;
  free(rec->owner);
  rec->owner = strdup(r->cfg.node_id);
  if (!rec->owner)
    return; /* then it goes through the shared queue like any other */
  rec->status = "processing";
  rec->attempts = 1;
  rec->started_at = clock_wall_ms();
  j->_claimed_at = rec->started_at;
  j->_token = 1;
  j->_run_here = true;
}

void registry_cancel_remote(registry_t *r, const char *id) {
  job_t *j = index_find(r, id);
  if (j && !job_is_final(j) && !j->_accepting)
    registry_cancel(r, j);
}

bool registry_keeps_secret(const registry_t *r, const char *id) {
  return r->secrets && json_object_get(r->secrets, id) != NULL;
}

void registry_write_progress(registry_t *r) {
  job_t *j = registry_first_with(r, JOB_PROCESSING);
  while (j) {
    job_t *next = registry_next_with(j, JOB_PROCESSING);
    registry_refresh(r, j);
    if (j->status == JOB_PROCESSING && !j->_lost && j->progress > j->_progress_sent + 1e-6 &&
        reg_persist_progress(r, j) == 0)
      j->_progress_sent = j->progress;
    j = next;
  }
}
