/* store: where jobs outlive the process. A small interface with three
 * backends: memory (nothing is kept; every write "commits" at once),
 * SQLite (one store thread owns the connection; see store/sqlite.c) and
 * PostgreSQL (the same, shared by several offload nodes: store/pg.c; the
 * cluster's reads, claims and conditional writes are the kinds marked
 * "postgres" below, and what the store thread learns by itself comes to
 * the loop as store events).
 *
 * The loop never calls SQLite and never waits for the store thread. It
 * hands the store writes (store_write): every write made during one loop
 * turn goes to the store thread at the end of that turn, and all writes
 * waiting when the thread is free become one transaction (group commit).
 * Each write's callback runs on the loop once its transaction committed or
 * failed; a submission answers its 202 from there.
 *
 * The semantics are the job's, not SQLite's: a row per job keyed by id and
 * ordered by a creation sequence, status transitions that only move
 * forward (or back to queued for a retry), an idempotency key unique while
 * its job lives, and deletion of old finished jobs in small batches. The
 * same rows and transitions map onto PostgreSQL (a later issue) without a
 * redesign.
 *
 * Threads: everything here is for the loop thread, except store_open and
 * store_load (main thread, before the loop serves) and store_close.
 * Ownership: a store_write_t is the caller's until its callback runs; the
 * store copies nothing but reads the record while the write is in flight,
 * so the record must stay unchanged until then. */
#ifndef OFFLOAD_STORE_STORE_H
#define OFFLOAD_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "offload/err.h"
#include "util/hist.h"

typedef struct store store_t;

typedef enum { STORE_MEMORY = 0, STORE_SQLITE, STORE_POSTGRES } store_kind_t;

/* One node of a cluster, as its heartbeat row says. */
typedef struct store_node {
  char *id, *url;
  int64_t started_at, last_heartbeat_at; /* wall ms (the database's clock) */
  bool alive;                            /* heartbeat within the lease */
  int workers_total, workers_busy;
  int streams; /* its open event streams: events are published while some node has one */
} store_node_t;

/* What the PostgreSQL store thread learns by itself, told to the loop
 * (store_config_t.on_event) in the order it happened. */
typedef enum {
  STORE_EV_UP = 1, /* connected (again): the database answers */
  STORE_EV_DOWN,   /* the connection is gone; writes fail until UP (reconnecting with backoff) */
  STORE_EV_NOTIFY, /* a notification on the cluster's channel: `payload` */
  STORE_EV_NODES,  /* after a heartbeat: every node (`nodes`), and jobs this node re-queued from dead ones */
  STORE_EV_LOST,   /* this node's heartbeat had lapsed: others may have taken its running jobs */
} store_event_kind_t;

typedef struct store_event {
  store_event_kind_t kind;
  char *payload;
  store_node_t *nodes;
  size_t nnodes;
  uint64_t requeued;  /* NODES: processing jobs of dead nodes this node re-queued (or failed) */
  uint64_t expired;   /* NODES: nodes this node found dead */
  struct store_event *_next;
} store_event_t;

typedef struct store_config {
  store_kind_t kind;
  const char *data_dir; /* SQLite: created when missing; holds offload.db */
  bool strict;          /* SQLite: synchronous=FULL (else NORMAL) */
  /* Retention on disk (0 = keep): finished jobs older than retention_ms,
   * and the oldest beyond max_finished, are deleted by the store thread in
   * small batches while it has nothing else to do. */
  int64_t retention_ms;
  uint64_t max_finished;
  /* PostgreSQL: */
  const char *pg_url;     /* libpq connection string or URL */
  const char *files_dir;  /* this node's files root (inputs are copied there before their row commits) */
  const char *node_id;    /* this node's name in the cluster (unique) */
  const char *node_url;   /* how the others reach it (--advertise-url) */
  int64_t heartbeat_ms;   /* how often it heartbeats */
  int64_t lease_ms;       /* a node silent this long is dead */
  /* Loop thread: each store event, valid during the call. */
  void (*on_event)(const store_event_t *ev, void *data);
  void *event_data;
} store_config_t;

