/* store/sqlite: see sqlite.h.
 *
 * The data dir holds offload.db (with its -wal and -shm files) and
 * offload.lock, which a running server holds with flock(LOCK_EX): a second
 * offload on the same dir is refused at start instead of interleaving
 * writes. A failed open deletes, truncates or overwrites nothing. */
#include "store/sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/files.h"
#include "store/schema.h"
#include "util/err.h"
#include "util/fault.h"

struct sq {
  sqlite3 *db;
  int lock_fd;
  bool strict;
  char *path, *files; /* offload.db, and the files root <dir>/files */
  sqlite3_stmt *insert, *update, *del, *free_key, *fetch, *file_put, *files_of;
};

static const char insert_sql[] =
    "INSERT INTO jobs (seq, id, task, params, status, attempts, retries, timeout_ms, created_at, started_at,"
    " finished_at, result, error_code, error_message, idempotency_key, input_type, input_bytes)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";
static const char update_sql[] =
    "UPDATE jobs SET status = ?2, attempts = ?3, started_at = ?4, finished_at = ?5, result = ?6, error_code = ?7,"
    " error_message = ?8 WHERE id = ?1";
static const char delete_sql[] = "DELETE FROM jobs WHERE id = ?1";
/* A key the loop no longer knows belongs to a finished job it evicted whose
 * DELETE did not commit (a full disk then): the new job takes the key. */
static const char free_key_sql[] = "DELETE FROM jobs WHERE idempotency_key = ?1 AND finished_at IS NOT NULL";
#define JOB_COLUMNS                                                                                            \
  "seq, id, task, params, status, attempts, retries, timeout_ms, created_at, started_at, finished_at, result,"  \
  " error_code, error_message, idempotency_key, input_type, input_bytes"
static const char load_sql[] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY seq";
static const char fetch_sql[] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1";
static const char file_put_sql[] =
    "INSERT OR REPLACE INTO job_files (job_id, name, bytes, content_type) VALUES (?1, ?2, ?3, ?4)";
static const char files_of_sql[] = "SELECT name, content_type, bytes FROM job_files WHERE job_id = ?1 ORDER BY name";

