/* store/pg_sql: the statements a batch sends (store/pg_apply.c), each
 * prepared once per connection and run by name: the SQL of inserts,
 * finals, progress, claims, cancels, reads and listings. Store thread. */
#include <stdbool.h>

#include "store/pg_int.h"
#include "util/log.h"


/* The notifications an UPDATE sends about the rows it changed: "F <id>"
 * for a final row, "E <id>" for another (when event streams want them),
 * 300 lines a notification (PostgreSQL's payload limit is 8000 bytes).
 * $2 is the node id; `rows` a CTE of (id, status); $3 says whether "E"
 * lines are wanted. */
#define NOTIFY_FROM(rows)                                                                                       \
  " nt AS (SELECT pg_notify('" PG_CHANNEL "', $2 || string_agg(E'\\n' || CASE WHEN s.status IN ('processing',"     \
  " 'queued') THEN 'E ' ELSE 'F ' END || s.id, '')) FROM (SELECT id, status, (row_number() OVER ()) / 300 AS g"     \
  " FROM " rows " WHERE status NOT IN ('processing', 'queued') OR $3::bool) s GROUP BY s.g)"

static const char insert_sql[] =
    "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id text, task text, params text, status text,"
    " attempts int, retries int, timeout_ms bigint, created_at bigint, idempotency_key text, input_type text,"
    " input_bytes bigint, pin text, owner text, started_at bigint)),"
    " ins AS (INSERT INTO jobs (id, task, params, status, attempts, retries, timeout_ms, created_at,"
    " idempotency_key, input_type, input_bytes, pin, owner, started_at)"
    " SELECT id, task, params, status, attempts, retries, timeout_ms, created_at, idempotency_key, input_type,"
    " input_bytes, pin, owner, started_at FROM x"
    " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, seq)"
    /* the queued jobs before the batch's first (the snapshot before the insert) */
    " SELECT id, seq, (SELECT count(*) FROM jobs WHERE status = 'queued' AND seq < (SELECT min(seq) FROM ins))"
    " FROM ins ORDER BY seq";

static const char update_sql[] =
    "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id text, token int, status text, attempts int,"
    " started_at bigint, finished_at bigint, result text, error_code text, error_message text, files text,"
    " progress float8, run_at bigint)),"
    " u AS (UPDATE jobs SET status = x.status, attempts = x.attempts, started_at = x.started_at,"
    " finished_at = x.finished_at, result = x.result, error_code = x.error_code, error_message = x.error_message,"
    " files = x.files, progress = x.progress, run_at = x.run_at, cancel_requested = false,"
    " owner = CASE WHEN x.status = 'queued' THEN NULL ELSE jobs.owner END"
    " FROM x WHERE jobs.id = ANY($5::text[]) AND jobs.id = x.id"
    " AND ((jobs.status = 'processing' AND jobs.owner = $4 AND jobs.attempts = x.token)"
    " OR (x.token = 0 AND jobs.status = 'queued' AND jobs.owner IS NULL))"
    " RETURNING jobs.id, jobs.status),"
    NOTIFY_FROM("u")
    " SELECT id, status, (SELECT count(*) FROM nt) FROM u";

static const char progress_sql[] =
    "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(id text, token int, progress float8)),"
    " u AS (UPDATE jobs SET progress = x.progress FROM x"
    " WHERE jobs.id = ANY($5::text[]) AND jobs.id = x.id AND jobs.status = 'processing' AND jobs.owner = $4"
    " AND jobs.attempts = x.token"
    " RETURNING jobs.id, jobs.status),"
    NOTIFY_FROM("u")
    " SELECT id, status, (SELECT count(*) FROM nt) FROM u";

