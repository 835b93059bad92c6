/* store_test: the store (store/store.h) on both backends: callbacks after
 * the turn, group commit, rows surviving a reopen, one bad write not
 * spoiling its batch, a failed commit (as on a full disk) and recovery,
 * and the refusals at open (not a database, a newer schema, a dir in use, a
 * dir that cannot be created) that change nothing on disk. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/schema.h"
#include "store/files.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/fault.h"
#include "util/test_poll.h"

typedef struct w {
  store_write_t w;
  store_job_t job;
  int calls, rc;
} w_t;

static void on_written(store_write_t *sw, int rc, void *data) {
  (void)data;
  w_t *x = (w_t *)sw;
  x->calls++;
  x->rc = rc;
}

static void fill(w_t *x, store_write_kind_t kind, uint64_t seq, const char *status) {
  memset(x, 0, sizeof *x);
  x->w.kind = kind;
  x->w.job = &x->job;
  x->w.cb = on_written;
  x->rc = 99;
  x->job.seq = seq;
  snprintf(x->job.id, sizeof x->job.id, "job%06llu", (unsigned long long)seq);
  x->job.task = strdup("spin");
  x->job.params = strdup("{\"ms\":1}");
  x->job.status = status;
  x->job.created_at = 1000 + (int64_t)seq;
  x->job.retries = 2;
  x->job.timeout_ms = 50;
}

static char *tmpdir(void) {
  char tmpl[] = "/tmp/offload-store-XXXXXX";
  char *d = mkdtemp(tmpl);
  assert_non_null(d);
  return strdup(d);
}

static void rmtree(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

typedef struct env {
  uv_loop_t loop;
  store_t *s;
} env_t;

static void env_open(env_t *e, store_kind_t kind, const char *dir) {
  assert_int_equal(uv_loop_init(&e->loop), 0);
  store_config_t cfg = {.kind = kind, .data_dir = dir, .strict = true};
  char err[512] = "";
  e->s = store_open(&e->loop, &cfg, err, sizeof err);
  if (!e->s)
    fail_msg("store_open: %s", err);
}

static void env_close(env_t *e) {
  store_close(e->s);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void test_memory_backend(void **state) {
  (void)state;
  env_t e;
  env_open(&e, STORE_MEMORY, NULL);
  assert_int_equal(store_load(e.s, NULL, NULL), 0);
  w_t a, b;
  fill(&a, STORE_W_INSERT, 1, "queued");
  fill(&b, STORE_W_UPDATE, 1, "complete");
  store_write(e.s, &a.w);
  store_write(e.s, &b.w);
  assert_int_equal(a.calls, 0); /* never inside store_write */
  POLL(&e.loop, true, b.calls == 1);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, 0);
  assert_int_equal(b.rc, 0);
  store_job_fini(&a.job);
  store_job_fini(&b.job);
  env_close(&e);
}

typedef struct loaded {
  int n;
  store_job_t rows[64];
} loaded_t;

static void on_row(const store_job_t *j, void *data) {
  loaded_t *l = data;
  store_job_t *c = &l->rows[l->n++];
  *c = *j;
  c->task = j->task ? strdup(j->task) : NULL;
  c->params = j->params ? strdup(j->params) : NULL;
  c->result = j->result ? strdup(j->result) : NULL;
  c->err_code = j->err_code ? strdup(j->err_code) : NULL;
  c->err_message = j->err_message ? strdup(j->err_message) : NULL;
  c->idem_key = j->idem_key ? strdup(j->idem_key) : NULL;
  c->files = j->nfiles ? calloc(j->nfiles, sizeof *c->files) : NULL;
  for (size_t i = 0; i < j->nfiles; i++) {
    c->files[i].name = strdup(j->files[i].name);
    c->files[i].content_type = strdup(j->files[i].content_type);
    c->files[i].bytes = j->files[i].bytes;
  }
}