/* The lock file: held for the life of the store. */
static int take_lock(const char *dir, char *err, size_t errsz) {
  char path[4096];
  snprintf(path, sizeof path, "%s/offload.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errsz, "cannot write to the data dir %s (%s); make it writable or choose another --data-dir", dir,
             strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    if (n > 0)
      pid[n] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    snprintf(err, errsz,
             "the data dir %s is in use by another running offload%s%s%s; stop it, or give this one another "
             "--data-dir",
             dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
    close(fd);
    return -1;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    snprintf(err, errsz, "cannot write to the data dir %s (%s); make it writable or choose another --data-dir", dir,
             strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

sq_t *sq_open(const char *dir, bool strict, char *err, size_t errsz) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errsz, "cannot create the data dir %s (%s); create it, or choose another --data-dir", dir,
             strerror(errno));
    return NULL;
  }
  sq_t *q = calloc(1, sizeof *q);
  if (!q) {
    snprintf(err, errsz, "out of memory");
    return NULL;
  }
  q->strict = strict;
  q->lock_fd = take_lock(dir, err, errsz);
  if (q->lock_fd < 0) {
    free(q);
    return NULL;
  }
  if (asprintf(&q->files, "%s/files", dir) < 0)
    q->files = NULL;
  if (!q->files || asprintf(&q->path, "%s/offload.db", dir) < 0) {
    q->path = NULL;
    snprintf(err, errsz, "out of memory");
    goto fail;
  }
  int rc = sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errsz, "cannot open %s (%s); check its permissions, or choose another --data-dir", q->path,
             q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
    goto fail;
  }
  /* The first read tells a database from any other file. */
  rc = exec(q->db, "PRAGMA schema_version;");
  if (rc == SQLITE_NOTADB) {
    snprintf(err, errsz,
             "%s is not an offload database (not SQLite at all); move it away, or choose another --data-dir "
             "(nothing was changed)",
             q->path);
    goto fail;
  }
  if (rc != SQLITE_OK) {
    snprintf(err, errsz, "cannot read %s (%s)", q->path, sqlite3_errmsg(q->db));
    goto fail;
  }
  char merr[512];
  if (schema_migrate(q->db, q->path, merr, sizeof merr) != 0) {
    snprintf(err, errsz, "%s", merr);
    goto fail;
  }
  if (exec(q->db, "PRAGMA journal_mode=WAL;") != SQLITE_OK ||
      exec(q->db, strict ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;") != SQLITE_OK ||
      exec(q->db, "PRAGMA foreign_keys=ON;") != SQLITE_OK) {
    snprintf(err, errsz, "cannot set up %s (%s); is the data dir writable?", q->path, sqlite3_errmsg(q->db));
    goto fail;
  }
  if (sqlite3_prepare_v3(q->db, insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->insert, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, update_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->update, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, delete_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->del, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, free_key_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->free_key, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, fetch_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->fetch, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, file_put_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->file_put, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(q->db, files_of_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->files_of, NULL) != SQLITE_OK) {
    snprintf(err, errsz, "cannot prepare statements on %s (%s)", q->path, sqlite3_errmsg(q->db));
    goto fail;
  }
  return q;
fail:
  sq_close(q);
  return NULL;
}

void sq_close(sq_t *q) {
  if (!q)
    return;
  sqlite3_finalize(q->insert);
  sqlite3_finalize(q->update);
  sqlite3_finalize(q->del);
  sqlite3_finalize(q->free_key);
  sqlite3_finalize(q->fetch);
  sqlite3_finalize(q->file_put);
  sqlite3_finalize(q->files_of);
  sqlite3_close(q->db);
  if (q->lock_fd >= 0)
    close(q->lock_fd); /* releases the flock */
  free(q->path);
  free(q->files);
  free(q);
}

static const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }
static char *dup_col(sqlite3_stmt *st, int i) {
  const char *t = col_text(st, i);
  return t ? strdup(t) : NULL;
}

int sq_expire(sq_t *q, int64_t cutoff_ms, uint64_t max_finished, int batch) {
  /* The oldest finished first (the partial index on finished_at). A job
   * past the cap is one whose rank among the finished, newest first, is
   * above max_finished: that is the oldest (count - max). */
  sqlite3_stmt *st;
  const char *sql = "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at IS NOT NULL"
                    " AND (finished_at < ?1 OR ?2 > 0) ORDER BY finished_at LIMIT ?3) RETURNING id";
  int64_t over = 0;
  if (max_finished) {
    if (sqlite3_prepare_v2(q->db, "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL", -1, &st, NULL) != SQLITE_OK)
      return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
      over = sqlite3_column_int64(st, 0) - (int64_t)max_finished;
    sqlite3_finalize(st);
  }
  if (over < 0)
    over = 0;
  /* First the ones over the cap (oldest), then the ones past retention. */
  int limit = over > 0 ? (over < batch ? (int)over : batch) : batch;
  if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(st, 1, cutoff_ms);
  sqlite3_bind_int64(st, 2, over);
  sqlite3_bind_int(st, 3, limit);
  /* The ids come back (RETURNING) so their files can go once committed. */
  char(*ids)[24] = calloc((size_t)limit, sizeof *ids);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    if (ids && n < limit)
      snprintf(ids[n++], sizeof ids[0], "%s", col_text(st, 0) ? col_text(st, 0) : "");
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE)
    for (int i = 0; i < n; i++)
      files_remove_job(q->files, ids[i]);
  free(ids);
  if (rc != SQLITE_DONE)
    return -1;
  return n;
}


static const char *status_static(const char *s) {
  static const char *const names[] = {"queued", "processing", "complete", "failed", "canceled"};
  for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i]) == 0)
      return names[i];
  return NULL;
}

/* The JOB_COLUMNS of the current row into `j` (strings malloc'd). False
 * when it is not a usable job (no status, task or params). */
