/* registry: every live job (queued, processing, and finished ones still
 * retained), indexed by id, in creation order, plus the loop's side of the
 * hand-off to the pool.
 *
 * Threads: loop thread only; no locks. What a worker changes (progress, that a
 * job started, that it finished) is read from its work item's control slot
 * when someone asks (registry_get, registry_refresh, registry_position): a job
 * whose worker is done reads final at once. Its watches fire, and its item is
 * freed, when the pool's done callback (which the registry installs) reaches
 * it.
 *
 * Ownership: the registry owns every job_t and frees it on eviction (after
 * --retention-s or beyond --max-finished, oldest finished first) or at
 * registry_free. A job_t pointer is valid until control returns to the loop,
 * unless the holder keeps a watch on a non-final job: watches fire (and are
 * removed) when the job becomes final, before it can be evicted. A job whose
 * item is in the pool is never freed.
 *
 * Two pools may serve one registry: threads and processes, picked by each
 * kind's isolation (lane). Each lane has its own queue view, and a job's
 * queuePosition is its place in its lane. A job can give up on an item that
 * a worker still holds (its deadline passed, or a thread would not stop
 * after a cancel): the item is then an orphan, freed when the pool lets go
 * of it, and the job is free to finish or be retried.
 *
 * Retries: a job submitted with retries k > 0 that fails with
 * worker_crashed, out_of_memory or timeout goes back to `queued` after a
 * backoff (retry_backoff_ms x 2^(n-1) for the n-th retry, plus up to 10 %
 * jitter), at most k times; `attempts` counts the runs started. */
#ifndef OFFLOAD_REGISTRY_H
#define OFFLOAD_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "offload/pool.h"
#include "pool/item.h"
#include "store/store.h"
#include "tasks/tasks.h"
#include "util/hist.h"

#define JOB_ID_LEN 22 /* 128 random bits, base64url without padding */

typedef enum { JOB_QUEUED = 0, JOB_PROCESSING, JOB_COMPLETE, JOB_FAILED, JOB_CANCELED, JOB_NSTATUS } job_status_t;

/* The pool a job's kind runs on. */
typedef enum { LANE_THREAD = 0, LANE_PROCESS, LANE_N } lane_t;

typedef struct job job_t;
typedef struct job_watch job_watch_t;
/* Called once when the job becomes final; the watch is already removed. */
typedef void (*job_final_cb)(job_t *job, job_watch_t *w);
/* For a job submitted while the store must first keep it
 * (job_is_accepted false): called once its row is committed (rc 0; the
 * watch stays for the final call) or could not be (rc < 0, e.g.
 * OFF_ESTORE: the watch is removed, and the job is gone once this
 * returns). Optional (NULL). */
typedef void (*job_accept_cb)(job_t *job, job_watch_t *w, int rc);

struct job_watch {
  job_final_cb cb;
  job_accept_cb accepted;
  job_watch_t *_next, *_prev;
};

struct job {
  char id[JOB_ID_LEN + 1];
  const offload_task_def_t *def; /* points into the catalog */
  json_t *params;                /* owned; what the client sent, validated */
  job_status_t status;
  double progress;       /* never decreases; 1 when complete */
  json_t *result;        /* owned; NULL until complete */
  char *err_code;        /* owned; NULL unless failed or canceled */
  char *err_message;     /* owned */
  int64_t created_at;    /* wall ms */
  int64_t started_at;    /* wall ms, 0 = not yet */
  int64_t finished_at;   /* wall ms, 0 = not yet */
  bool cancel_requested; /* DELETE while processing, or shutdown */
  bool canceled_by_shutdown;
  int attempts;          /* runs started */
  int retries;           /* runs allowed after the first, for worker faults and timeouts */
  int64_t retry_at;      /* wall ms of the next run while waiting to retry, else 0 */
  char *idem_key;        /* owned; the Idempotency-Key it was submitted with, or NULL */
  /* Its output files once complete (owned; kept when the job goes cold).
   * They live in <files_root>/<id>/ (store/files.h). */
  store_file_t *files;
  size_t nfiles;
  /* Its input (POST /jobs/<task>): size and media type (owned), or 0/NULL. */
  int64_t input_bytes;
  char *input_type;
  /* The API's serialized JSON of this job once final (a final job never
   * changes, so big listings reuse it). Set by the API layer; owned by the
   * job (freed with it). NULL until then. */
  char *json_cache;
  size_t json_cache_len;
  /* The progress the API's event stream (api/events.c) last showed for
   * this job, so it sends a progress event only when it changed. The api's
   * field; the registry only zeroes it. */
  double shown_progress;