static void test_sqlite_round_trip(void **state) {
  (void)state;
  char *dir = tmpdir();
  env_t e;
  env_open(&e, STORE_SQLITE, dir);
  loaded_t none = {0};
  assert_int_equal(store_load(e.s, on_row, &none), 0);
  assert_int_equal(none.n, 0);
  /* 40 inserts and updates written in one turn: one transaction. */
  enum { N = 20 };
  w_t ins[N], upd[N];
  for (int i = 0; i < N; i++) {
    fill(&ins[i], STORE_W_INSERT, (uint64_t)i + 1, "queued");
    if (i == 3)
      ins[i].job.idem_key = strdup("key-3");
    store_write(e.s, &ins[i].w);
  }
  for (int i = 0; i < N; i++) {
    fill(&upd[i], STORE_W_UPDATE, (uint64_t)i + 1, i % 2 ? "complete" : "failed");
    upd[i].job.attempts = 1;
    upd[i].job.started_at = 5000;
    upd[i].job.finished_at = 6000 + i;
    if (i % 2)
      upd[i].job.result = strdup("42");
    else {
      upd[i].job.err_code = strdup("worker_crashed");
      upd[i].job.err_message = strdup("The worker exited on signal 11 (SIGSEGV).");
    }
    store_write(e.s, &upd[i].w);
  }
  POLL(&e.loop, true, upd[N - 1].calls == 1);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ins[i].calls, 1);
    assert_int_equal(ins[i].rc, 0);
    assert_int_equal(upd[i].rc, 0);
  }
  assert_int_equal(store_stats(e.s)->commits, 1);
  assert_int_equal(store_stats(e.s)->writes, 2 * N);
  env_close(&e);

  /* Everything is there after a reopen, in creation order. */
  env_open(&e, STORE_SQLITE, dir);
  loaded_t l = {0};
  assert_int_equal(store_load(e.s, on_row, &l), 0);
  assert_int_equal(l.n, N);
  for (int i = 0; i < N; i++) {
    store_job_t *r = &l.rows[i];
    assert_int_equal(r->seq, i + 1);
    assert_string_equal(r->id, ins[i].job.id);
    assert_string_equal(r->task, "spin");
    assert_string_equal(r->params, "{\"ms\":1}");
    assert_string_equal(r->status, i % 2 ? "complete" : "failed");
    assert_int_equal(r->attempts, 1);
    assert_int_equal(r->retries, 2);
    assert_int_equal(r->timeout_ms, 50);
    assert_int_equal(r->created_at, 1001 + i);
    assert_int_equal(r->started_at, 5000);
    assert_int_equal(r->finished_at, 6000 + i);
    if (i % 2) {
      assert_string_equal(r->result, "42");
      assert_null(r->err_code);
    } else {
      assert_null(r->result);
      assert_string_equal(r->err_code, "worker_crashed");
    }
    if (i == 3)
      assert_string_equal(r->idem_key, "key-3");
    else
      assert_null(r->idem_key);
    store_job_fini(r);
    store_job_fini(&ins[i].job);
    store_job_fini(&upd[i].job);
  }
  env_close(&e);
  rmtree(dir);
  free(dir);
}

static void test_bad_write_and_failed_commit(void **state) {
  (void)state;
  char *dir = tmpdir();
  env_t e;
  env_open(&e, STORE_SQLITE, dir);
  assert_int_equal(store_load(e.s, NULL, NULL), 0);
  /* A duplicate id fails alone; its batch commits. */
  w_t a, dup, b;
  fill(&a, STORE_W_INSERT, 1, "queued");
  fill(&dup, STORE_W_INSERT, 1, "queued");
  fill(&b, STORE_W_INSERT, 2, "queued");
  store_write(e.s, &a.w);
  store_write(e.s, &dup.w);
  store_write(e.s, &b.w);
  POLL(&e.loop, true, b.calls == 1);
  assert_int_equal(a.rc, 0);
  assert_int_equal(dup.rc, OFF_EINVAL);
  assert_int_equal(b.rc, 0);
  /* A commit that fails (as on a full disk) fails every write of its batch;
   * the next batch commits again. */
  fault_arm(FAULT_STORE_COMMIT, 1);
  w_t c, d;
  fill(&c, STORE_W_INSERT, 3, "queued");
  store_write(e.s, &c.w);
  POLL(&e.loop, true, c.calls == 1);
  assert_int_equal(c.rc, OFF_ESTORE);
  assert_int_equal(fault_fired_count(FAULT_STORE_COMMIT), 1);
  assert_int_equal(store_stats(e.s)->failures, 1);
  fill(&d, STORE_W_INSERT, 3, "queued");
  store_write(e.s, &d.w);
  POLL(&e.loop, true, d.calls == 1);
  assert_int_equal(d.rc, 0);
  env_close(&e);
  env_open(&e, STORE_SQLITE, dir);
  loaded_t l = {0};
  assert_int_equal(store_load(e.s, on_row, &l), 0);
  assert_int_equal(l.n, 3); /* 1, 2 and the retried 3 */
  for (int i = 0; i < l.n; i++)
    store_job_fini(&l.rows[i]);
  env_close(&e);
  w_t *all[] = {&a, &dup, &b, &c, &d};
  for (size_t i = 0; i < 5; i++)
    store_job_fini(&all[i]->job);
  rmtree(dir);
  free(dir);
}

