/* store/pg_nodes: this node's row in `nodes` and the lease (pg.h): its
 * registration, its heartbeat (which learns whether the others judged it
 * dead), the reaper of dead nodes' jobs, and the node list the heartbeat
 * hands the loop. Store thread only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/clock.h"
#include "util/log.h"

/* What happens to a processing job whose node is gone: canceled if a
 * client asked, failed `interrupted` when it has no run left, else queued
 * again (its claim counted the attempt). $1 = now (wall ms). */
#define REQUEUE_SET                                                                                              \
  "SET status = CASE WHEN cancel_requested THEN 'canceled' WHEN attempts > retries THEN 'failed'"                \
  " ELSE 'queued' END,"                                                                                          \
  " finished_at = CASE WHEN cancel_requested OR attempts > retries THEN $1::bigint END,"                        \
  " error_code = CASE WHEN cancel_requested THEN 'canceled' WHEN attempts > retries THEN 'interrupted' END,"      \
  " error_message = CASE WHEN cancel_requested THEN 'The job was canceled by a client request.'"                 \
  " WHEN attempts > retries THEN 'The node running the job stopped (its lease lapsed), and the job has no"      \
  " retries left.' END,"                                                                                        \
  " started_at = CASE WHEN cancel_requested OR attempts > retries THEN started_at END,"                         \
  " owner = CASE WHEN cancel_requested OR attempts > retries THEN owner END,"                                   \
  " progress = CASE WHEN cancel_requested OR attempts > retries THEN progress ELSE 0 END, run_at = 0"

/* This node's row. At start (`fresh`), a new life: its start time, and
 * what an earlier run of the same node id left processing (that run is
 * dead: this is its successor) queued again. After a reconnect, only a
 * row that went missing is made again: whether others judged this node
 * dead meanwhile is the next heartbeat's to find out. */
int pg_register(pg_t *p, bool fresh) {
  char now[24], total[24];
  const char *v[] = {p->cfg.node_id, p->cfg.node_url, pg_i64s(total, atomic_load(&p->load_total))};
  if (pg_cmd(p,
             fresh ? "INSERT INTO nodes (id, url, started_at, last_heartbeat, lost, workers_total)"
                     " VALUES ($1, $2, now(), now(), false, $3)"
                     " ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, started_at = now(), last_heartbeat = now(),"
                     " lost = false, workers_total = EXCLUDED.workers_total, workers_busy = 0, streams = 0"
                   : "INSERT INTO nodes (id, url, started_at, last_heartbeat, lost, workers_total)"
                     " VALUES ($1, $2, now(), now(), false, $3) ON CONFLICT (id) DO NOTHING",
             3, v) != 0)
    return -1;
  if (!fresh)
    return 0;
  const char *w[] = {pg_i64s(now, clock_wall_ms()), p->cfg.node_id};
  PGresult *res = pg_exec(p, "UPDATE jobs " REQUEUE_SET " WHERE status = 'processing' AND owner = $2 RETURNING status", 2, w);
  if (!res)
    return -1;
  int n = PQntuples(res);
  PQclear(res);
  if (n > 0) {
    log_warn("store: %d job(s) this node (%s) was running when it last stopped were queued again or failed", n,
             p->cfg.node_id);
    pg_note_t note = {0};
    pg_note_add(p, &note, 'N', NULL, NULL);
    pg_note_send(p, &note);
    free(note.buf);
  }
  return 0;
}

/* ---- heartbeat, reaper, nodes ---- */

static int heartbeat(pg_t *p, bool *lost) {
  char t[24], b[24], s[24];
  const char *v[] = {p->cfg.node_id, pg_i64s(t, atomic_load(&p->load_total)), pg_i64s(b, atomic_load(&p->load_busy)),
                     pg_i64s(s, atomic_load(&p->load_streams))};
  PGresult *res = pg_exec(p,
                          "UPDATE nodes n SET last_heartbeat = now(), lost = false, workers_total = $2,"
                          " workers_busy = $3, streams = $4"
                          " FROM (SELECT id, lost FROM nodes WHERE id = $1 FOR UPDATE) o WHERE n.id = o.id"
                          " RETURNING o.lost",
                          4, v);
  if (!res)
    return -1;
  int n = PQntuples(res);
  *lost = n > 0 && PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  if (n == 0) { /* our row is gone (someone cleaned the table): register again */
    *lost = true;
    return pg_register(p, false);
  }
  int streams = atomic_load(&p->load_streams);
  if (streams > 0 && p->last_streams == 0) { /* every node sends "E" lines from now on */
    p->publish_events = true;
    pg_note_t note = {0};
    pg_note_add(p, &note, 'S', NULL, NULL);
    pg_note_send(p, &note);
    free(note.buf);
  }
  p->last_streams = streams;
  return 0;
}

