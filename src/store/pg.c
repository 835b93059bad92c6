/* store/pg: see pg.h. The connection and its life, the schema, this
 * node's heartbeat and lease, the reaper, notifications.
 *
 * DESIGN (docs/CLUSTER.md has the whole picture). Time that decides a
 * lease is the database's (now()), so nodes' clocks may differ. A node's
 * heartbeat updates its row every --heartbeat-ms; a node whose row is
 * older than --lease-timeout-ms is dead, and any live node's reaper (run
 * after each heartbeat) marks it lost and re-queues its processing jobs
 * (counting the attempt the claim made; failed `interrupted` when none is
 * left). A node only reaps once it has itself been connected for a whole
 * lease, so that after an outage of the database every node has had the
 * time to heartbeat again before anyone is judged. A node that learns from
 * its own heartbeat that it was marked lost tells the loop (STORE_EV_LOST),
 * which checks its running jobs; its writes are conditional on their claim
 * tokens anyway (pg_apply.c), so it can never overwrite the retry. */
#include "store/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define PG_SCHEMA_VERSION 1
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

static const double rtt_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

/* migrations[k] takes the schema from version k to k + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE jobs ("
    "  seq bigserial PRIMARY KEY,"
    "  id text NOT NULL UNIQUE,"
    "  task text NOT NULL,"
    "  params text NOT NULL,"
    "  status text NOT NULL CHECK (status IN ('queued','processing','complete','failed','canceled')),"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  retries integer NOT NULL DEFAULT 0,"
    "  timeout_ms bigint NOT NULL DEFAULT 0,"
    "  created_at bigint NOT NULL,"
    "  started_at bigint,"
    "  finished_at bigint,"
    "  result text,"
    "  error_code text,"
    "  error_message text,"
    "  idempotency_key text,"
    "  input_type text,"
    "  input_bytes bigint NOT NULL DEFAULT 0,"
    "  files text,"
    "  owner text,"
    "  pin text,"
    "  progress double precision NOT NULL DEFAULT 0,"
    "  run_at bigint NOT NULL DEFAULT 0,"
    "  cancel_requested boolean NOT NULL DEFAULT false"
    ");"
    "CREATE UNIQUE INDEX jobs_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX jobs_queue ON jobs (seq) WHERE status = 'queued';"
    "CREATE INDEX jobs_running ON jobs (owner) WHERE status = 'processing';"
    "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;"
    "CREATE TABLE nodes ("
    "  id text PRIMARY KEY,"
    "  url text NOT NULL,"
    "  started_at timestamptz NOT NULL,"
    "  last_heartbeat timestamptz NOT NULL,"
    "  lost boolean NOT NULL DEFAULT false,"
    "  workers_total integer NOT NULL DEFAULT 0,"
    "  workers_busy integer NOT NULL DEFAULT 0,"
    "  streams integer NOT NULL DEFAULT 0"
    ");",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == PG_SCHEMA_VERSION, "one migration per version");

/* ---- statements ---- */

void pg_down(pg_t *p) {
  if (p->conn) {
    PQfinish(p->conn);
    p->conn = NULL;
  }
  p->next_connect = clock_mono_ms() + p->backoff;
  if (!p->told_down) {
    p->told_down = true;
    log_warn("store: lost the PostgreSQL connection; reconnecting (submissions answer 503 meanwhile)");
    store_event_t *ev = calloc(1, sizeof *ev);
    if (ev) {
      ev->kind = STORE_EV_DOWN;
      p->post(ev, p->post_data);
    }
  }
}

