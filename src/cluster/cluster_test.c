/* cluster_test: a node's part in a cluster (cluster/cluster.h with
 * registry/cluster.c) against a real PostgreSQL 15 the test starts itself:
 * the node (a registry with a one-worker pool, the PostgreSQL store and
 * the cluster module, as the server wires them) claims jobs another
 * "node" (a bare store) queued, never more than its free worker, and runs
 * each once; a cancel made through the other node reaches its running job
 * (the notification); a job the others took from it (its row re-queued
 * behind its back) is found by its check, canceled here, and its late
 * write is fenced. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster/cluster.h"
#include "store/pg_test_env.h"
#include "tasks/tasks.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/test_poll.h"

typedef struct env {
  uv_loop_t loop;
  tasks_catalog_t cat;
  store_t *store, *other;
  registry_t *r;
  pool_t *pool;
  cluster_t *c;
} env_t;

static void env_start(env_t *e) {
  memset(e, 0, sizeof *e);
  sql("DROP TABLE IF EXISTS jobs, nodes, offload_meta");
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(tasks_catalog_init(&e->cat), 0);
  cluster_config_t cc = {.node_id = "me", .workers = 1, .lane_tasks = {"[\"spin\"]", NULL}};
  e->c = cluster_new(&e->loop, &cc);
  assert_non_null(e->c);
  char err[512];
  store_config_t sc = {.kind = STORE_POSTGRES, .pg_url = url, .files_dir = files, .node_id = "me",
                       .node_url = "http://127.0.0.1:1", .heartbeat_ms = 100, .lease_ms = 5000,
                       .on_event = cluster_on_event, .event_data = e->c};
  if (!(e->store = store_open(&e->loop, &sc, err, sizeof err)))
    fail_msg("store_open: %s", err);
  store_config_t so = sc;
  so.node_id = "other";
  so.on_event = NULL;
  if (!(e->other = store_open(&e->loop, &so, err, sizeof err)))
    fail_msg("store_open: %s", err);
  registry_config_t rc = {.catalog = &e->cat, .max_finished = 100, .retention_ms = 3600 * 1000, .store = e->store,
                          .cluster = true, .node_id = "me", .slot_free = cluster_slot_free, .slot_data = e->c};
  e->r = registry_new(&e->loop, &rc);
  assert_non_null(e->r);
  pool_config_t pc = {.workers = 1, .max_queue = 16, .nice = 0, .kill_grace_ms = 10000};
  e->pool = pool_new(&e->loop, &pc, registry_on_done, e->r);
  assert_non_null(e->pool);
  registry_attach(e->r, e->pool, NULL);
  cluster_attach(e->c, e->r, e->store);
  assert_int_equal(store_load(e->store, NULL, NULL), 0);
  assert_int_equal(store_load(e->other, NULL, NULL), 0);
  POLL(&e->loop, true, store_ok(e->store) && cluster_nodes(e->c, &(size_t){0}) != NULL);
}

static void env_stop(env_t *e) {
  cluster_stop(e->c);
  pool_free(e->pool);
  store_close(e->store);
  store_close(e->other);
  cluster_free(e->c);
  registry_free(e->r);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  tasks_catalog_fini(&e->cat);
}

/* ---- the other node's writes ---- */

typedef struct w {
  store_write_t w;
  store_job_t job;
  char ids[1][24];
  store_job_t rows[1];
  int calls, rc;
} w_t;

static void on_done(store_write_t *sw, int rc, void *data) {
  (void)data;
  ((w_t *)sw)->calls++;
  ((w_t *)sw)->rc = rc;
}

static void other_write(env_t *e, w_t *x) {
  x->w.cb = on_done;
  store_write(e->other, &x->w);
  POLL(&e->loop, true, x->calls == 1);
  assert_int_equal(x->rc, 0);
}

static void queue_spin(env_t *e, const char *id, int ms) {
  w_t x = {0};
  x.w.kind = STORE_W_INSERT;
  x.w.job = &x.job;
  snprintf(x.job.id, sizeof x.job.id, "%s", id);
  x.job.task = strdup("spin");
  char params[64];
  snprintf(params, sizeof params, "{\"ms\":%d}", ms);
  x.job.params = strdup(params);
  x.job.status = "queued";
  x.job.created_at = clock_wall_ms();
  other_write(e, &x);
  store_job_fini(&x.job);
}