/* One output file of a job (store/files.h says where it lives). */
typedef struct store_file {
  char *name;         /* files_name_ok */
  char *content_type; /* e.g. "image/webp" */
  int64_t bytes;
} store_file_t;

/* One job as the store keeps it: plain data. Strings are owned by whoever
 * fills the record (the loop for writes, the store for loaded rows, freed
 * with store_job_fini). NULL = SQL NULL. */
typedef struct store_job {
  uint64_t seq; /* creation order, > 0, unique */
  char id[24];
  char *task;
  char *params; /* JSON text */
  const char *status; /* "queued" .. "canceled" (a static string) */
  int attempts, retries;
  int64_t timeout_ms;
  int64_t created_at, started_at, finished_at; /* wall ms; 0 = NULL */
  char *result; /* JSON text */
  char *err_code, *err_message;
  char *idem_key;
  /* Its files (an insert or update with nfiles > 0 writes their rows; a
   * load or fetch fills them). Owned like the strings. */
  store_file_t *files;
  size_t nfiles;
  /* Its input (POST /jobs/<task>): size and media type (input_type NULL =
   * none). An insert with input_fd >= 0 (owned by the record: closed by
   * store_job_fini) copies it to <data-dir>/files/<id>/.input, synced like
   * the row, before the row commits. */
  int64_t input_bytes;
  char *input_type;
  int input_fd; /* +1: 0 = none */
  /* PostgreSQL (cluster) columns: */
  char *owner;           /* the node running it (processing), or that ran it last; NULL = none */
  char *pin;             /* the node holding its input on disk: only it may claim the job; NULL = any */
  double progress;       /* as its owner last wrote it */
  int64_t retry_at;      /* wall ms before which no node claims it again (0 = now) */
  bool cancel_requested; /* a DELETE reached it while it ran */
  int token;             /* an UPDATE or PROGRESS of a claimed job: the attempt its claim made (0 = never claimed) */
  uint64_t place;        /* a read: a queued job's place in the shared queue (0 = not queued) */
} store_job_t;

void store_job_fini(store_job_t *j);
/* Frees a list of nodes (store_event_t.nodes, copies of it). */
void store_nodes_free(store_node_t *nodes, size_t n);
/* Frees `n` rows and the array (store_write_t.out). */
void store_rows_free(store_job_t *rows, size_t n);

typedef enum {
  STORE_W_INSERT = 1, /* a new job (every column) */
  STORE_W_UPDATE,     /* status, attempts, times, result, error of an existing job (task, params, key unread) */
  STORE_W_DELETE,     /* a finished job the loop let go of (retention): only `id` is read; its files go too */
  STORE_R_FETCH,      /* a read, in order with the writes: the rows of `ids` into `rows` */
  /* PostgreSQL only: */
  STORE_W_PROGRESS, /* `job`'s progress (id, attempts = the claim's token) */
  STORE_W_CANCEL,   /* a client's cancel of job ids[0] (nids 1, rows[1]) wherever it is: rows[0] the job after it,
                       `prev_status` what it was (NULL: no such job) */
  STORE_R_CLAIM,    /* claims up to `max` queued jobs of `tasks` for this node, oldest first: into out/nout */
  STORE_R_LIST,     /* GET /jobs: up to `max` jobs (of `status`, or all), newest first, into out/nout;
                       `count` = the place in the queue of the newest queued one listed */
} store_write_kind_t;

typedef struct store_write store_write_t;
/* Loop thread, once the write's transaction committed (rc 0) or failed
 * (OFF_ESTORE: disk full or I/O error; OFF_ESTOPPED: the store closed). */
typedef void (*store_write_cb)(store_write_t *w, int rc, void *data);

