/* registry_observer_test: registry_set_observer as registry.h promises it,
 * with a real pool (one worker): each job is told created, started and
 * final once, in that order; registry_peek_position shows a new job's
 * place without filing anything; a retry is told; with a SQLite store a
 * job is told created only once its row is kept, and one canceled while
 * its row was on the way is told final once (never created). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "offload/pool.h"
#include "registry/registry.h"
#include "tasks/tasks.h"
#include "util/test_poll.h"

typedef struct told {
  job_t *job;
  registry_event_t ev;
  job_status_t status;
  size_t pos;
} told_t;

typedef struct env {
  uv_loop_t loop;
  tasks_catalog_t cat;
  registry_t *r;
  pool_t *pool;
  store_t *store;
  told_t told[64];
  size_t n;
} env_t;

static void on_told(job_t *j, registry_event_t ev, void *data) {
  env_t *e = data;
  assert_true(e->n < 64);
  e->told[e->n++] = (told_t){j, ev, j->status, ev == REG_EV_CREATED ? registry_peek_position(e->r, j) : 0};
}

static void env_start(env_t *e, const char *store_dir) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(tasks_catalog_init(&e->cat), 0);
  if (store_dir) {
    char err[512];
    store_config_t sc = {.kind = STORE_SQLITE, .data_dir = store_dir};
    e->store = store_open(&e->loop, &sc, err, sizeof err);
    if (!e->store)
      fail_msg("store_open: %s", err);
  }
  registry_config_t rc = {
      .catalog = &e->cat, .max_finished = 100, .retention_ms = 3600000, .store = e->store, .retry_backoff_ms = 1};
  e->r = registry_new(&e->loop, &rc);
  assert_non_null(e->r);
  pool_config_t pc = {.workers = 1, .max_queue = 16, .kill_grace_ms = 10000, .started = registry_on_started};
  e->pool = pool_new(&e->loop, &pc, registry_on_done, e->r);
  assert_non_null(e->pool);
  registry_attach(e->r, e->pool, NULL);
  if (e->store)
    assert_int_equal(store_load(e->store, NULL, NULL), 0);
  registry_set_observer(e->r, on_told, e);
}

static void env_stop(env_t *e) {
  registry_cancel_running(e->r);
  pool_free(e->pool);
  if (e->store)
    store_close(e->store);
  registry_set_observer(e->r, NULL, NULL);
  registry_free(e->r);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  tasks_catalog_fini(&e->cat);
}

static job_t *spin(env_t *e, int64_t ms, int retries) {
  json_t *params = json_pack("{s:I}", "ms", (json_int_t)ms);
  job_t *j = NULL;
  assert_int_equal(registry_submit(e->r, tasks_catalog_find(&e->cat, "spin"), params, -1, retries, &j), 0);
  json_decref(params);
  return j;
}

/* How many times `j` was told `ev`. */
static int count(const env_t *e, const job_t *j, registry_event_t ev) {
  int n = 0;
  for (size_t i = 0; i < e->n; i++)
    n += e->told[i].job == j && e->told[i].ev == ev;
  return n;
}

static void test_created_started_final(void **state) {
  (void)state;
  env_t e;
  env_start(&e, NULL);
  job_t *a = spin(&e, 600000, 0);
  assert_int_equal(e.n, 1);
  assert_int_equal(e.told[0].ev, REG_EV_CREATED);
  assert_int_equal(e.told[0].status, JOB_QUEUED);
  assert_int_equal(e.told[0].pos, 1); /* even if the worker took it already */
  POLL(&e.loop, false, (registry_refresh(e.r, a), a->status == JOB_PROCESSING));
  assert_int_equal(count(&e, a, REG_EV_STARTED), 1);
  job_t *b = spin(&e, 1, 0), *c = spin(&e, 1, 0);
  assert_int_equal(e.told[e.n - 2].pos, 1); /* a, started, is skipped */
  assert_int_equal(e.told[e.n - 1].pos, 2);
  assert_int_equal(registry_cancel(e.r, b), 0);
  assert_int_equal(count(&e, b, REG_EV_FINAL), 1);
  assert_int_equal(registry_cancel(e.r, a), 1);
  POLL(&e.loop, true, job_is_final(c) && count(&e, c, REG_EV_FINAL) == 1);
  assert_int_equal(count(&e, a, REG_EV_FINAL), 1);
  assert_true(job_final_told(a) && job_final_told(c));
  /* Every job: created first, final last, each once. */
  for (size_t i = 0; i < e.n; i++) {
    job_t *j = e.told[i].job;
    assert_int_equal(count(&e, j, REG_EV_CREATED), 1);
    assert_int_equal(count(&e, j, REG_EV_FINAL), 1);
    if (e.told[i].ev == REG_EV_FINAL)
      assert_true(job_is_final(j));
  }
  env_stop(&e);
}

static void test_retry_is_told(void **state) {
  (void)state;
  env_t e;
  env_start(&e, NULL);
  json_t *params = json_pack("{s:I}", "ms", (json_int_t)600000);
  job_t *j = NULL;
  assert_int_equal(registry_submit(e.r, tasks_catalog_find(&e.cat, "spin"), params, 50, 1, &j), 0); /* 50 ms timeout */
  json_decref(params);
  POLL(&e.loop, true, count(&e, j, REG_EV_RETRY) == 1);
  assert_int_equal(count(&e, j, REG_EV_STARTED), 1);
  POLL(&e.loop, true, count(&e, j, REG_EV_FINAL) == 1);
  assert_int_equal(count(&e, j, REG_EV_STARTED), 2);
  assert_int_equal(j->status, JOB_FAILED);
  env_stop(&e);
}

static void test_durable_store(void **state) {
  (void)state;
  char dir[] = "/tmp/offload-observer-XXXXXX";
  assert_non_null(mkdtemp(dir));
  env_t e;
  env_start(&e, dir);
  job_t *a = spin(&e, 1, 0);
  assert_int_equal(e.n, 0); /* its row is on the way */
  job_t *b = spin(&e, 1, 0);
  assert_int_equal(registry_cancel(e.r, b), 0); /* canceled before its row is kept */
  assert_int_equal(count(&e, b, REG_EV_FINAL), 1);
  POLL(&e.loop, true, count(&e, a, REG_EV_FINAL) == 1);
  assert_int_equal(count(&e, a, REG_EV_CREATED), 1);
  for (int i = 0; i < 20; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  assert_int_equal(count(&e, b, REG_EV_CREATED), 0);
  assert_int_equal(count(&e, b, REG_EV_FINAL), 1);
  env_stop(&e);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_created_started_final),
      cmocka_unit_test(test_retry_is_told),
      cmocka_unit_test(test_durable_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