static bool read_row(sqlite3_stmt *st, store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->seq = (uint64_t)sqlite3_column_int64(st, 0);
  snprintf(j->id, sizeof j->id, "%s", col_text(st, 1) ? col_text(st, 1) : "");
  j->task = dup_col(st, 2);
  j->params = dup_col(st, 3);
  j->status = status_static(col_text(st, 4));
  j->attempts = sqlite3_column_int(st, 5);
  j->retries = sqlite3_column_int(st, 6);
  j->timeout_ms = sqlite3_column_int64(st, 7);
  j->created_at = sqlite3_column_int64(st, 8);
  j->started_at = sqlite3_column_int64(st, 9);
  j->finished_at = sqlite3_column_int64(st, 10);
  j->result = dup_col(st, 11);
  j->err_code = dup_col(st, 12);
  j->err_message = dup_col(st, 13);
  j->idem_key = dup_col(st, 14);
  j->input_type = dup_col(st, 15);
  j->input_bytes = sqlite3_column_int64(st, 16);
  return j->status && j->task && j->params;
}

/* The job's files rows into j->files. 0 or -1 (an SQLite error, or out of
 * memory: then j has the files read so far). */
static int read_files(sq_t *q, store_job_t *j) {
  sqlite3_stmt *st = q->files_of;
  sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_file_t *more = realloc(j->files, (j->nfiles + 1) * sizeof *more);
    if (!more)
      break;
    j->files = more;
    store_file_t *f = &j->files[j->nfiles++];
    f->name = dup_col(st, 0);
    f->content_type = dup_col(st, 1);
    f->bytes = sqlite3_column_int64(st, 2);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

int sq_load(sq_t *q, void (*row)(const store_job_t *j, void *data), void *data) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db, load_sql, -1, &st, NULL) != SQLITE_OK)
    return OFF_ESTORE;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_job_t j;
    if (read_row(st, &j) && read_files(q, &j) == 0)
      row(&j, data);
    store_job_fini(&j);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : OFF_ESTORE;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC); /* the record outlives the step */
  else
    sqlite3_bind_null(st, i);
}

static void bind_time(sqlite3_stmt *st, int i, int64_t ms) {
  if (ms)
    sqlite3_bind_int64(st, i, ms);
  else
    sqlite3_bind_null(st, i);
}