  /* Private to the registry. */
  item_t *_item;   /* while in the pool */
  bool _accepting; /* its row is on the way to the store: not in a pool yet */
  /* Writes to the store (registry/persist.c): each carries the job's state
   * when made, numbered; a failed write whose number is the last sent puts
   * the job on the unsaved list to be written again. A job with a write in
   * flight or unsaved is never evicted (the callback needs it). */
  uint32_t _writes;   /* in flight */
  uint32_t _ver_sent; /* the number of the last write made */
  bool _unsaved;      /* on the unsaved list */
  bool _changed_while_accepting; /* written once its insert is kept (its one write till then) */
  /* Cold (durable stores): an old finished job whose params, result and
   * error the registry let go of (they are on disk); the rest stays, so
   * lists, ids and keys still find it. See registry_cool. */
  bool _cold;
  uint64_t _params_hash; /* a cold job with a key, or a keyed job with secrets: the hash of its (real) params */
  bool _hashed;          /* _params_hash is what key checks compare */
  /* A task with secret params (a password): `params` is what is shown and
   * stored (secrets "[redacted]"); runs use these, the real ones, kept in
   * memory only while the job is live (freed when it is final). */
  json_t *_run_params;
  int _input_fd; /* the input while the job may run (+1: 0 = none); closed when final */
  job_t *_u_next;
  lane_t _lane;
  int64_t _timeout_ms;    /* each run's timeout; 0 = none */
  bool _run_counted;      /* this item's start is in `attempts` */
  uv_timer_t *_retry;     /* the backoff timer while waiting to retry */
  job_t *_b_prev, *_b_next; /* waiting to retry */
  uint64_t _finished_mono_ms;
  job_t *_hnext;
  job_t *_knext; /* idempotency-key hash chain */
  job_t *_all_prev, *_all_next; /* creation order, newest first */
  job_t *_q_prev, *_q_next;     /* loop's view of its lane's queue, oldest first */
  job_t *_f_prev, *_f_next;     /* finished, oldest first */
  job_t *_s_prev, *_s_next;     /* its status list, newest created first */
  uint64_t _seq;                /* creation order */
  bool _in_queue_list;
  bool _final_told; /* the observer heard REG_EV_FINAL */
  job_watch_t *_watches;
  /* A cluster's (registry/cluster.c): */
  int _token;              /* the attempt number its claim gave: its writes hold while the row still has it */
  bool _release;           /* let go of locally once its writes are done (the store has it) */
  bool _lost;              /* another node holds it now: its copy here is being canceled */
  size_t _cluster_pos;     /* its place in the shared queue when its row was kept */
  double _progress_sent;   /* the progress last written to the store */
  const store_job_t *_existing; /* during the accept callbacks of a taken key: the job holding it */
  store_job_t *_insert_rec;     /* its insert's record while on the way (registry_run_here changes it) */
  bool _run_here;               /* runs on this node, claimed at insert */
  int64_t _claimed_at;          /* its row's startedAt, written by its claim (its run shows the same) */
};

typedef struct registry_config {
  const tasks_catalog_t *catalog; /* borrowed; outlives the registry */
  size_t max_finished;            /* >= 1 */
  int64_t retention_ms;           /* >= 1 */
  int64_t default_timeout_ms;     /* 0 = none */
  int64_t retry_backoff_ms;       /* base of the retry backoff */
  uint64_t memory_mb;             /* the process workers' cap, for messages */
  store_t *store;                 /* borrowed; NULL = nothing is kept */
  /* Where jobs' output files go (borrowed; the server's): <root>/<job id>/.
   * With the SQLite store, <data-dir>/files (the store removes a job's files
   * with its row); otherwise a temp dir the registry cleans itself. NULL =
   * no files. */
  const char *files_root;
  /* With a durable store: how many finished jobs keep their params and
   * result in memory (the most recently finished); older ones are cold and
   * read back from the store. 0 = all of them. */
  size_t cache_finished;
  /* A cluster (the PostgreSQL store): the registry holds only this node's
   * jobs: those on the way to the store (until their 202) and those it
   * claimed (registry_adopt) until they are final and written; every other
   * job is read from the store. Writes of claimed jobs are fenced by their
   * token; retries go back to the shared queue. */
  bool cluster;
  const char *node_id; /* borrowed */
  /* Called when a job's item left a pool (a worker is free): the cluster
   * claims more. Optional. */
  void (*slot_free)(void *data);
  void *slot_data;
} registry_config_t;