/* The row as the database has it now (the test's own connection). */
static void row(const char *id, char *status, size_t n, int *attempts, char *owner, size_t on) {
  PGconn *c = PQconnectdb(url);
  const char *v[] = {id};
  PGresult *r = PQexecParams(c, "SELECT status, attempts, coalesce(owner, '') FROM jobs WHERE id = $1", 1, NULL, v,
                             NULL, NULL, 0);
  assert_int_equal(PQntuples(r), 1);
  snprintf(status, n, "%s", PQgetvalue(r, 0, 0));
  *attempts = atoi(PQgetvalue(r, 0, 1));
  snprintf(owner, on, "%s", PQgetvalue(r, 0, 2));
  PQclear(r);
  PQfinish(c);
}

static int count_where(const char *cond) {
  char q[256];
  snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE %s", cond);
  PGconn *c = PQconnectdb(url);
  PGresult *r = PQexec(c, q);
  int n = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return n;
}

/* ---- tests ---- */

static void test_claims_never_more_than_free_workers(void **state) {
  (void)state;
  env_t e;
  env_start(&e);
  static const char *ids[] = {"c00000000000000000000a", "c00000000000000000000b", "c00000000000000000000c"};
  for (int i = 0; i < 3; i++)
    queue_spin(&e, ids[i], 300);
  /* One worker: one claimed at a time, oldest first; each runs once. */
  int max_running = 0;
  uint64_t deadline = clock_mono_ns() + WAIT_NS;
  while (count_where("status = 'complete'") < 3) {
    uv_run(&e.loop, UV_RUN_NOWAIT);
    int running = count_where("status = 'processing' AND owner = 'me'");
    max_running = running > max_running ? running : max_running;
    if (clock_mono_ns() > deadline)
      fail_msg("the three jobs did not complete");
    usleep(20000);
  }
  assert_int_equal(max_running, 1);
  char status[32], owner[32];
  int attempts;
  for (int i = 0; i < 3; i++) {
    row(ids[i], status, sizeof status, &attempts, owner, sizeof owner);
    assert_string_equal(status, "complete");
    assert_int_equal(attempts, 1);
    assert_string_equal(owner, "me");
  }
  assert_int_equal(store_stats(e.store)->claimed, 3);
  env_stop(&e);
}

static void test_cancel_from_another_node_reaches_the_running_job(void **state) {
  (void)state;
  env_t e;
  env_start(&e);
  const char *id = "k00000000000000000000a";
  queue_spin(&e, id, 600000);
  POLL(&e.loop, true, count_where("status = 'processing' AND owner = 'me'") == 1 && registry_lane_free(e.r, LANE_THREAD) == 0);
  w_t c = {0};
  c.w.kind = STORE_W_CANCEL;
  snprintf(c.ids[0], 24, "%s", id);
  c.w.ids = (const char(*)[24])c.ids;
  c.w.nids = 1;
  c.w.rows = c.rows;
  uint64_t t0 = clock_mono_ns();
  other_write(&e, &c);
  assert_string_equal(c.w.prev_status, "processing");
  POLL(&e.loop, true, count_where("status = 'canceled'") == 1);
  /* The notification, not the one-second check: well under a second (generous for sanitizers). */
  assert_true(clock_mono_ns() - t0 < UINT64_C(900) * 1000000u);
  store_job_fini(&c.rows[0]);
  env_stop(&e);
}

static void test_a_job_taken_from_this_node_is_canceled_here_and_fenced(void **state) {
  (void)state;
  env_t e;
  env_start(&e);
  const char *id = "l00000000000000000000a";
  queue_spin(&e, id, 600000);
  POLL(&e.loop, true, count_where("status = 'processing' AND owner = 'me'") == 1 && registry_lane_free(e.r, LANE_THREAD) == 0);
  /* Another node took it (its reaper re-queued it as if this node's lease
   * had lapsed, and it claimed it: attempt 2). */
  sql("UPDATE jobs SET owner = 'other', attempts = 2 WHERE id = 'l00000000000000000000a'");
  /* The check (each second) finds it: the copy here is canceled, its write fenced. */
  POLL(&e.loop, true, store_stats(e.store)->fenced >= 1 && registry_lane_free(e.r, LANE_THREAD) == 1);
  char status[32], owner[32];
  int attempts;
  row(id, status, sizeof status, &attempts, owner, sizeof owner);
  assert_string_equal(status, "processing"); /* the other node's run stands */
  assert_int_equal(attempts, 2);
  assert_string_equal(owner, "other");
  assert_null(registry_get(e.r, id)); /* let go of */
  env_stop(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_claims_never_more_than_free_workers),
      cmocka_unit_test(test_cancel_from_another_node_reaches_the_running_job),
      cmocka_unit_test(test_a_job_taken_from_this_node_is_canceled_here_and_fenced),
  };
  return cmocka_run_group_tests(tests, pg_up, pg_down_all);
}