static store_t *try_open(uv_loop_t *loop, const char *dir, char *err, size_t n) {
  store_config_t cfg = {.kind = STORE_SQLITE, .data_dir = dir, .strict = false};
  return store_open(loop, &cfg, err, n);
}

static void test_refusals(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char err[512];

  /* A file that is not a database: refused, and left as it was. */
  char *dir = tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/offload.db", dir);
  FILE *f = fopen(path, "w");
  fputs("this is not a database, it is a shopping list\n", f);
  fclose(f);
  assert_null(try_open(&loop, dir, err, sizeof err));
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "not an offload database"));
  char back[128] = "";
  f = fopen(path, "r");
  assert_non_null(fgets(back, sizeof back, f));
  fclose(f);
  assert_string_equal(back, "this is not a database, it is a shopping list\n");
  rmtree(dir);
  free(dir);

  /* A newer schema: refused, untouched. */
  dir = tmpdir();
  snprintf(path, sizeof path, "%s/offload.db", dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE future(x); PRAGMA user_version = 99;", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_null(try_open(&loop, dir, err, sizeof err));
  assert_non_null(strstr(err, "newer"));
  assert_non_null(strstr(err, path));
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 99);
  sqlite3_finalize(st);
  sqlite3_close(db);
  rmtree(dir);
  free(dir);

  /* A dir another store holds. */
  dir = tmpdir();
  store_t *first = try_open(&loop, dir, err, sizeof err);
  assert_non_null(first);
  assert_null(try_open(&loop, dir, err, sizeof err));
  assert_non_null(strstr(err, "in use by another running offload"));
  char pid[32];
  snprintf(pid, sizeof pid, "pid %d", (int)getpid());
  assert_non_null(strstr(err, pid));
  store_close(first);
  uv_run(&loop, UV_RUN_DEFAULT);
  store_t *again = try_open(&loop, dir, err, sizeof err); /* released on close */
  assert_non_null(again);
  store_close(again);
  uv_run(&loop, UV_RUN_DEFAULT);
  rmtree(dir);
  free(dir);

  /* A dir that cannot be created. */
  assert_null(try_open(&loop, "/proc/offload-no-such-dir", err, sizeof err));
  assert_non_null(strstr(err, "/proc/offload-no-such-dir"));
  assert_non_null(strstr(err, "--data-dir"));
  assert_int_equal(uv_loop_close(&loop), 0);
}