/* $1 node, $2 max, $3 now, $4 tasks (JSON), $5 the notification head, $6 "E" lines wanted. */
static const char claim_sql[] =
    "WITH c AS (SELECT seq FROM jobs WHERE status = 'queued' AND run_at <= $3::bigint AND (pin IS NULL OR pin = $1)"
    " AND task IN (SELECT json_array_elements_text($4::json))"
    " ORDER BY seq LIMIT $2::int FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE jobs SET status = 'processing', owner = $1, attempts = jobs.attempts + 1,"
    " started_at = GREATEST($3::bigint, jobs.created_at), progress = 0, cancel_requested = false"
    " FROM c WHERE jobs.seq = c.seq"
    " RETURNING " PG_JCOLS "),"
    " nt AS (SELECT pg_notify('" PG_CHANNEL "', $5 || string_agg(E'\\nE ' || s.id, '')) FROM (SELECT id,"
    " (row_number() OVER ()) / 300 AS g FROM u WHERE $6::bool) s GROUP BY s.g)"
    " SELECT " PG_COLS ", (SELECT count(*) FROM nt) FROM u";

/* $1 id, $2 node (the notification head), $3 now. The row as it was
 * (status, owner); a queued job is canceled, a running one asked to stop
 * (its node hears "C"). */
static const char cancel_sql[] =
    "WITH old AS (SELECT id, status, owner FROM jobs WHERE id = $1 FOR UPDATE),"
    " q AS (UPDATE jobs SET status = 'canceled', finished_at = $3::bigint, error_code = 'canceled',"
    " error_message = 'The job was canceled by a client request.', run_at = 0"
    " FROM old WHERE jobs.id = old.id AND old.status = 'queued' RETURNING jobs.id),"
    " p AS (UPDATE jobs SET cancel_requested = true FROM old WHERE jobs.id = old.id AND old.status = 'processing'"
    " RETURNING jobs.id, jobs.owner)"
    " SELECT old.status, old.owner,"
    " (SELECT pg_notify('" PG_CHANNEL "', $2 || E'\\nF ' || q.id) FROM q),"
    " (SELECT pg_notify('" PG_CHANNEL "', $2 || E'\\nC ' || p.owner || ' ' || p.id) FROM p) FROM old";

/* A fetch: each row (and, "fetch_place", a queued one's place in the
 * queue: a count over the queue's index, so only when it is shown). */
static const char fetch_sql[] = "SELECT " PG_COLS ", NULL::bigint FROM jobs WHERE id = ANY($1::text[])";
static const char fetch_place_sql[] =
    "SELECT " PG_COLS ", CASE WHEN status = 'queued' THEN (SELECT count(*) FROM jobs q WHERE q.status = 'queued'"
    " AND q.seq <= jobs.seq) END FROM jobs WHERE id = ANY($1::text[])";

static const char notify_sql[] = "SELECT pg_notify($1, $2)";
static const char delete_sql[] = "DELETE FROM jobs WHERE id = $1 AND finished_at IS NOT NULL";
static const char list_sql[] = "SELECT " PG_COLS " FROM jobs ORDER BY seq DESC LIMIT $1::int";
static const char list_status_sql[] = "SELECT " PG_COLS " FROM jobs WHERE status = $2 ORDER BY seq DESC LIMIT $1::int";
static const char queued_sql[] = "SELECT count(*) FROM jobs WHERE status = 'queued'";

/* Every statement a batch sends, prepared once per connection (parsing
 * and planning them each time cost the database more than running them). */
static const struct {
  const char *name, *sql;
  int nparams;
} prepared[] = {
    {"ins", insert_sql, 1},   {"upd", update_sql, 5},      {"prog", progress_sql, 5},
    {"claim", claim_sql, 6},  {"cancel", cancel_sql, 3},   {"fetch", fetch_sql, 1}, {"fetch_place", fetch_place_sql, 1},
    {"notify", notify_sql, 2}, {"delete", delete_sql, 1},  {"list", list_sql, 1},
    {"list_s", list_status_sql, 2}, {"queued", queued_sql, 0},
};

int pg_prepare(pg_t *p) {
  for (size_t i = 0; i < sizeof prepared / sizeof prepared[0]; i++) {
    PGresult *res = PQprepare(p->conn, prepared[i].name, prepared[i].sql, prepared[i].nparams, NULL);
    bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
      log_warn("store: cannot prepare a statement: %s", res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
    PQclear(res);
    if (!ok)
      return -1;
  }
  return 0;
}

