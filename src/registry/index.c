/* registry/index: how jobs are found. See registry/registry_int.h.
 *
 * DESIGN: intrusive structures hang off each job: a hash chain (by id), the
 * creation-ordered list (for /jobs and ids), its status list, the finished
 * list (for eviction) and, while it waits for a worker, its lane's queue
 * view (for queuePosition). A lane's queue view mirrors that pool's queue,
 * which both keep sorted by creation (_seq; a retried job goes back in at
 * its place). It is pruned lazily: workers take jobs from the front, so the
 * ones that started sit there and are dropped the next time anyone looks. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "registry/registry_int.h"
#include "util/dlist.h"
#include "util/err.h"

void index_new_id(char out[JOB_ID_LEN + 1]) {
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

int index_hash_grow(registry_t *r) {
  size_t n = r->nbuckets ? r->nbuckets * 2 : 1024;
  job_t **b = calloc(n, sizeof *b), **kb = calloc(n, sizeof *kb);
  if (!b || !kb) {
    free(b);
    free(kb);
    return OFF_ENOMEM;
  }
  for (size_t i = 0; i < r->nbuckets; i++) {
    job_t *j = r->kbuckets[i];
    while (j) {
      job_t *next = j->_knext;
      size_t k = id_hash(j->idem_key) & (n - 1);
      j->_knext = kb[k];
      kb[k] = j;
      j = next;
    }
  }
  free(r->kbuckets);
  r->kbuckets = kb;
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

job_t *index_find(const registry_t *r, const char *id) {
  if (strlen(id) != JOB_ID_LEN)
    return NULL;
  for (job_t *j = r->buckets[id_hash(id) & (r->nbuckets - 1)]; j; j = j->_hnext)
    if (memcmp(j->id, id, JOB_ID_LEN) == 0)
      return j;
  return NULL;
}

/* ---- idempotency keys: a second hash, over the jobs that have one ---- */

job_t *index_key_find(const registry_t *r, const char *key) {
  for (job_t *j = r->kbuckets[id_hash(key) & (r->nbuckets - 1)]; j; j = j->_knext)
    if (strcmp(j->idem_key, key) == 0)
      return j;
  return NULL;
}

void index_key_add(registry_t *r, job_t *j) {
  size_t k = id_hash(j->idem_key) & (r->nbuckets - 1);
  j->_knext = r->kbuckets[k];
  r->kbuckets[k] = j;
}

static void key_remove(registry_t *r, job_t *j) {
  if (!j->idem_key)
    return;
  job_t **pp = &r->kbuckets[id_hash(j->idem_key) & (r->nbuckets - 1)];
  while (*pp && *pp != j)
    pp = &(*pp)->_knext;
  if (*pp)
    *pp = j->_knext;
}

void index_add(registry_t *r, job_t *j) {
  size_t k = id_hash(j->id) & (r->nbuckets - 1);
  j->_hnext = r->buckets[k];
  r->buckets[k] = j;
  j->_all_next = r->newest;
  if (r->newest)
    r->newest->_all_prev = j;
  else
    r->oldest = j;
  r->newest = j;
  j->_seq = ++r->next_seq;
  r->njobs++;
}

void index_remove(registry_t *r, job_t *j) {
  assert(job_is_final(j));
  key_remove(r, j);
  job_t **pp = &r->buckets[id_hash(j->id) & (r->nbuckets - 1)];
  while (*pp != j)
    pp = &(*pp)->_hnext;
  *pp = j->_hnext;
  DLIST_UNLINK(r->newest, r->oldest, j, _all_prev, _all_next);
  if (r->f_warm == j)
    r->f_warm = j->_f_next;
  r->ncold -= j->_cold;
  DLIST_UNLINK(r->f_head, r->f_tail, j, _f_prev, _f_next);
  index_status_unlink(r, j);
  r->njobs--;
  r->nfinished--;
}

void index_forget(registry_t *r, job_t *j) {
  key_remove(r, j);
  job_t **pp = &r->buckets[id_hash(j->id) & (r->nbuckets - 1)];
  while (*pp != j)
    pp = &(*pp)->_hnext;
  *pp = j->_hnext;
  DLIST_UNLINK(r->newest, r->oldest, j, _all_prev, _all_next);
  index_status_unlink(r, j);
  r->njobs--;
}

/* ---- queue views ---- */