static int count_rows(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/offload.db", dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  int n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM jobs", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void test_retention_on_disk(void **state) {
  (void)state;
  /* 4 jobs finished long ago, 6 just now, 1 queued; retention 5 s and at
   * most 3 finished: the store thread, once idle, deletes the old ones and
   * then the oldest beyond 3, and never the queued one. */
  char *dir = tmpdir();
  env_t e;
  assert_int_equal(uv_loop_init(&e.loop), 0);
  store_config_t cfg = {.kind = STORE_SQLITE, .data_dir = dir, .retention_ms = 5000, .max_finished = 3};
  char err[256];
  e.s = store_open(&e.loop, &cfg, err, sizeof err);
  assert_non_null(e.s);
  assert_int_equal(store_load(e.s, NULL, NULL), 0);
  enum { N = 11 };
  w_t w[N];
  int64_t now = clock_wall_ms();
  for (int i = 0; i < N; i++) {
    fill(&w[i], STORE_W_INSERT, (uint64_t)i + 1, i == N - 1 ? "queued" : "complete");
    if (i < N - 1)
      w[i].job.finished_at = i < 4 ? now - 60000 + i : now + i;
    store_write(e.s, &w[i].w);
  }
  POLL(&e.loop, true, w[N - 1].calls == 1);
  assert_int_equal(count_rows(dir), N);
  POLL(&e.loop, true, count_rows(dir) == 4); /* 3 finished + the queued one */
  env_close(&e);
  env_open(&e, STORE_SQLITE, dir);
  loaded_t l = {0};
  assert_int_equal(store_load(e.s, on_row, &l), 0);
  assert_int_equal(l.n, 4);
  assert_int_equal(l.rows[0].seq, 8); /* the newest three finished: 8, 9, 10 */
  assert_string_equal(l.rows[3].status, "queued");
  for (int i = 0; i < l.n; i++)
    store_job_fini(&l.rows[i]);
  env_close(&e);
  for (int i = 0; i < N; i++)
    store_job_fini(&w[i].job);
  rmtree(dir);
  free(dir);
}

static void test_migrations(void **state) {
  (void)state;
  /* From an empty file and from each earlier version to the current one. */
  for (int from = 0; from <= SCHEMA_VERSION; from++) {
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    char err[256];
    assert_int_equal(schema_migrate_to(db, from, err, sizeof err), 0);
    assert_int_equal(schema_migrate(db, "mem", err, sizeof err), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), SCHEMA_VERSION);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db,
                                  "SELECT seq, id, idempotency_key, input_type, input_bytes FROM jobs;"
                                  " SELECT job_id, content_type FROM job_files;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
  }
}

static void loaded_fini(loaded_t *l) {
  for (int i = 0; i < l->n; i++)
    store_job_fini(&l->rows[i]);
}

static void test_delete_and_freed_key(void **state) {
  (void)state;
  /* A DELETE removes the row in order with the other writes; a keyed
   * insert takes its key from a finished row still holding it (an evicted
   * job whose DELETE did not commit), never from a live one. */
  char *dir = tmpdir();
  env_t e;
  env_open(&e, STORE_SQLITE, dir);
  assert_int_equal(store_load(e.s, NULL, NULL), 0);
  w_t a, a_done, b, live, c, c2;
  fill(&a, STORE_W_INSERT, 1, "queued");
  a.job.idem_key = strdup("k1");
  fill(&a_done, STORE_W_UPDATE, 1, "complete");
  a_done.job.finished_at = 5000;
  fill(&live, STORE_W_INSERT, 2, "queued");
  live.job.idem_key = strdup("k2");
  store_write(e.s, &a.w);
  store_write(e.s, &a_done.w);
  store_write(e.s, &live.w);
  POLL(&e.loop, true, live.calls == 1);
  /* A new job with the finished job's key: it takes it. */
  fill(&b, STORE_W_INSERT, 3, "queued");
  b.job.idem_key = strdup("k1");
  /* One with the live job's key: refused (that write only). */
  fill(&c, STORE_W_INSERT, 4, "queued");
  c.job.idem_key = strdup("k2");
  fill(&c2, STORE_W_DELETE, 2, "queued");
  store_write(e.s, &b.w);
  store_write(e.s, &c.w);
  store_write(e.s, &c2.w); /* then the live one goes */
  POLL(&e.loop, true, c2.calls == 1);
  assert_int_equal(b.rc, 0);
  assert_int_equal(c.rc, OFF_EINVAL);
  assert_int_equal(c2.rc, 0);
  env_close(&e);
  env_open(&e, STORE_SQLITE, dir);
  loaded_t l = {0};
  assert_int_equal(store_load(e.s, on_row, &l), 0);
  assert_int_equal(l.n, 1); /* b alone: a gave up its key, 2 was deleted */
  assert_int_equal(l.rows[0].seq, 3);
  assert_string_equal(l.rows[0].idem_key, "k1");
  loaded_fini(&l);
  env_close(&e);
  w_t *all[] = {&a, &a_done, &b, &live, &c, &c2};
  for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
    store_job_fini(&all[k]->job);
  rmtree(dir);
  free(dir);
}