/* Per-task counters for /metrics. */
typedef struct registry_stats {
  uint64_t (*finals)[JOB_NSTATUS]; /* [catalog index][status]; final statuses only */
  hist_t run_seconds;              /* started -> finished, jobs that ran */
  uint64_t submitted;
  uint64_t attempts; /* runs started */
  uint64_t retries;  /* runs scheduled again after a worker fault or timeout */
  uint64_t store_failures; /* state changes the store could not keep */
  size_t cold;             /* finished jobs whose params and result are only on disk */
  size_t jobs, finished;
} registry_stats_t;

typedef struct registry registry_t;

/* Returns NULL on allocation failure. The pools come later (registry_attach)
 * because a pool needs registry_on_done as its callback. */
registry_t *registry_new(uv_loop_t *loop, const registry_config_t *cfg);
/* The pool of each lane; a lane no kind uses may be NULL. */
void registry_attach(registry_t *r, pool_t *threads, pool_t *procs);
/* At start, before serving: a job the store kept. A final one is retained
 * as it was; a queued one is queued again, in creation order; one that was
 * processing when the server stopped is queued again while it has runs
 * left, else fails with code `interrupted`. Call in creation order, after
 * registry_attach. Returns 0 or OFF_ENOMEM. */
int registry_restore(registry_t *r, const store_job_t *row);

/* Frees every job. The pools must be freed first (so no item is in flight),
 * and the store closed (so no write is). */
void registry_free(registry_t *r);

/* Writes again, now, every job whose last write failed (the store retries
 * them each second by itself). For shutdown, before store_close. */
void registry_save_unsaved(registry_t *r);

/* The pool_done_cb and pool_stall_cb to give pool_new, with the registry as data. */
void registry_on_done(pool_work_t *w, void *data);
void registry_on_stall(pool_work_t *w, pool_stall_t why, void *data);
/* The pool's started callback (pool_config_t.started, data = registry):
 * files the job as processing at once (and writes it to the store). */
void registry_on_started(pool_work_t *w, void *data);

/* Creates a queued job running `def` with `params` (borrowed, copied; must be
 * valid for def) and hands it to its lane's pool. timeout_ms < 0 takes the
 * default; retries 0..10. Returns 0 and sets *out, or OFF_EFULL (queue
 * full), OFF_ESTOPPED (draining) or OFF_ENOMEM; on error nothing is
 * registered. */
int registry_submit(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                    int retries, job_t **out);
/* The same, holding an idempotency key (copied; NULL = none): the caller
 * checked registry_find_key first. */
int registry_submit_keyed(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                          int retries, const char *key, job_t **out);
/* The same with an input (the body of POST /jobs/<task>): `input_fd` (a
 * memfd holding `input_len` bytes of media type `input_type`) is taken by
 * the job whether this succeeds or not. A durable store copies it to disk
 * before the job is accepted. */
int registry_submit_input(registry_t *r, const offload_task_def_t *def, const json_t *params, int64_t timeout_ms,
                          int retries, const char *key, int input_fd, int64_t input_len, const char *input_type,
                          job_t **out);
/* The live or retained job submitted with this key, or NULL. */
job_t *registry_find_key(registry_t *r, const char *key);

/* The job with this id, its status and progress brought up to date, or NULL. */
job_t *registry_get(registry_t *r, const char *id);
/* Brings status/progress/startedAt up to date from the worker's atomics. */
void registry_refresh(registry_t *r, job_t *job);
/* 1-based place in its lane's queue of a queued job; 0 when not queued (or
 * waiting to retry). O(min(place, jobs behind it)): O(1) for a job just
 * submitted. */
size_t registry_position(registry_t *r, job_t *job);

/* Brings every job's status up to date with its worker (O(workers)) and
 * fills queued[lane] with the number of jobs in each lane's queue. After it,
 * the k-th job of a lane's queue met going from newest to oldest (k from 0)
 * has place `queued[lane] - k` (registry_in_queue says which queued jobs are
 * in one). */
void registry_sync(registry_t *r, size_t queued[LANE_N]);
bool registry_in_queue(const job_t *job);
/* True while no worker has taken a job since the last registry_sync (the
 * counts it gave still hold). O(lanes), changes nothing. */
bool registry_queues_settled(const registry_t *r);

/* Jobs of one status, newest created first: O(1) per step. Call
 * registry_sync first for an up-to-date view; take the next job before
 * refreshing the current one (a refresh can move it to another status). */
job_t *registry_first_with(registry_t *r, job_status_t status);
job_t *registry_next_with(const job_t *job, job_status_t status);

/* Cancels: returns 0 when the job was queued and is now canceled, 1 when it is
 * processing and cancellation was requested (it becomes canceled soon), or
 * OFF_EBUSY when it is already final. */
int registry_cancel(registry_t *r, job_t *job);

/* Newest-created first; NULL at the end. */
job_t *registry_newest(registry_t *r);
job_t *registry_older(job_t *job);