struct store_write {
  store_write_kind_t kind;
  const store_job_t *job; /* borrowed until the callback (writes) */
  store_write_cb cb;      /* may be NULL (fire and forget) */
  void *data;
  /* STORE_R_FETCH: `nids` ids (borrowed until the callback) and as many
   * zeroed records, filled by the store: rows[i] is job ids[i], or left
   * zeroed (seq 0) when there is no such row. The caller frees each with
   * store_job_fini. The memory backend finds nothing. */
  const char (*ids)[24];
  size_t nids;
  store_job_t *rows;
  /* PostgreSQL results. An INSERT whose idempotency key another job holds
   * fails OFF_EEXIST with that job in out[0]; an UPDATE or PROGRESS whose
   * token no longer holds fails OFF_EFENCED. `out` (nout rows) is the
   * store's allocation, the caller's once the callback runs: free each row
   * with store_job_fini, then the array. STORE_R_FETCH of one queued job
   * sets `count` to its place in the queue. */
  size_t max;
  const char *status;      /* STORE_R_LIST: a status name or NULL */
  const char *tasks;       /* STORE_R_CLAIM: the task names to claim, a JSON array of strings */
  const char *prev_status; /* STORE_W_CANCEL */
  store_job_t *out;
  size_t nout;
  uint64_t count;
  bool place; /* STORE_R_FETCH (PostgreSQL): count each queued row's place in the queue (rows[i].place) */
  /* Private to the store. */
  int _rc;
  store_write_t *_next;
};

/* (Retention: the registry deletes each job it evicts with a DELETE write,
 * in order with the other writes, so disk and memory keep the same jobs
 * and a freed Idempotency-Key is free on disk too; the store's own expiry
 * below is the safety net for rows nobody deletes, and runs at least once
 * a second however busy the store is.) */

/* Opens the store: creates the data dir and database as needed, migrates
 * the schema forward, takes the data dir's lock. Returns NULL with a
 * message for a person in err (naming the path and the fix) on failure:
 * a read-only dir, a file that is not a database, a newer schema, a data
 * dir another offload holds. Nothing is deleted or overwritten then. */
store_t *store_open(uv_loop_t *loop, const store_config_t *cfg, char *err, size_t errsz);

/* Calls `row` for every stored job in creation order (main thread, before
 * serving; the row is valid during the call). Returns 0 or OFF_ESTORE. */
int store_load(store_t *s, void (*row)(const store_job_t *j, void *data), void *data);

/* Queues a write (or a read) for the end of this loop turn. Always succeeds; the
 * callback reports the outcome. */
void store_write(store_t *s, store_write_t *w);

/* Flushes what is queued, waits for the store thread to finish it, and
 * closes. Loop thread, at shutdown (blocks for at most one commit). */
void store_close(store_t *s);

/* Writes committed / failed so far, and transactions (for /metrics). */
typedef struct store_stats {
  uint64_t commits, writes, failures;
  uint64_t reads;   /* STORE_R_FETCH requests answered */
  uint64_t expired; /* finished jobs deleted by retention */
  uint64_t fenced;  /* writes refused because another node holds the job now */
  uint64_t claimed; /* jobs this node claimed */
} store_stats_t;
const store_stats_t *store_stats(const store_t *s);
/* Copies the database round-trip histogram (seconds per statement
 * exchange; PostgreSQL only) into *out. Loop thread. */
void store_roundtrip(store_t *s, hist_t *out);
/* What the heartbeat tells the others: this node's workers and open event
 * streams. Loop thread; read by the store thread. */
void store_set_load(store_t *s, int workers_total, int workers_busy, int streams);
/* False between a STORE_EV_DOWN and the next STORE_EV_UP (the loop's view;
 * always true for memory and SQLite). */
bool store_ok(const store_t *s);
/* The SQLite store's data dir (its files live under it: store/files.h),
 * or NULL for the memory store. */
const char *store_data_dir(const store_t *s);
store_kind_t store_kind(const store_t *s);

#endif
