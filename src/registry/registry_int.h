/* registry/registry_int: the registry's state, shared by registry.c (the
 * life of a job: submit, outcomes, retries, cancel, drain) and index.c (how
 * jobs are found: ids, the creation, status, finished and queue lists).
 * Loop thread only. */
#ifndef OFFLOAD_REGISTRY_REGISTRY_INT_H
#define OFFLOAD_REGISTRY_REGISTRY_INT_H

#include "registry/registry.h"

struct registry {
  registry_config_t cfg;
  uv_loop_t *loop;
  pool_t *pools[LANE_N];
  uv_timer_t evict_timer;

  job_t **buckets;
  size_t nbuckets; /* power of two */
  size_t njobs;

  job_t *newest, *oldest;         /* creation order */
  job_t *q_head[LANE_N], *q_tail[LANE_N]; /* queue view per lane, sorted by _seq */
  size_t nqview[LANE_N];
  job_t *f_head, *f_tail;         /* finished, oldest first */
  job_t *b_head, *b_tail;         /* waiting to retry */
  uint64_t next_seq;              /* creation order */
  /* Per status, newest created first, so a filtered /jobs is O(limit). */
  job_t *s_newest[JOB_NSTATUS], *s_oldest[JOB_NSTATUS];
  size_t nfinished;
  size_t in_flight; /* jobs with an item in a pool */
  size_t orphans;   /* items a job let go of, still in a pool */

  bool draining;
  void (*idle_cb)(void *);
  void *idle_data;

  registry_stats_t stats;
};

/* ---- index.c ---- */
void index_new_id(char out[JOB_ID_LEN + 1]);
int index_hash_grow(registry_t *r);
job_t *index_find(const registry_t *r, const char *id);
/* Files a new job (hash, creation list) with the next sequence number. */
void index_add(registry_t *r, job_t *j);
/* Takes a final job out of every structure (the caller frees it). */
void index_remove(registry_t *r, job_t *j);

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