void registry_watch(job_t *job, job_watch_t *w);
void registry_unwatch(job_t *job, job_watch_t *w);

/* What a job just did, as the observer hears it. */
typedef enum {
  REG_EV_CREATED = 0, /* registered and queued (a durable store: once its row is kept) */
  REG_EV_STARTED,     /* filed as processing (when the loop learns a worker took it; a run that
                         ended before that is told by REG_EV_FINAL alone) */
  REG_EV_RETRY,       /* a run failed and the job waits out its backoff (queued, retryAt set) */
  REG_EV_FINAL,       /* complete, failed or canceled: once per job, before it can be evicted */
} registry_event_t;
/* Called on the loop thread from inside the registry's own calls (submit,
 * refresh, the pool's callbacks, cancel, drain), after the job's record
 * changed; `job` is valid for the call. The observer may read jobs and call
 * registry_peek_position, and must not change the registry (no submit,
 * cancel, get, refresh or position: the registry may be in the middle of a
 * walk). */
typedef void (*registry_observer_cb)(job_t *job, registry_event_t ev, void *data);
/* One observer (the api's event stream); NULL removes it. */
void registry_set_observer(registry_t *r, registry_observer_cb cb, void *data);
/* The queue place registry_position would give, changing nothing: jobs a
 * worker took but no refresh filed yet are skipped, not filed (the job
 * itself, if taken, shows the place it had: 1). 0 when the job is in no
 * queue. For observers. */
size_t registry_peek_position(const registry_t *r, const job_t *job);

static inline bool job_is_final(const job_t *j) { return j->status >= JOB_COMPLETE; }
static inline lane_t job_lane(const job_t *j) { return j->_lane; }
/* False while a durable store has not yet committed the job's row: then a
 * client gets its 202 from a watch's `accepted` call, not at once. */
static inline bool job_is_accepted(const job_t *j) { return !j->_accepting; }
/* True for a finished job whose params, result and error are only on disk:
 * read its row (store.h, STORE_R_FETCH) to show it. */
static inline bool job_is_cold(const job_t *j) { return j->_cold; }
/* True once the observer heard the job's REG_EV_FINAL (a job can read
 * final a moment before: a lookup that saw its worker done). */
static inline bool job_final_told(const job_t *j) { return j->_final_told; }

/* Whether `params` are the params `j` was submitted with (a cold job
 * compares hashes). For Idempotency-Key checks. */
bool registry_same_params(const job_t *j, const json_t *params);
/* A 64-bit hash of params' canonical text (sorted keys): equal params, equal
 * hashes. */
uint64_t registry_params_hash(const json_t *params);

/* After every stored job was restored (registry_restore): the oldest
 * finished ones beyond cache_finished go cold. */
void registry_restored(registry_t *r);
const char *job_status_name(job_status_t s);

/* Shutdown: refuse new jobs (OFF_ESTOPPED) and cancel every queued one. */
void registry_drain(registry_t *r);
/* Requests cancellation of every processing job. */
void registry_cancel_running(registry_t *r);
/* Jobs whose item is in the pool. */
size_t registry_in_flight(const registry_t *r);
/* Workers of a lane's pool neither busy nor awaited by a queued item. */
size_t registry_lane_free(const registry_t *r, lane_t lane);
/* Called (once per registration) when in-flight drops to 0 while draining. */
void registry_on_idle(registry_t *r, void (*cb)(void *data), void *data);

const registry_stats_t *registry_stats(registry_t *r);

/* ---- a cluster (registry/cluster.c) ---- */

/* Takes a job this node claimed from the store (`row`: processing, its
 * attempt counted, owner this node) and hands it to its pool. 0, or
 * OFF_ENOMEM (the job is then written back as failed). */
int registry_adopt(registry_t *r, const store_job_t *row);
/* A job just submitted (still accepting) runs on this node: its row goes
 * in claimed by this node (processing, attempt 1), and the job stays here
 * (replies held on it, the seed's status URL). Nothing without a cluster. */
void registry_run_here(registry_t *r, job_t *j);
/* Another node holds `j` now (a fenced write, or this node's lease
 * lapsed): its copy here is canceled, and nothing it does is written. */
void registry_lose(registry_t *r, job_t *j);
/* A client's DELETE on another node reached this node's running job. */
void registry_cancel_remote(registry_t *r, const char *id);
/* Writes the progress of every running job whose progress moved since it
 * was last written (at most twice a second: the caller's timer). */
void registry_write_progress(registry_t *r);
/* A secret param's real value stays on the node that accepted the job
 * (the store keeps it redacted); that node claims it (its row is pinned). */
bool registry_keeps_secret(const registry_t *r, const char *id);

#endif