void index_queue_insert(registry_t *r, job_t *j) {
  lane_t l = j->_lane;
  job_t *after = r->q_tail[l];
  while (after && after->_seq > j->_seq)
    after = after->_q_prev;
  job_t *before = after ? after->_q_next : r->q_head[l];
  j->_q_prev = after;
  j->_q_next = before;
  if (after)
    after->_q_next = j;
  else
    r->q_head[l] = j;
  if (before)
    before->_q_prev = j;
  else
    r->q_tail[l] = j;
  j->_in_queue_list = true;
  r->nqview[l]++;
}

void index_queue_unlink(registry_t *r, job_t *j) {
  if (!j->_in_queue_list)
    return;
  DLIST_UNLINK(r->q_head[j->_lane], r->q_tail[j->_lane], j, _q_prev, _q_next);
  j->_in_queue_list = false;
  r->nqview[j->_lane]--;
}

/* A job in a queue view waits in its pool, or (kept for the next start by
 * a durable drain) nowhere: either way it has not started. */
static bool waiting(const job_t *j) { return !j->_item || pool_work_state(&j->_item->work) == POOL_WORK_QUEUED; }

void index_prune_queues(registry_t *r) {
  for (int l = 0; l < LANE_N; l++)
    while (r->q_head[l] && !waiting(r->q_head[l])) {
      job_t *j = r->q_head[l];
      registry_refresh(r, j); /* processing, or final if already done */
      index_queue_unlink(r, j);
    }
}

/* ---- status lists ---- */

/* Files `j` in its status list by creation order. Jobs mostly change status
 * in creation order, so the walk from the newest end is short. */
void index_status_link(registry_t *r, job_t *j) {
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

void index_status_unlink(registry_t *r, job_t *j) {
  DLIST_UNLINK(r->s_newest[j->status], r->s_oldest[j->status], j, _s_prev, _s_next);
}

/* ---- registry.h: walking ---- */

job_t *registry_first_with(registry_t *r, job_status_t status) { return r->s_newest[status]; }
job_t *registry_next_with(const job_t *job, job_status_t status) {
  (void)status;
  return job->_s_next;
}
job_t *registry_newest(registry_t *r) { return r->newest; }
job_t *registry_older(job_t *job) { return job->_all_next; }
bool registry_in_queue(const job_t *job) { return job->_in_queue_list; }

void registry_sync(registry_t *r, size_t queued[LANE_N]) {
  index_prune_queues(r);
  job_t *j = r->s_newest[JOB_PROCESSING];
  while (j) {
    job_t *older = j->_s_next;
    registry_refresh(r, j); /* a finished one moves to its final list */
    j = older;
  }
  for (int l = 0; l < LANE_N; l++)
    queued[l] = r->nqview[l];
}

bool registry_queues_settled(const registry_t *r) {
  for (int l = 0; l < LANE_N; l++)
    if (r->q_head[l] && !waiting(r->q_head[l]))
      return false;
  return true;
}

size_t registry_position(registry_t *r, job_t *job) {
  if (r->cfg.cluster && !job->_item) /* its place in the shared queue when its row was kept */
    return job->status == JOB_QUEUED && !job->_accepting ? job->_cluster_pos : 0;
  registry_refresh(r, job);
  if (job->status != JOB_QUEUED || !job->_in_queue_list)
    return 0;
  index_prune_queues(r);
  if (job->status != JOB_QUEUED || !job->_in_queue_list)
    return 0;
  /* Walk from both ends at once: O(min(place, jobs behind it)), so a job
   * just submitted (the tail) costs O(1). */
  lane_t l = job->_lane;
  job_t *front = r->q_head[l], *back = r->q_tail[l];
  for (size_t k = 0; front && back; k++) {
    if (front == job)
      return k + 1;
    if (back == job)
      return r->nqview[l] - k;
    front = front->_q_next;
    back = back->_q_prev;
  }
  assert(!"a job in a queue view is found in it");
  return 0;
}

size_t registry_peek_position(const registry_t *r, const job_t *job) {
  if (r->cfg.cluster && !job->_item)
    return job->status == JOB_QUEUED && !job->_accepting ? job->_cluster_pos : 0;
  if (job->status != JOB_QUEUED || !job->_in_queue_list)
    return 0; /* (a job a worker just took shows the place it had: first) */
  /* Started jobs sit at the front (workers pop in order): skip them, then
   * walk from both ends as registry_position does. */
  lane_t l = job->_lane;
  const job_t *front = r->q_head[l], *back = r->q_tail[l];
  size_t n = r->nqview[l];
  while (front && front != job && !waiting(front)) {
    front = front->_q_next;
    n--;
  }
  for (size_t k = 0; front && back; k++) {
    if (front == job)
      return k + 1;
    if (back == job)
      return n - k;
    front = front->_q_next;
    back = back->_q_prev;
  }
  return 0;
}