PGresult *pg_exec(pg_t *p, const char *sql, int nparams, const char *const *params) {
  if (!p->conn)
    return NULL;
  uint64_t t0 = clock_mono_ns();
  PGresult *res = PQexecParams(p->conn, sql, nparams, NULL, params, NULL, NULL, 0);
  double dt = (double)(clock_mono_ns() - t0) / 1e9;
  pthread_mutex_lock(&p->hmu);
  hist_observe(&p->rtt, dt);
  pthread_mutex_unlock(&p->hmu);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return res;
  if (PQstatus(p->conn) == CONNECTION_BAD) {
    PQclear(res);
    pg_down(p);
    return NULL;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
  msg[strcspn(msg, "\n")] = '\0';
  log_warn("store: a PostgreSQL statement failed: %s", msg);
  PQclear(res);
  return NULL;
}

/* Several statements, no parameters (the schema's migrations). */
static int pg_script(pg_t *p, const char *sql) {
  PGresult *res = PQexec(p->conn, sql);
  int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok)
    log_warn("store: a PostgreSQL migration failed: %s", res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
  PQclear(res);
  return ok ? 0 : -1;
}

int pg_cmd(pg_t *p, const char *sql, int nparams, const char *const *params) {
  PGresult *res = pg_exec(p, sql, nparams, params);
  PQclear(res);
  return res ? 0 : -1;
}

/* ---- notifications ---- */

void pg_note_add(pg_t *p, pg_note_t *n, char kind, const char *a, const char *b) {
  size_t need = 4 + (a ? strlen(a) + 1 : 0) + (b ? strlen(b) + 1 : 0);
  if (n->len + need > PG_NOTIFY_MAX && n->any) { /* this payload is full: send it, start another */
    pg_note_send(p, n);
  }
  if (!n->any) {
    n->cap = PG_NOTIFY_MAX + 64;
    if (!n->buf && !(n->buf = malloc(n->cap)))
      return;
    n->len = (size_t)snprintf(n->buf, n->cap, "%s", p->cfg.node_id);
    n->any = true;
  }
  n->len += (size_t)snprintf(n->buf + n->len, n->cap - n->len, "\n%c%s%s%s%s", kind, a ? " " : "", a ? a : "",
                             b ? " " : "", b ? b : "");
  if (n->len >= n->cap)
    n->len = n->cap - 1;
}

int pg_note_send(pg_t *p, pg_note_t *n) {
  int rc = 0;
  if (n->any && n->buf) {
    const char *v[] = {PG_CHANNEL, n->buf};
    rc = pg_cmd(p, "SELECT pg_notify($1, $2)", 2, v);
  }
  n->any = false;
  n->len = 0;
  return rc;
}

static void read_notifies(pg_t *p) {
  if (!p->conn)
    return;
  if (!PQconsumeInput(p->conn)) {
    pg_down(p);
    return;
  }
  PGnotify *nt;
  while ((nt = PQnotifies(p->conn)) != NULL) {
    if (strstr(nt->extra, "\nS"))
      p->publish_events = true; /* someone opened an event stream */
    store_event_t *ev = calloc(1, sizeof *ev);
    if (ev && (ev->payload = strdup(nt->extra)) != NULL) {
      ev->kind = STORE_EV_NOTIFY;
      p->post(ev, p->post_data);
    } else {
      free(ev);
    }
    PQfreemem(nt);
  }
}

/* ---- connecting ---- */


/* Brings the schema to PG_SCHEMA_VERSION under an advisory lock (nodes
 * starting together migrate once). -1 with err set. */
static int migrate(pg_t *p, char *err, size_t errsz) {
  if (pg_cmd(p, "BEGIN", 0, NULL) != 0 || pg_cmd(p, "SELECT pg_advisory_xact_lock(7401174011)", 0, NULL) != 0 ||
      pg_cmd(p, "CREATE TABLE IF NOT EXISTS offload_meta (key text PRIMARY KEY, value text NOT NULL)", 0, NULL) != 0)
    goto fail;
  PGresult *res = pg_exec(p, "SELECT value FROM offload_meta WHERE key = 'schema_version'", 0, NULL);
  if (!res)
    goto fail;
  int v = PQntuples(res) ? atoi(PQgetvalue(res, 0, 0)) : 0;
  PQclear(res);
  if (v > PG_SCHEMA_VERSION) {
    pg_cmd(p, "ROLLBACK", 0, NULL);
    snprintf(err, errsz,
             "the PostgreSQL database has offload schema version %d, newer than this offload knows (%d); run a "
             "newer offload, or point --pg-url at another database",
             v, PG_SCHEMA_VERSION);
    return -1;
  }
  for (; v < PG_SCHEMA_VERSION; v++) {
    char ver[24];
    const char *val[] = {pg_i64s(ver, v + 1)};
    if (pg_script(p, migrations[v]) != 0 ||
        pg_cmd(p,
               "INSERT INTO offload_meta (key, value) VALUES ('schema_version', $1)"
               " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
               1, val) != 0)
      goto fail;
  }
  if (pg_cmd(p, "COMMIT", 0, NULL) != 0)
    goto fail;
  return 0;
fail:
  if (p->conn)
    pg_cmd(p, "ROLLBACK", 0, NULL);
  snprintf(err, errsz, "could not create or migrate offload's schema in PostgreSQL: %s",
           p->conn ? PQerrorMessage(p->conn) : "the connection broke");
  err[strcspn(err, "\n")] = '\0';
  return -1;
}

static void quiet_notice(void *arg, const char *message) {
  (void)arg;
  log_debug("store: PostgreSQL: %s", message);
}

/* Connects and LISTENs. 0, or -1 with the reason in err. */
static int connect_now(pg_t *p, char *err, size_t errsz) {
  PGconn *c = PQconnectdb(p->cfg.pg_url);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    /* libpq's message names the host and the reason, never the password. */
    snprintf(err, errsz, "cannot connect to PostgreSQL (--pg-url): %s", c ? PQerrorMessage(c) : "out of memory");
    err[strcspn(err, "\n")] = '\0';
    PQfinish(c);
    return -1;
  }
  p->conn = c;
  PQsetNoticeProcessor(c, quiet_notice, NULL); /* "already exists, skipping" and the like */
  if (pg_cmd(p, "SET application_name = 'offload'", 0, NULL) != 0 || pg_cmd(p, "LISTEN " PG_CHANNEL, 0, NULL) != 0) {
    snprintf(err, errsz, "cannot LISTEN on PostgreSQL");
    pg_down(p);
    return -1;
  }
  p->up_since = clock_mono_ms();
  p->backoff = BACKOFF_MIN_MS;
  return 0;
}