/* Gives `x` the files named (content types "text/plain", then NULL). */
static void add_files(w_t *x, const char *const *names, size_t n) {
  x->job.files = calloc(n, sizeof *x->job.files);
  x->job.nfiles = n;
  for (size_t i = 0; i < n; i++) {
    x->job.files[i].name = strdup(names[i]);
    x->job.files[i].content_type = i == 0 ? strdup("text/plain") : NULL;
    x->job.files[i].bytes = 5;
  }
}

/* What a worker does: writes <dir>/files/<id>/<name>. */
static void write_file(const char *dir, const char *id, const char *name) {
  char root[512], path[512];
  snprintf(root, sizeof root, "%s/files", dir);
  assert_int_equal(files_path(root, id, NULL, path, sizeof path), 0);
  mkdir(root, 0755);
  mkdir(path, 0755);
  assert_int_equal(files_path(root, id, name, path, sizeof path), 0);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("hello", f);
  fclose(f);
}

static bool job_dir_exists(const char *dir, const char *id) {
  char root[512], path[512];
  snprintf(root, sizeof root, "%s/files", dir);
  assert_int_equal(files_path(root, id, NULL, path, sizeof path), 0);
  struct stat st;
  return stat(path, &st) == 0;
}

static int file_rows(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/offload.db", dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM job_files", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void test_file_names(void **state) {
  (void)state;
  const char *const good[] = {"w320.webp", "document.pdf", "a", "A-b_c.1"};
  const char *const bad[] = {"", ".hidden", "..", "../x", "a/b", "a b", "x\n"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_true(files_name_ok(good[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(files_name_ok(bad[i]));
  char buf[64];
  assert_int_equal(files_path("/d/files", "abc", "w1.png", buf, sizeof buf), 0);
  assert_string_equal(buf, "/d/files/abc/w1.png");
  assert_int_equal(files_path("/d", "abc", "../x", buf, sizeof buf), -1);
  assert_int_equal(files_path("/d", "../abc", NULL, buf, sizeof buf), -1);
  assert_int_equal(files_path("/d", "abc", "w1.png", buf, 8), -1); /* too small */
}

static void test_outputs_go_the_input_stays(void **state) {
  (void)state;
  /* Before a run, an earlier run's outputs go; the stored input stays. */
  char *dir = tmpdir();
  write_file(dir, "job1", "w1.png");
  char root[512], path[600];
  snprintf(root, sizeof root, "%s/files", dir);
  snprintf(path, sizeof path, "%s/job1/" FILES_INPUT_NAME, root); /* not an output name: by hand */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(files_remove_outputs(root, "job1"), 0);
  snprintf(path, sizeof path, "%s/job1/w1.png", root);
  assert_int_not_equal(access(path, F_OK), 0);
  snprintf(path, sizeof path, "%s/job1/" FILES_INPUT_NAME, root);
  assert_int_equal(access(path, F_OK), 0);
  assert_int_equal(files_remove_job(root, "job1"), 0);
  assert_false(job_dir_exists(dir, "job1"));
  rmtree(dir);
  free(dir);
}

static void test_files_live_and_go_with_their_job(void **state) {
  (void)state;
  /* Files are written with the job, come back with it (load, fetch), and
   * leave with it: a delete write, or the retention sweep. */
  char *dir = tmpdir();
  env_t e;
  assert_int_equal(uv_loop_init(&e.loop), 0);
  store_config_t cfg = {.kind = STORE_SQLITE, .data_dir = dir, .retention_ms = 5000};
  char err[256];
  e.s = store_open(&e.loop, &cfg, err, sizeof err);
  assert_non_null(e.s);
  assert_string_equal(store_data_dir(e.s), dir);
  assert_int_equal(store_load(e.s, NULL, NULL), 0);
  const char *const names[] = {"w320.webp", "a.txt"};
  w_t a, a_done, old;
  fill(&a, STORE_W_INSERT, 1, "queued");
  fill(&a_done, STORE_W_UPDATE, 1, "complete");
  a_done.job.finished_at = clock_wall_ms();
  add_files(&a_done, names, 2);
  fill(&old, STORE_W_INSERT, 2, "complete");
  old.job.finished_at = clock_wall_ms() - 60000; /* past retention: the sweep takes it */
  add_files(&old, names, 1);
  write_file(dir, a.job.id, "w320.webp");
  write_file(dir, a.job.id, "a.txt");
  write_file(dir, old.job.id, "w320.webp");
  store_write(e.s, &a.w);
  store_write(e.s, &a_done.w);
  store_write(e.s, &old.w);
  POLL(&e.loop, true, old.calls == 1);
  assert_int_equal(a_done.rc, 0);
  POLL(&e.loop, true, !job_dir_exists(dir, old.job.id)); /* the sweep, within a second or two */
  assert_true(job_dir_exists(dir, a.job.id));
  assert_int_equal(file_rows(dir), 2);
  /* A fetch brings the files, sorted by name. */
  char ids[1][24];
  snprintf(ids[0], sizeof ids[0], "%s", a.job.id);
  store_job_t row[1];
  memset(row, 0, sizeof row);
  w_t rd;
  memset(&rd, 0, sizeof rd);
  rd.w.kind = STORE_R_FETCH;
  rd.w.ids = (const char(*)[24])ids;
  rd.w.nids = 1;
  rd.w.rows = row;
  rd.w.cb = on_written;
  store_write(e.s, &rd.w);
  POLL(&e.loop, true, rd.calls == 1);
  assert_int_equal(rd.rc, 0);
  assert_int_equal(row[0].nfiles, 2);
  assert_string_equal(row[0].files[0].name, "a.txt");
  assert_string_equal(row[0].files[0].content_type, "application/octet-stream");
  assert_string_equal(row[0].files[1].name, "w320.webp");
  assert_string_equal(row[0].files[1].content_type, "text/plain");
  assert_int_equal(row[0].files[1].bytes, 5);
  store_job_fini(&row[0]);
  env_close(&e);
  /* A load brings them too. */
  env_open(&e, STORE_SQLITE, dir);
  loaded_t l = {0};
  assert_int_equal(store_load(e.s, on_row, &l), 0);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.rows[0].nfiles, 2);
  loaded_fini(&l);
  /* A delete takes the row, the file rows and the directory. */
  w_t del;
  fill(&del, STORE_W_DELETE, 1, "complete");
  store_write(e.s, &del.w);
  POLL(&e.loop, true, del.calls == 1);
  assert_int_equal(del.rc, 0);
  assert_false(job_dir_exists(dir, a.job.id));
  env_close(&e);
  assert_int_equal(file_rows(dir), 0);
  w_t *all[] = {&a, &a_done, &old, &del};
  for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
    store_job_fini(&all[k]->job);
  rmtree(dir);
  free(dir);
}

static void test_migration_keeps_file_rows(void **state) {
  (void)state;
  /* A version-1 database with a file row: version 2 adds its content type. */
  sqlite3 *db;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA foreign_keys=ON;", NULL, NULL, NULL), SQLITE_OK);
  char err[256];
  assert_int_equal(schema_migrate_to(db, 1, err, sizeof err), 0);
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO jobs (seq, id, task, params, status, created_at) VALUES "
                                "(1, 'j1', 'spin', '{}', 'complete', 1);"
                                "INSERT INTO job_files (job_id, name, bytes) VALUES ('j1', 'out.bin', 3);",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(schema_migrate(db, "mem", err, sizeof err), 0);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT name, bytes, content_type FROM job_files", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "out.bin");
  assert_int_equal(sqlite3_column_int(st, 1), 3);
  assert_string_equal((const char *)sqlite3_column_text(st, 2), "application/octet-stream");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory_backend), cmocka_unit_test(test_sqlite_round_trip),
      cmocka_unit_test(test_bad_write_and_failed_commit), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_migrations), cmocka_unit_test(test_retention_on_disk),
      cmocka_unit_test(test_delete_and_freed_key),
      cmocka_unit_test(test_file_names),
      cmocka_unit_test(test_outputs_go_the_input_stays),
      cmocka_unit_test(test_files_live_and_go_with_their_job),
      cmocka_unit_test(test_migration_keeps_file_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