/* Runs a prepared write once and readies it for the next. */
static int step_once(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

static int step_once(sqlite3_stmt *st);

/* The rows of j's files (insert or replace: an update may add more). */
static int put_files(sq_t *q, const store_job_t *j) {
  int rc = SQLITE_DONE;
  for (size_t i = 0; i < j->nfiles && rc == SQLITE_DONE; i++) {
    sqlite3_stmt *st = q->file_put;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    bind_text(st, 2, j->files[i].name);
    sqlite3_bind_int64(st, 3, j->files[i].bytes);
    bind_text(st, 4, j->files[i].content_type ? j->files[i].content_type : "application/octet-stream");
    rc = step_once(st);
  }
  return rc;
}

static int run_insert(sq_t *q, const store_job_t *j) {
  if (j->idem_key) {
    sqlite3_bind_text(q->free_key, 1, j->idem_key, -1, SQLITE_STATIC);
    int rc = step_once(q->free_key);
    if (rc != SQLITE_DONE)
      return rc;
  }
  sqlite3_stmt *st = q->insert;
  sqlite3_bind_int64(st, 1, (sqlite3_int64)j->seq);
  sqlite3_bind_text(st, 2, j->id, -1, SQLITE_STATIC);
  bind_text(st, 3, j->task);
  bind_text(st, 4, j->params);
  bind_text(st, 5, j->status);
  sqlite3_bind_int(st, 6, j->attempts);
  sqlite3_bind_int(st, 7, j->retries);
  sqlite3_bind_int64(st, 8, j->timeout_ms);
  sqlite3_bind_int64(st, 9, j->created_at);
  bind_time(st, 10, j->started_at);
  bind_time(st, 11, j->finished_at);
  bind_text(st, 12, j->result);
  bind_text(st, 13, j->err_code);
  bind_text(st, 14, j->err_message);
  bind_text(st, 15, j->idem_key);
  bind_text(st, 16, j->input_type);
  sqlite3_bind_int64(st, 17, j->input_bytes);
  if (j->input_fd && files_keep_input(q->files, j->id, j->input_fd - 1, j->input_bytes, q->strict) != 0)
    return SQLITE_FULL; /* the disk could not take it: this write fails with its batch */
  int rc = step_once(st);
  return rc == SQLITE_DONE ? put_files(q, j) : rc;
}

static int run_update(sq_t *q, const store_job_t *j) {
  sqlite3_stmt *st = q->update;
  sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
  bind_text(st, 2, j->status);
  sqlite3_bind_int(st, 3, j->attempts);
  bind_time(st, 4, j->started_at);
  bind_time(st, 5, j->finished_at);
  bind_text(st, 6, j->result);
  bind_text(st, 7, j->err_code);
  bind_text(st, 8, j->err_message);
  int rc = step_once(st);
  return rc == SQLITE_DONE ? put_files(q, j) : rc;
}

static int run_delete(sq_t *q, const store_job_t *j) {
  sqlite3_bind_text(q->del, 1, j->id, -1, SQLITE_STATIC);
  return step_once(q->del);
}

/* A read: each id's row, or a zeroed record. 0 or OFF_ESTORE. */
static int run_fetch(sq_t *q, store_write_t *w) {
  int rc = SQLITE_DONE;
  for (size_t i = 0; i < w->nids && (rc == SQLITE_DONE || rc == SQLITE_ROW); i++) {
    sqlite3_bind_text(q->fetch, 1, w->ids[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(q->fetch);
    if (rc == SQLITE_ROW && (!read_row(q->fetch, &w->rows[i]) || read_files(q, &w->rows[i]) != 0))
      store_job_fini(&w->rows[i]);
    if (rc == SQLITE_ROW)
      rc = sqlite3_step(q->fetch); /* ids are unique: SQLITE_DONE */
    sqlite3_reset(q->fetch);
    sqlite3_clear_bindings(q->fetch);
  }
  return rc == SQLITE_DONE ? 0 : OFF_ESTORE;
}

static int apply_writes(sq_t *q, store_write_t *list);

int sq_apply(sq_t *q, store_write_t *list) {
  bool writes = false;
  for (store_write_t *w = list; w && !writes; w = w->_next)
    writes = w->kind != STORE_R_FETCH;
  int rc = writes ? apply_writes(q, list) : 0;
  /* The files of deleted jobs, once their rows are gone for good. */
  for (store_write_t *w = list; w && rc == 0; w = w->_next)
    if (w->kind == STORE_W_DELETE && w->_rc == 0)
      files_remove_job(q->files, w->job->id); /* one that fails is left to the disk's owner (logged nowhere: rare) */
  /* Reads after the commit: they see this batch's writes, and a failed
   * commit does not fail them. */
  for (store_write_t *w = list; w; w = w->_next)
    if (w->kind == STORE_R_FETCH)
      w->_rc = run_fetch(q, w);
  return rc;
}

static int apply_writes(sq_t *q, store_write_t *list) {
  int rc = exec(q->db, "BEGIN IMMEDIATE;");
  for (store_write_t *w = list; w && rc == SQLITE_OK; w = w->_next) {
    if (w->kind == STORE_R_FETCH)
      continue;
    int r = w->kind == STORE_W_INSERT   ? run_insert(q, w->job)
            : w->kind == STORE_W_UPDATE ? run_update(q, w->job)
                                        : run_delete(q, w->job);
    if (r == SQLITE_CONSTRAINT) {
      w->_rc = OFF_EINVAL; /* this write only (a duplicate id or key): the rest commit */
      continue;
    }
    w->_rc = 0;
    if (r != SQLITE_DONE)
      rc = r;
  }
  if (rc == SQLITE_OK && FAULT_HIT(FAULT_STORE_COMMIT))
    rc = SQLITE_FULL;
  if (rc == SQLITE_OK)
    rc = exec(q->db, "COMMIT;");
  if (rc != SQLITE_OK) {
    exec(q->db, "ROLLBACK;");
    for (store_write_t *w = list; w; w = w->_next)
      if (w->kind != STORE_R_FETCH)
        w->_rc = OFF_ESTORE;
    return OFF_ESTORE;
  }
  return 0;
}