/* A connection whose schema is in place: the batch statements, prepared. */
static int ready(pg_t *p) {
  if (pg_prepare(p) != 0) {
    pg_down(p);
    return -1;
  }
  return 0;
}

pg_t *pg_open(const store_config_t *cfg, pg_post_cb post, void *post_data, char *err, size_t errsz) {
  pg_t *p = calloc(1, sizeof *p);
  if (!p) {
    snprintf(err, errsz, "out of memory");
    return NULL;
  }
  p->cfg = *cfg;
  p->post = post;
  p->post_data = post_data;
  p->backoff = BACKOFF_MIN_MS;
  p->told_down = true; /* the first UP is told by the first service */
  /* "E" lines go out while some node has event streams open: a node
   * whose first stream opens heartbeats at once and says "S", and every
   * node starts sending them from its next batch; the heartbeats' node
   * list turns them off again when no node has a stream. */
  p->publish_events = false;
  pthread_mutex_init(&p->hmu, NULL);
  hist_init(&p->rtt, rtt_bounds, sizeof rtt_bounds / sizeof rtt_bounds[0]);
  if (connect_now(p, err, errsz) != 0 || migrate(p, err, errsz) != 0) {
    pg_close(p);
    return NULL;
  }
  if (ready(p) != 0) {
    snprintf(err, errsz, "cannot prepare offload's statements in PostgreSQL");
    pg_close(p);
    return NULL;
  }
  /* Its row is written by the store thread's first service, once the
   * server knows its port (cfg.node_id and node_url are filled by then). */
  p->next_heartbeat = 0;
  return p;
}

void pg_close(pg_t *p) {
  if (!p)
    return;
  if (p->conn)
    PQfinish(p->conn);
  pthread_mutex_destroy(&p->hmu);
  free(p);
}

void pg_set_load(pg_t *p, int total, int busy, int streams) {
  atomic_store(&p->load_total, total);
  atomic_store(&p->load_busy, busy);
  int before = atomic_exchange(&p->load_streams, streams);
  if (before == 0 && streams > 0)
    atomic_store(&p->beat_now, true); /* the caller wakes the store thread */
}

void pg_roundtrip(pg_t *p, hist_t *out) {
  pthread_mutex_lock(&p->hmu);
  *out = p->rtt;
  pthread_mutex_unlock(&p->hmu);
}

void pg_service(pg_t *p, int wake_fd) {
  int64_t now = clock_mono_ms();
  if (p->conn && !p->registered) {
    if (pg_register(p, true) == 0)
      p->registered = true;
    else
      pg_down(p);
  }
  if (!p->conn && now >= p->next_connect) {
    char err[512] = "";
    if (connect_now(p, err, sizeof err) == 0 && ready(p) == 0 && pg_register(p, !p->registered) == 0) {
      p->registered = true;
      log_info("store: connected to PostgreSQL again");
    } else {
      if (p->conn)
        pg_down(p);
      p->backoff = p->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff * 2;
      p->next_connect = now + p->backoff;
    }
  }
  if (p->conn && p->told_down) {
    p->told_down = false;
    p->next_heartbeat = 0;
    store_event_t *ev = calloc(1, sizeof *ev);
    if (ev) {
      ev->kind = STORE_EV_UP;
      p->post(ev, p->post_data);
    }
  }
  if (p->conn && (now >= p->next_heartbeat || atomic_exchange(&p->beat_now, false))) {
    p->next_heartbeat = now + p->cfg.heartbeat_ms;
    pg_beat(p);
  }
  read_notifies(p);
  /* Wait for the next due time, a wake-up, or a notification. */
  now = clock_mono_ms();
  int64_t due = p->conn ? p->next_heartbeat : p->next_connect;
  int timeout = due > now ? (int)(due - now) : 0;
  struct pollfd fds[2] = {{.fd = wake_fd, .events = POLLIN}, {.fd = p->conn ? PQsocket(p->conn) : -1, .events = POLLIN}};
  if (poll(fds, 2, timeout) > 0) {
    if (fds[0].revents & POLLIN) {
      uint64_t x;
      if (read(wake_fd, &x, sizeof x) < 0 && errno != EAGAIN)
        log_debug("store: wake-up read failed");
    }
    if (fds[1].revents)
      read_notifies(p);
  }
}

int pg_expire(pg_t *p, int64_t cutoff_ms, int batch) {
  char c[24], b[24];
  const char *v[] = {pg_i64s(c, cutoff_ms), pg_i64s(b, batch)};
  PGresult *res = pg_exec(p,
                          "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at < $1::bigint"
                          " ORDER BY finished_at LIMIT $2::int FOR UPDATE SKIP LOCKED)",
                          2, v);
  if (!res)
    return -1;
  int n = atoi(PQcmdTuples(res));
  PQclear(res);
  return n;
}
