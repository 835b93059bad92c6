/* store/pg_int: what pg.c (connection, schema, notifications, the store
 * thread's service), pg_nodes.c (this node's row, heartbeat, reaper),
 * pg_apply.c (batches of writes and reads), pg_sql.c (their statements)
 * and pg_rows.c (rows in and out) share. Store thread only, but
 * for the fields marked otherwise. */
#ifndef OFFLOAD_STORE_PG_INT_H
#define OFFLOAD_STORE_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <jansson.h>
#include <stdatomic.h>

#include "store/pg.h"

/* The one channel every node listens on. A notification's payload is
 * lines: the sender's node id, then "N" (queued jobs to claim), "C <owner>
 * <id>" (cancel a running job), "E <id>" (a job changed: for event
 * streams), "F <id>" (a job is final: for waiters and streams), "S" (the
 * sender opened its first event stream: send "E" lines from now on). */
#define PG_CHANNEL "offload"
#define PG_NOTIFY_MAX 7800 /* PostgreSQL's payload limit is 8000 bytes */

/* Every column of a job row, in the order pg_row reads them. */
#define PG_COLS                                                                                                   \
  "seq, id, task, params, status, attempts, retries, timeout_ms, created_at, started_at, finished_at, result,"    \
  " error_code, error_message, idempotency_key, input_type, input_bytes, files, owner, pin, progress, run_at,"   \
  " cancel_requested"
#define PG_JCOLS                                                                                                  \
  "jobs.seq, jobs.id, jobs.task, jobs.params, jobs.status, jobs.attempts, jobs.retries, jobs.timeout_ms,"         \
  " jobs.created_at, jobs.started_at, jobs.finished_at, jobs.result, jobs.error_code, jobs.error_message,"        \
  " jobs.idempotency_key, jobs.input_type, jobs.input_bytes, jobs.files, jobs.owner, jobs.pin, jobs.progress,"    \
  " jobs.run_at, jobs.cancel_requested"
#define PG_NCOLS 23

struct pg {
  store_config_t cfg; /* its strings are the server's, alive for the process */
  PGconn *conn;       /* NULL while down */
  int64_t up_since;   /* mono ms of the last connect: the reaper waits a lease after it */
  int64_t next_connect, backoff;
  int64_t next_heartbeat;
  bool told_down;       /* STORE_EV_DOWN was posted since the last UP */
  bool registered;      /* this node's row was written at start */
  bool publish_events;  /* some node has event streams open: send "E" lines */
  int last_streams;     /* the streams count of this node's last heartbeat */
  pg_post_cb post;
  void *post_data;
  /* Any thread: */
  _Atomic int load_total, load_busy, load_streams;
  atomic_bool beat_now; /* heartbeat at once (this node's first event stream opened) */
  pthread_mutex_t hmu; /* guards rtt */
  hist_t rtt;
};

/* Runs one statement with text parameters, timing the round trip. Returns
 * the result when it succeeded (the caller PQclear's it), else NULL
 * (logged; a broken connection is dropped: pg_down). */
PGresult *pg_exec(pg_t *p, const char *sql, int nparams, const char *const *params);
/* The same for a statement whose result is not needed: 0 or -1. */
int pg_cmd(pg_t *p, const char *sql, int nparams, const char *const *params);
/* Drops the connection and tells the loop (once). */
void pg_down(pg_t *p);

/* ---- pg_nodes.c ---- */
/* This node's row: at start (`fresh`) a new life, its old running jobs
 * queued again; after a reconnect only a missing row is made. 0 or -1. */
int pg_register(pg_t *p, bool fresh);
/* The heartbeat, the reaper (once connected for a lease), the node list
 * (STORE_EV_NODES, STORE_EV_LOST to the loop). */
void pg_beat(pg_t *p);

/* ---- pg_sql.c ---- */
/* Prepares the batch statements on a new connection. 0 or -1. */
int pg_prepare(pg_t *p);

/* ---- pg_rows.c ---- */
/* Fills `j` from row `i` of a PG_COLS result (strings malloc'd). 0 or
 * OFF_ENOMEM. */
int pg_row(const PGresult *res, int i, store_job_t *j);
/* The static name of a status ("failed" for an unknown one). */
const char *pg_status(const char *s);
/* The json_to_recordset records of an INSERT and of an UPDATE. */
json_t *pg_insert_rec(const store_job_t *j);
json_t *pg_update_rec(const store_job_t *j);
/* Compact text of `a` (consumed); NULL on ENOMEM. */
char *pg_dump(json_t *a);
/* `v` in decimal into buf (24 bytes). */
char *pg_i64s(char *buf, int64_t v);

/* Builds notification payloads (several when one would be too long) and
 * sends them inside the current transaction. */
typedef struct pg_note {
  char *buf;
  size_t len, cap;
  bool any;
} pg_note_t;
void pg_note_add(pg_t *p, pg_note_t *n, char kind, const char *a, const char *b);
int pg_note_send(pg_t *p, pg_note_t *n); /* 0 or -1; frees the buffer */

#endif
