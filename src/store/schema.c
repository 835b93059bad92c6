/* store/schema: see schema.h.
 *
 * The rows are a job's, in terms PostgreSQL shares: one `jobs` row per job
 * keyed by its id and ordered by `seq` (creation), a status column whose
 * values are the API's, an idempotency key unique among live rows, and a
 * `job_files` table naming files under the data dir (binary results: the
 * file <data-dir>/files/<job id>/<name>, deleted with its job). */
#include "store/schema.h"

#include <stdio.h>

/* migrations[k] takes a database from version k to k + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE jobs ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  task TEXT NOT NULL,"
    "  params TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','processing','complete','failed','canceled')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  retries INTEGER NOT NULL DEFAULT 0,"
    "  timeout_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER,"
    "  finished_at INTEGER,"
    "  result TEXT,"
    "  error_code TEXT,"
    "  error_message TEXT,"
    "  idempotency_key TEXT UNIQUE"
    ");"
    "CREATE INDEX jobs_live ON jobs(status, seq) WHERE status IN ('queued','processing');"
    "CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;"
    "CREATE TABLE job_files ("
    "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  PRIMARY KEY (job_id, name)"
    ");",
    /* 1 -> 2: a file's media type, for GET /jobs/<id>/files/<name>. */
    "ALTER TABLE job_files ADD COLUMN content_type TEXT NOT NULL DEFAULT 'application/octet-stream';",
    /* 2 -> 3: a job's input (POST /jobs/<task>), kept in files/<id>/.input. */
    "ALTER TABLE jobs ADD COLUMN input_type TEXT;"
    "ALTER TABLE jobs ADD COLUMN input_bytes INTEGER NOT NULL DEFAULT 0;",
};

#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migrations / sizeof migrations[0] == SCHEMA_VERSION, "one migration per version");

static int user_version(sqlite3 *db, int *v, char *err, size_t errsz) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    *v = sqlite3_column_int(st, 0);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK)
    snprintf(err, errsz, "%s", sqlite3_errstr(rc));
  return rc == SQLITE_OK ? 0 : -1;
}

static int step_to(sqlite3 *db, int from, char *err, size_t errsz) {
  char *msg = NULL;
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d;", from + 1);
  if (sqlite3_exec(db, "BEGIN IMMEDIATE;", NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_exec(db, migrations[from], NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK || sqlite3_exec(db, "COMMIT;", NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errsz, "migration to schema version %d failed: %s", from + 1, msg ? msg : "unknown error");
    sqlite3_free(msg);
    sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

int schema_migrate_to(sqlite3 *db, int upto, char *err, size_t errsz) {
  int v = 0;
  if (user_version(db, &v, err, errsz) != 0)
    return -1;
  for (; v < upto && v < NMIGRATIONS; v++)
    if (step_to(db, v, err, errsz) != 0)
      return -1;
  return 0;
}

int schema_migrate(sqlite3 *db, const char *path, char *err, size_t errsz) {
  int v = 0;
  if (user_version(db, &v, err, errsz) != 0)
    return -1;
  if (v > SCHEMA_VERSION) {
    snprintf(err, errsz,
             "%s has schema version %d, newer than this offload knows (%d); run a newer offload, or point "
             "--data-dir elsewhere",
             path, v, SCHEMA_VERSION);
    return -1;
  }
  return schema_migrate_to(db, SCHEMA_VERSION, err, errsz);
}
