/* registry/registry_int: the registry's state, shared by registry.c (the
 * life of a job: submit, outcomes, retries, cancel, drain) and index.c (how
 * jobs are found: ids, the creation, status, finished and queue lists).
 * Loop thread only. */
#ifndef OFFLOAD_REGISTRY_REGISTRY_INT_H
#define OFFLOAD_REGISTRY_REGISTRY_INT_H

#include "pool/item.h"
#include "registry/registry.h"

struct registry {
  registry_config_t cfg;
  uv_loop_t *loop;
  pool_t *pools[LANE_N];
  uv_timer_t evict_timer;

  job_t **buckets;
  job_t **kbuckets; /* by idempotency key; as many as buckets */
  size_t nbuckets;  /* power of two */
  size_t njobs;

  job_t *newest, *oldest;         /* creation order */
  job_t *q_head[LANE_N], *q_tail[LANE_N]; /* queue view per lane, sorted by _seq */
  size_t nqview[LANE_N];
  job_t *f_head, *f_tail;         /* finished, oldest first */
  job_t *f_warm;                  /* the first finished job not cold (cold ones are a prefix) */
  size_t ncold;
  job_t *b_head, *b_tail;         /* waiting to retry */
  uint64_t next_seq;              /* creation order */
  /* Per status, newest created first, so a filtered /jobs is O(limit). */
  job_t *s_newest[JOB_NSTATUS], *s_oldest[JOB_NSTATUS];
  size_t nfinished;
  size_t in_flight; /* jobs with an item in a pool */
  size_t accepting[LANE_N]; /* jobs whose row is on the way to the store */
  size_t orphans;   /* items a job let go of, still in a pool */
  job_t *unsaved;   /* jobs whose last write failed, to write again (_u_next) */

  bool draining;
  registry_observer_cb observer;
  void *observer_data;
  void (*idle_cb)(void *);
  void *idle_data;

  registry_stats_t stats;
  json_t *secrets; /* cluster: id -> the real params of a secret job accepted here, until it is claimed */
};

/* A job's backoff timer; the job points at `t`. */
typedef struct retry {
  uv_timer_t t;
  registry_t *r;
  job_t *j;
} retry_t;

/* Tells the observer (registry_set_observer) what `j` just did. */
static inline void reg_tell(registry_t *r, job_t *j, registry_event_t ev) {
  if (r->observer)
    r->observer(j, ev, r->observer_data);
}

/* ---- registry.c: shared with outcome.c ---- */
extern const char msg_by_client[], msg_shutdown_queued[], msg_shutdown_running[];
/* Frees a job and what it owns (its item must be gone). */
void reg_job_free(job_t *j);
void reg_set_error(job_t *j, const char *code, const char *message);
/* Moves `j` to another status list. */
void reg_set_status(registry_t *r, job_t *j, job_status_t status);
/* Makes `j` final in the record; fires nothing, frees nothing (safe while
 * a caller walks the lists). */
void reg_mark_final(registry_t *r, job_t *j, job_status_t status);
/* Wakes the watchers of a final job, evicts old jobs. */
void reg_notify_final(registry_t *r, job_t *j);
void reg_finalize(registry_t *r, job_t *j, job_status_t status);
void reg_maybe_idle(registry_t *r);
size_t reg_accepting(const registry_t *r);
const char *reg_cancel_message(const job_t *j, bool ran);
/* Builds the job's next item and hands it to its lane's pool (force: past
 * max_queue). 0 or the pool's error. */
int reg_hand_to_pool(registry_t *r, job_t *j, bool force);


/* ---- persist.c ---- */
/* True when the store keeps jobs (a 202 waits for the commit). */
bool reg_durable(const registry_t *r);
/* Sends a snapshot of `j` to the store (insert: a new row), if it keeps
 * jobs. An insert of an accepting job calls reg_on_accepted when done. */
int reg_persist(registry_t *r, job_t *j, bool insert); /* 0 or OFF_ENOMEM */
/* A cluster: writes a running job's progress (fenced by its token). */
int reg_persist_progress(registry_t *r, job_t *j);

/* ---- files.c: jobs' output files ---- */
/* Takes the files a complete run left (the item's result) into the job. */
int reg_files_take(job_t *j, const item_t *it);
void reg_files_free(job_t *j);
/* Removes <files_root>/<id>/ on libuv's thread pool (never on the loop). */
void reg_remove_files(registry_t *r, const char *id);
/* A run's outputs only (not the dotfiles: a command's .log, the stored input). */
void reg_remove_outputs(registry_t *r, const char *id);
/* The job's input: closes its descriptor; removes its stored copy
 * (<files_root>/<id>/.input) on the thread pool. */
void reg_input_close(job_t *j);
void reg_remove_input(registry_t *r, const char *id);

/* Cools the oldest finished jobs beyond cache_finished (persist.c). */
void reg_cool(registry_t *r);
/* Deletes an evicted job's row (in order with the other writes). */
void reg_persist_delete(registry_t *r, const job_t *j);
/* Whether `j` may be freed now (nothing still needs it). */
bool reg_evictable(const job_t *j);
/* Evicts finished jobs past retention or beyond max_finished. */
void reg_evict_old(registry_t *r);
/* registry.c: the row of an accepting job was committed (rc 0) or not. */
void reg_on_accepted(registry_t *r, job_t *j, int rc);

/* ---- cluster.c ---- */
/* Lets go of a job the store now holds (no write in flight): its watchers
 * are told its state as it is, and it is freed. */
void reg_cluster_release(registry_t *r, job_t *j);
/* A run failed with retries left: back to the shared queue (written with
 * its token, then let go of). */
void reg_cluster_requeue(registry_t *r, job_t *j, int64_t delay_ms);

/* ---- index.c ---- */
void index_new_id(char out[JOB_ID_LEN + 1]);
int index_hash_grow(registry_t *r);
job_t *index_find(const registry_t *r, const char *id);
/* The job holding this idempotency key, or NULL; files one (j->idem_key set). */
job_t *index_key_find(const registry_t *r, const char *key);
void index_key_add(registry_t *r, job_t *j);
/* Files a new job (hash, creation list) with the next sequence number. */
void index_add(registry_t *r, job_t *j);
/* Takes a final job out of every structure (the caller frees it). */
void index_remove(registry_t *r, job_t *j);
/* Takes a job that never became real (its row was not kept) out of the
 * hash, the creation list and its status list (the caller frees it). */
void index_forget(registry_t *r, job_t *j);

/* The lane's queue view, kept in _seq order. */
void index_queue_insert(registry_t *r, job_t *j);
void index_queue_unlink(registry_t *r, job_t *j);
/* Drops from the fronts of the queue views the jobs a worker has taken
 * (refreshing each), O(jobs started since the last look). */
void index_prune_queues(registry_t *r);

/* Status lists: j->status must be what the job is filed under. */
void index_status_link(registry_t *r, job_t *j);
void index_status_unlink(registry_t *r, job_t *j);

#endif