/* Marks dead nodes lost and takes back their processing jobs. */
static int reap(pg_t *p, uint64_t *nodes_dead, uint64_t *jobs) {
  char lease[24], now[24];
  const char *v[] = {pg_i64s(now, clock_wall_ms()), pg_i64s(lease, p->cfg.lease_ms)};
  if (pg_cmd(p, "BEGIN", 0, NULL) != 0)
    return -1;
  PGresult *res = pg_exec(p,
                          "WITH dead AS (UPDATE nodes SET lost = true WHERE NOT lost"
                          "   AND last_heartbeat < now() - $2::bigint * interval '1 millisecond' RETURNING id),"
                          " req AS (UPDATE jobs " REQUEUE_SET " WHERE status = 'processing' AND owner IN"
                          "   (SELECT id FROM nodes WHERE lost OR last_heartbeat < now() - $2::bigint * interval '1 millisecond')"
                          "   RETURNING id, status)"
                          " SELECT (SELECT count(*) FROM dead), id, status FROM req"
                          " UNION ALL SELECT (SELECT count(*) FROM dead), NULL, NULL",
                          2, v);
  if (!res) {
    if (p->conn)
      pg_cmd(p, "ROLLBACK", 0, NULL);
    return -1;
  }
  int n = PQntuples(res);
  *nodes_dead = n ? strtoull(PQgetvalue(res, n - 1, 0), NULL, 10) : 0;
  *jobs = n > 0 ? (uint64_t)(n - 1) : 0;
  pg_note_t note = {0};
  bool queued = false;
  for (int i = 0; i < n - 1; i++) {
    const char *st = PQgetvalue(res, i, 2);
    if (strcmp(st, "queued") == 0)
      queued = true;
    else
      pg_note_add(p, &note, 'F', PQgetvalue(res, i, 1), NULL);
  }
  if (queued)
    pg_note_add(p, &note, 'N', NULL, NULL);
  PQclear(res);
  int rc = pg_note_send(p, &note);
  free(note.buf);
  if (rc != 0 || pg_cmd(p, "COMMIT", 0, NULL) != 0) {
    if (p->conn)
      pg_cmd(p, "ROLLBACK", 0, NULL);
    return -1;
  }
  if (*jobs)
    log_warn("store: %" PRIu64 " job(s) of node(s) whose lease lapsed were queued again (or failed)", *jobs);
  return 0;
}

static store_node_t *list_nodes(pg_t *p, size_t *count) {
  char lease[24];
  const char *v[] = {pg_i64s(lease, p->cfg.lease_ms)};
  PGresult *res = pg_exec(p,
                          "SELECT id, url, (extract(epoch FROM started_at) * 1000)::bigint,"
                          " (extract(epoch FROM last_heartbeat) * 1000)::bigint,"
                          " NOT lost AND last_heartbeat >= now() - $1::bigint * interval '1 millisecond',"
                          " workers_total, workers_busy, streams FROM nodes ORDER BY id",
                          1, v);
  if (!res)
    return NULL;
  int n = PQntuples(res);
  store_node_t *nodes = calloc(n ? (size_t)n : 1, sizeof *nodes);
  for (int i = 0; nodes && i < n; i++) {
    nodes[i].id = strdup(PQgetvalue(res, i, 0));
    nodes[i].url = strdup(PQgetvalue(res, i, 1));
    nodes[i].started_at = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    nodes[i].last_heartbeat_at = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    nodes[i].alive = PQgetvalue(res, i, 4)[0] == 't';
    nodes[i].workers_total = atoi(PQgetvalue(res, i, 5));
    nodes[i].workers_busy = atoi(PQgetvalue(res, i, 6));
    nodes[i].streams = atoi(PQgetvalue(res, i, 7));
  }
  PQclear(res);
  *count = nodes ? (size_t)n : 0;
  return nodes;
}

void pg_beat(pg_t *p) {
  bool lost = false;
  if (heartbeat(p, &lost) != 0)
    return;
  if (lost) {
    log_warn("store: this node (%s) was presumed dead (its heartbeat lapsed); checking its running jobs",
             p->cfg.node_id);
    store_event_t *ev = calloc(1, sizeof *ev);
    if (ev) {
      ev->kind = STORE_EV_LOST;
      p->post(ev, p->post_data);
    }
  }
  uint64_t dead = 0, jobs = 0;
  if (clock_mono_ms() - p->up_since >= p->cfg.lease_ms && reap(p, &dead, &jobs) != 0)
    return;
  size_t n = 0;
  store_node_t *nodes = list_nodes(p, &n);
  if (!nodes)
    return;
  bool publish = atomic_load(&p->load_streams) > 0;
  for (size_t i = 0; i < n; i++)
    publish |= nodes[i].alive && nodes[i].streams > 0;
  p->publish_events = publish;
  store_event_t *ev = calloc(1, sizeof *ev);
  if (!ev) {
    store_nodes_free(nodes, n);
    return;
  }
  ev->kind = STORE_EV_NODES;
  ev->nodes = nodes;
  ev->nnodes = n;
  ev->requeued = jobs;
  ev->expired = dead;
  p->post(ev, p->post_data);
}

