/* registry_test: the life of a job as registry/registry.h promises it, with
 * a real pool (one worker) and the real catalog.
 *
 * A job's move to "processing" is observed with registry_refresh while the
 * loop is NOT run, so the done callback cannot overtake the check; final
 * states arrive by running the loop (UV_RUN_NOWAIT in a polling loop with a
 * generous deadline: the tests also run under ASan/TSan on a noisy machine).
 * Teardown: pool_free, registry_free, run the loop to close handles, then
 * uv_loop_close must return 0 (and ASan must see no leak). */
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
#include "util/clock.h"
#include "util/err.h"
#include "util/fault.h"

#include "util/test_poll.h"

#define LONG_SPIN_MS 600000 /* ten minutes unless canceled */
#define RUN_UNTIL(e, cond) POLL(&(e)->loop, true, cond)
/* Without running the loop: only the worker's atomics can change. */
#define WAIT_PROCESSING(e, j) POLL(&(e)->loop, false, (registry_refresh((e)->r, (j)), (j)->status == JOB_PROCESSING))

typedef struct env {
  uv_loop_t loop;
  tasks_catalog_t cat;
  registry_t *r;
  pool_t *pool;
  const offload_task_def_t *spin, *fib;
  size_t fib_idx;
  store_t *store; /* with env_config_t.store_dir */
} env_t;

typedef struct env_config {
  size_t max_queue, max_finished;
  int64_t retention_ms, default_timeout_ms;
  const char *store_dir; /* a SQLite store (relaxed) there; NULL = none */
} env_config_t;

static void env_start(env_t *e, env_config_t ec) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(tasks_catalog_init(&e->cat), 0);
  e->spin = tasks_catalog_find(&e->cat, "spin");
  e->fib = tasks_catalog_find(&e->cat, "fibonacci");
  assert_non_null(e->spin);
  assert_non_null(e->fib);
  e->fib_idx = (size_t)(e->fib - e->cat.defs);
  if (ec.store_dir) {
    char err[512];
    store_config_t sc = {.kind = STORE_SQLITE, .data_dir = ec.store_dir};
    e->store = store_open(&e->loop, &sc, err, sizeof err);
    if (!e->store)
      fail_msg("store_open: %s", err);
  }
  registry_config_t rc = {
      .catalog = &e->cat,
      .max_finished = ec.max_finished ? ec.max_finished : 10000,
      .retention_ms = ec.retention_ms ? ec.retention_ms : 3600 * 1000,
      .default_timeout_ms = ec.default_timeout_ms,
      .store = e->store,
  };
  e->r = registry_new(&e->loop, &rc);
  assert_non_null(e->r);
  /* A generous grace: these tests cancel cooperative tasks and then free the
   * pool, which waits for them that long (a slow sanitizer run included). */
  pool_config_t pc = {.workers = 1, .max_queue = ec.max_queue ? ec.max_queue : 16, .nice = 0, .kill_grace_ms = 10000};
  e->pool = pool_new(&e->loop, &pc, registry_on_done, e->r);
  assert_non_null(e->pool);
  registry_attach(e->r, e->pool, NULL);
  if (e->store)
    assert_int_equal(store_load(e->store, NULL, NULL), 0); /* a fresh dir */
}

static void env_stop(env_t *e) {
  pool_free(e->pool);
  assert_int_equal(registry_in_flight(e->r), 0);
  if (e->store)
    store_close(e->store);
  registry_free(e->r);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  tasks_catalog_fini(&e->cat);
}

static job_t *submit(env_t *e, const offload_task_def_t *def, const char *param, int64_t v, int64_t timeout_ms) {
  json_t *params = json_pack("{s:I}", param, (json_int_t)v);
  assert_non_null(params);
  job_t *j = NULL;
  int rc = registry_submit(e->r, def, params, timeout_ms, 0, &j);
  json_decref(params);
  if (rc != 0)
    fail_msg("registry_submit: %d", rc);
  assert_non_null(j);
  return j;
}

/* A spin that runs until canceled, already processing when this returns. */
static job_t *submit_blocker(env_t *e) {
  job_t *a = submit(e, e->spin, "ms", LONG_SPIN_MS, 0);
  WAIT_PROCESSING(e, a);
  return a;
}

typedef struct watch {
  job_watch_t w; /* first */
  int fired;
  job_t *job;
  job_status_t status;
} watch_t;

static void on_final(job_t *job, job_watch_t *w) {
  watch_t *x = (watch_t *)w;
  x->fired++;
  x->job = job;
  x->status = job->status;
  assert_true(job_is_final(job));
}

static bool id_is_url_safe(const char *id) {
  if (strlen(id) != JOB_ID_LEN)
    return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
      return false;
  return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- tests ---- */

static void test_ids_unique_and_found(void **state) {
  (void)state;
  enum { N = 1000 };
  env_t e;
  env_start(&e, (env_config_t){.max_queue = N + 10});
  job_t *a = submit_blocker(&e);
  job_t **jobs = calloc(N, sizeof *jobs);
  char **ids = calloc(N + 1, sizeof *ids);
  assert_non_null(jobs);
  assert_non_null(ids);
  for (int i = 0; i < N; i++) {
    jobs[i] = submit(&e, e.fib, "n", 1, -1);
    if (!id_is_url_safe(jobs[i]->id))
      fail_msg("bad id \"%s\"", jobs[i]->id);
    /* 128 bits in 22 base64url characters: the last one carries 2 bits. */
    assert_non_null(strchr("AQgw", jobs[i]->id[JOB_ID_LEN - 1]));
    ids[i] = jobs[i]->id;
  }
  ids[N] = a->id;
  qsort(ids, N + 1, sizeof *ids, cmp_str);
  for (int i = 0; i < N; i++)
    if (strcmp(ids[i], ids[i + 1]) == 0)
      fail_msg("duplicate id %s", ids[i]);

  for (int i = 0; i < N; i++) {
    assert_ptr_equal(registry_get(e.r, jobs[i]->id), jobs[i]);
    assert_int_equal(jobs[i]->status, JOB_QUEUED);
  }
  assert_ptr_equal(registry_get(e.r, a->id), a);
  assert_null(registry_get(e.r, "AAAAAAAAAAAAAAAAAAAAAA"));
  assert_null(registry_get(e.r, ""));
  assert_null(registry_get(e.r, "nope"));
  char longer[JOB_ID_LEN + 2];
  memcpy(longer, a->id, JOB_ID_LEN);
  memcpy(longer + JOB_ID_LEN, "A", 2);
  assert_null(registry_get(e.r, longer));
  char shorter[JOB_ID_LEN];
  memcpy(shorter, a->id, JOB_ID_LEN - 1);
  shorter[JOB_ID_LEN - 1] = '\0';
  assert_null(registry_get(e.r, shorter));

  /* Creation order, newest first. */
  job_t *j = registry_newest(e.r);
  for (int i = N - 1; i >= 0; i--, j = registry_older(j))
    assert_ptr_equal(j, jobs[i]);
  assert_ptr_equal(j, a);
  assert_null(registry_older(a));
  assert_int_equal(registry_in_flight(e.r), N + 1);
  assert_int_equal(registry_stats(e.r)->submitted, N + 1);
  assert_int_equal(registry_stats(e.r)->jobs, N + 1);

  /* Shut down with jobs still queued: the pool hands them back unrun and
   * the registry makes them canceled. */
  assert_int_equal(registry_cancel(e.r, a), 1);
  pool_free(e.pool);
  assert_int_equal(registry_in_flight(e.r), 0);
  assert_int_equal(a->status, JOB_CANCELED);
  for (int i = 0; i < N; i++) {
    assert_int_equal(jobs[i]->status, JOB_CANCELED);
    assert_string_equal(jobs[i]->err_code, "canceled");
    assert_int_equal(jobs[i]->started_at, 0);
  }
  registry_free(e.r);
  uv_run(&e.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e.loop), 0);
  tasks_catalog_fini(&e.cat);
  free(ids);
  free(jobs);
}

/* More jobs than the first hash table has buckets: lookups still work. */
static void test_hash_growth(void **state) {
  (void)state;
  enum { N = 2600 };
  env_t e;
  env_start(&e, (env_config_t){.max_queue = N});
  job_t *a = submit_blocker(&e);
  job_t **jobs = calloc(N, sizeof *jobs);
  assert_non_null(jobs);
  for (int i = 0; i < N; i++)
    jobs[i] = submit(&e, e.fib, "n", 1, -1);
  for (int i = 0; i < N; i++)
    assert_ptr_equal(registry_get(e.r, jobs[i]->id), jobs[i]);
  assert_ptr_equal(registry_get(e.r, a->id), a);
  for (int i = 0; i < N; i++)
    assert_int_equal(registry_cancel(e.r, jobs[i]), 0);
  assert_int_equal(registry_cancel(e.r, a), 1);
  RUN_UNTIL(&e, registry_in_flight(e.r) == 0);
  for (int i = 0; i < N; i++)
    assert_ptr_equal(registry_get(e.r, jobs[i]->id), jobs[i]);
  env_stop(&e);
  free(jobs);
}

static void test_lifecycle(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  int64_t before = clock_wall_ms();
  job_t *j = submit(&e, e.fib, "n", 20, -1);
  assert_int_equal(j->status, JOB_QUEUED);
  assert_ptr_equal(j->def, e.fib);
  assert_true(j->created_at >= before);
  assert_int_equal(j->started_at, 0);
  assert_int_equal(j->finished_at, 0);
  assert_null(j->result);
  assert_null(j->err_code);
  assert_true(j->progress == 0.0);
  assert_true(json_is_object(j->params));
  assert_int_equal(json_integer_value(json_object_get(j->params, "n")), 20);
  assert_false(job_is_final(j));
  assert_ptr_equal(registry_get(e.r, j->id), j);

  watch_t w1 = {.w.cb = on_final}, w2 = {.w.cb = on_final}, w3 = {.w.cb = on_final};
  registry_watch(j, &w1.w);
  registry_watch(j, &w2.w);
  registry_watch(j, &w3.w);
  registry_unwatch(j, &w2.w);
  registry_unwatch(j, &w2.w); /* twice is harmless */

  /* fib(20) is quick: refresh may see it processing or already final (the
   * worker done, the loop not yet at the done list). Either way it started,
   * and no watch fires before the loop runs the done callback. */
  POLL(&e.loop, false, (registry_refresh(e.r, j), j->status != JOB_QUEUED));
  assert_true(j->started_at > 0);
  assert_int_equal(w1.fired, 0);

  RUN_UNTIL(&e, registry_in_flight(e.r) == 0);
  assert_int_equal(j->status, JOB_COMPLETE);
  assert_true(j->progress == 1.0);
  assert_non_null(j->result);
  assert_true(json_is_integer(j->result));
  assert_int_equal(json_integer_value(j->result), 6765);
  assert_null(j->err_code);
  assert_true(j->finished_at >= j->started_at);
  assert_int_equal(w1.fired, 1);
  assert_int_equal(w3.fired, 1);
  assert_int_equal(w2.fired, 0);
  assert_ptr_equal(w1.job, j);
  assert_int_equal(w1.status, JOB_COMPLETE);

  assert_int_equal(registry_cancel(e.r, j), OFF_EBUSY);
  assert_int_equal(j->status, JOB_COMPLETE);
  assert_int_equal(registry_position(e.r, j), 0);
  assert_ptr_equal(registry_get(e.r, j->id), j);

  /* Watches fire once only. */
  for (int i = 0; i < 20; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  assert_int_equal(w1.fired, 1);
  assert_int_equal(w3.fired, 1);

  const registry_stats_t *st = registry_stats(e.r);
  assert_int_equal(st->submitted, 1);
  assert_int_equal(st->jobs, 1);
  assert_int_equal(st->finished, 1);
  assert_int_equal(st->finals[e.fib_idx][JOB_COMPLETE], 1);
  assert_int_equal(st->run_seconds.count, 1);
  assert_int_equal(registry_in_flight(e.r), 0);

  assert_string_equal(job_status_name(JOB_QUEUED), "queued");
  assert_string_equal(job_status_name(JOB_PROCESSING), "processing");
  assert_string_equal(job_status_name(JOB_COMPLETE), "complete");
  assert_string_equal(job_status_name(JOB_FAILED), "failed");
  assert_string_equal(job_status_name(JOB_CANCELED), "canceled");
  env_stop(&e);
}

static void test_position_and_cancel(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  job_t *a = submit_blocker(&e);
  job_t *b = submit(&e, e.fib, "n", 5, -1);
  job_t *c = submit(&e, e.fib, "n", 6, -1);
  job_t *d = submit(&e, e.fib, "n", 7, -1);
  assert_int_equal(registry_position(e.r, a), 0);
  assert_int_equal(registry_position(e.r, b), 1);
  assert_int_equal(registry_position(e.r, c), 2);
  assert_int_equal(registry_position(e.r, d), 3);
  size_t queued[LANE_N];
  registry_sync(e.r, queued);
  assert_int_equal(queued[LANE_THREAD], 3);
  assert_int_equal(queued[LANE_PROCESS], 0);
  assert_int_equal(registry_position(e.r, d), 3);
  assert_int_equal(registry_position(e.r, b), 1);
  assert_int_equal(registry_position(e.r, c), 2);
  /* The queued list walks newest first. */
  assert_ptr_equal(registry_first_with(e.r, JOB_QUEUED), d);
  assert_ptr_equal(registry_next_with(d, JOB_QUEUED), c);
  assert_ptr_equal(registry_next_with(c, JOB_QUEUED), b);
  assert_null(registry_next_with(b, JOB_QUEUED));

  watch_t wb = {.w.cb = on_final}, wc = {.w.cb = on_final}, wd = {.w.cb = on_final}, wa = {.w.cb = on_final};
  registry_watch(a, &wa.w);
  registry_watch(b, &wb.w);
  registry_watch(c, &wc.w);
  registry_watch(d, &wd.w);

  /* Queued: canceled at once, the others move up. */
  assert_int_equal(registry_cancel(e.r, c), 0);
  assert_int_equal(c->status, JOB_CANCELED);
  assert_string_equal(c->err_code, "canceled");
  assert_non_null(c->err_message);
  assert_true(c->finished_at > 0);
  assert_int_equal(wc.fired, 1);
  assert_int_equal(registry_position(e.r, c), 0);
  assert_int_equal(registry_position(e.r, b), 1);
  assert_int_equal(registry_position(e.r, d), 2);
  assert_int_equal(registry_cancel(e.r, c), OFF_EBUSY);
  assert_int_equal(registry_in_flight(e.r), 3);
  assert_int_equal(registry_stats(e.r)->finals[e.fib_idx][JOB_CANCELED], 1);

  /* Processing: requested now, canceled by the time the done callback
   * runs. The spin checks its flag every few microseconds, so it may have
   * stopped already when registry_cancel refreshes the job (seen on a
   * loaded machine under ASan): then it reads canceled at once. Either
   * way the watchers fire only from the done callback. */
  assert_int_equal(registry_cancel(e.r, a), 1);
  assert_true(a->cancel_requested);
  assert_true(a->status == JOB_PROCESSING || a->status == JOB_CANCELED);
  assert_int_equal(wa.fired, 0);
  RUN_UNTIL(&e, job_is_final(a));
  assert_int_equal(a->status, JOB_CANCELED);
  assert_string_equal(a->err_code, "canceled");
  assert_true(a->progress < 1.0);
  assert_int_equal(wa.fired, 1);

  RUN_UNTIL(&e, job_is_final(b) && job_is_final(d));
  assert_int_equal(b->status, JOB_COMPLETE);
  assert_int_equal(json_integer_value(b->result), 5);
  assert_int_equal(d->status, JOB_COMPLETE);
  assert_int_equal(json_integer_value(d->result), 13);
  assert_int_equal(wb.fired, 1);
  assert_int_equal(wd.fired, 1);
  assert_int_equal(wc.fired, 1);
  assert_int_equal(registry_cancel(e.r, a), OFF_EBUSY);
  assert_int_equal(registry_cancel(e.r, b), OFF_EBUSY);
  assert_int_equal(registry_in_flight(e.r), 0);
  env_stop(&e);
}

static void test_queue_full(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){.max_queue = 2});
  job_t *a = submit_blocker(&e);
  job_t *b = submit(&e, e.fib, "n", 1, -1);
  job_t *c = submit(&e, e.fib, "n", 1, -1);
  json_t *params = json_pack("{s:i}", "n", 1);
  job_t *out = (job_t *)&out; /* a marker: must stay untouched */
  assert_int_equal(registry_submit(e.r, e.fib, params, -1, 0, &out), OFF_EFULL);
  assert_ptr_equal(out, (job_t *)&out);
  json_decref(params);
  const registry_stats_t *st = registry_stats(e.r);
  assert_int_equal(st->submitted, 3);
  assert_int_equal(st->jobs, 3);
  assert_int_equal(registry_in_flight(e.r), 3);
  assert_ptr_equal(registry_newest(e.r), c);
  assert_int_equal(registry_position(e.r, c), 2);

  assert_int_equal(registry_cancel(e.r, a), 1);
  RUN_UNTIL(&e, job_is_final(a) && job_is_final(b) && job_is_final(c));
  assert_int_equal(b->status, JOB_COMPLETE);
  assert_int_equal(c->status, JOB_COMPLETE);
  env_stop(&e);
}

static void test_timeouts(void **state) {
  (void)state;
  env_t e;
  /* 500 ms, not less: `quick` must finish inside it even on a loaded machine. */
  env_start(&e, (env_config_t){.default_timeout_ms = 500});
  job_t *own = submit(&e, e.spin, "ms", LONG_SPIN_MS, 40);
  job_t *dflt = submit(&e, e.spin, "ms", LONG_SPIN_MS, -1);
  job_t *quick = submit(&e, e.fib, "n", 10, -1); /* default applies, but it is fast */
  RUN_UNTIL(&e, job_is_final(own) && job_is_final(dflt) && job_is_final(quick));
  assert_int_equal(own->status, JOB_FAILED);
  assert_string_equal(own->err_code, "timeout");
  assert_non_null(strstr(own->err_message, "40"));
  assert_int_equal(dflt->status, JOB_FAILED);
  assert_string_equal(dflt->err_code, "timeout");
  assert_non_null(strstr(dflt->err_message, "500"));
  assert_int_equal(quick->status, JOB_COMPLETE);
  assert_int_equal(json_integer_value(quick->result), 55);
  env_stop(&e);
}

static void failing_run(offload_task_t *t) { offload_task_fail(t, "boom", "it broke at %d", 42); }

static void test_failed_task(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  /* The catalog holds copies, so a test may swap in its own run function. */
  e.cat.defs[e.fib_idx].run = failing_run;
  job_t *j = submit(&e, e.fib, "n", 1, -1);
  RUN_UNTIL(&e, job_is_final(j));
  assert_int_equal(j->status, JOB_FAILED);
  assert_string_equal(j->err_code, "boom");
  assert_string_equal(j->err_message, "it broke at 42");
  assert_null(j->result);
  assert_int_equal(registry_stats(e.r)->finals[e.fib_idx][JOB_FAILED], 1);
  env_stop(&e);
}

static void test_max_finished_eviction(void **state) {
  (void)state;
  enum { N = 5 };
  env_t e;
  env_start(&e, (env_config_t){.max_finished = 3});
  char ids[N + 1][JOB_ID_LEN + 1];
  for (int i = 0; i < N; i++)
    memcpy(ids[i], submit(&e, e.fib, "n", i, -1)->id, JOB_ID_LEN + 1);
  /* Job pointers may dangle once evicted: wait on the count, look up by id. */
  RUN_UNTIL(&e, registry_in_flight(e.r) == 0);
  assert_null(registry_get(e.r, ids[0]));
  assert_null(registry_get(e.r, ids[1]));
  for (int i = 2; i < N; i++) {
    job_t *j = registry_get(e.r, ids[i]);
    assert_non_null(j);
    assert_int_equal(j->status, JOB_COMPLETE);
  }
  const registry_stats_t *st = registry_stats(e.r);
  assert_int_equal(st->jobs, 3);
  assert_int_equal(st->finished, 3);
  assert_int_equal(st->finals[e.fib_idx][JOB_COMPLETE], N);
  int count = 0;
  for (job_t *j = registry_newest(e.r); j; j = registry_older(j))
    count++;
  assert_int_equal(count, 3);

  /* Unfinished jobs are never evicted, however many finish around them. */
  job_t *a = submit_blocker(&e);
  memcpy(ids[N], a->id, JOB_ID_LEN + 1);
  for (int i = 0; i < 4; i++)
    assert_int_equal(registry_cancel(e.r, submit(&e, e.fib, "n", 1, -1)), 0);
  assert_ptr_equal(registry_get(e.r, ids[N]), a);
  assert_null(registry_get(e.r, ids[2]));
  assert_int_equal(registry_stats(e.r)->finished, 3);
  assert_int_equal(registry_stats(e.r)->jobs, 4);
  assert_int_equal(registry_cancel(e.r, a), 1);
  RUN_UNTIL(&e, registry_in_flight(e.r) == 0);
  job_t *ga = registry_get(e.r, ids[N]);
  assert_non_null(ga); /* just finished: the newest finished job */
  assert_int_equal(ga->status, JOB_CANCELED);
  assert_int_equal(registry_stats(e.r)->finished, 3);
  env_stop(&e);
}

static void test_retention_eviction(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){.retention_ms = 50});
  job_t *a = submit_blocker(&e);
  char id[JOB_ID_LEN + 1], id_a[JOB_ID_LEN + 1];
  memcpy(id_a, a->id, sizeof id_a);
  job_t *c = submit(&e, e.fib, "n", 3, -1);
  memcpy(id, c->id, sizeof id);
  assert_int_equal(registry_cancel(e.r, c), 0);
  RUN_UNTIL(&e, registry_get(e.r, id) == NULL);
  assert_ptr_equal(registry_get(e.r, id_a), a); /* still running: kept */
  assert_int_equal(registry_cancel(e.r, a), 1);
  RUN_UNTIL(&e, registry_get(e.r, id_a) == NULL);
  assert_int_equal(registry_stats(e.r)->jobs, 0);
  env_stop(&e);
}

/* ---- shutdown ---- */

typedef struct idle {
  int fired;
  env_t *e;
  bool free_pool; /* do what the server does: free the pool from the callback */
} idle_t;

static void on_idle(void *data) {
  idle_t *x = data;
  x->fired++;
  if (x->free_pool) {
    pool_free(x->e->pool);
    x->e->pool = NULL;
  }
}

static store_job_t row(uint64_t seq, const char *task, const char *params, const char *status, int attempts,
                       int retries) {
  store_job_t r;
  memset(&r, 0, sizeof r);
  r.seq = seq;
  snprintf(r.id, sizeof r.id, "AAAAAAAAAAAAAAAAAAAA%02d", (int)seq);
  r.task = (char *)task;
  r.params = (char *)params;
  r.status = status;
  r.attempts = attempts;
  r.retries = retries;
  r.created_at = 1000 + (int64_t)seq;
  if (strcmp(status, "complete") == 0) {
    r.started_at = 2000;
    r.finished_at = clock_wall_ms();
    r.result = (char *)"6765";
  }
  if (strcmp(status, "processing") == 0)
    r.started_at = 2000;
  return r;
}

static void test_restore(void **state) {
  (void)state;
  /* Rows as a store hands them back at start, in creation order: a final
   * job is kept as it was; queued ones run again in their order; one that
   * was processing runs again if it has a run left, else fails
   * `interrupted`; a task this server does not offer is left alone. */
  env_t e;
  env_start(&e, (env_config_t){0});
  store_job_t rows[] = {
      row(1, "fibonacci", "{\"n\":20}", "complete", 1, 0),
      row(2, "fibonacci", "{\"n\":10}", "processing", 1, 0),
      row(3, "fibonacci", "{\"n\":11}", "processing", 1, 1),
      row(4, "fibonacci", "{\"n\":12}", "queued", 0, 0),
      row(5, "no_such_task", "{}", "queued", 0, 0),
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    assert_int_equal(registry_restore(e.r, &rows[i]), 0);
  job_t *done = registry_get(e.r, rows[0].id), *cut = registry_get(e.r, rows[1].id),
        *again = registry_get(e.r, rows[2].id), *queued = registry_get(e.r, rows[3].id);
  assert_non_null(done);
  assert_int_equal(done->status, JOB_COMPLETE);
  assert_int_equal(json_integer_value(done->result), 6765);
  assert_true(done->progress == 1.0);
  assert_int_equal(cut->status, JOB_FAILED);
  assert_string_equal(cut->err_code, "interrupted");
  assert_null(registry_get(e.r, rows[4].id));
  RUN_UNTIL(&e, job_is_final(again) && job_is_final(queued));
  assert_int_equal(again->status, JOB_COMPLETE);
  assert_int_equal(again->attempts, 2);
  assert_int_equal(json_integer_value(again->result), 89);
  assert_int_equal(queued->status, JOB_COMPLETE);
  assert_int_equal(queued->attempts, 1);
  assert_int_equal(json_integer_value(queued->result), 144);
  /* Creation order is kept, and new jobs are numbered after the stored ones. */
  assert_ptr_equal(registry_newest(e.r), queued);
  job_t *fresh = submit(&e, e.fib, "n", 5, -1);
  assert_ptr_equal(registry_newest(e.r), fresh);
  RUN_UNTIL(&e, job_is_final(fresh));
  env_stop(&e);
}

static void test_restore_evicts_oldest_finished(void **state) {
  (void)state;
  /* Restored final jobs are evicted oldest *finished* first, although
   * they come back in creation order. */
  env_t e;
  env_start(&e, (env_config_t){.max_finished = 2});
  int64_t now = clock_wall_ms();
  store_job_t rows[] = {
      row(1, "fibonacci", "{\"n\":20}", "complete", 1, 0),
      row(2, "fibonacci", "{\"n\":20}", "complete", 1, 0),
      row(3, "fibonacci", "{\"n\":20}", "complete", 1, 0),
  };
  rows[0].finished_at = now - 100;
  rows[1].finished_at = now - 5000;
  rows[2].finished_at = now - 1000;
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(registry_restore(e.r, &rows[i]), 0);
  job_t *fresh = submit(&e, e.fib, "n", 5, -1);
  RUN_UNTIL(&e, job_is_final(fresh) && !fresh->_item);
  assert_non_null(registry_get(e.r, rows[0].id));
  assert_null(registry_get(e.r, rows[1].id));
  assert_null(registry_get(e.r, rows[2].id));
  env_stop(&e);
}

typedef struct stored {
  char status[16];
  char id[24];
  int n;
} stored_t;

static void on_stored(const store_job_t *j, void *data) {
  stored_t *st = data;
  if (strcmp(j->id, st->id) == 0)
    snprintf(st->status, sizeof st->status, "%s", j->status);
  st->n++;
}

/* Opens the store in `dir` again and reads what it says of job `id`
 * (status, "" when absent) and how many rows it has. */
static stored_t read_back(const char *dir, const char *id) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  store_config_t sc = {.kind = STORE_SQLITE, .data_dir = dir};
  store_t *s = store_open(&loop, &sc, err, sizeof err);
  assert_non_null(s);
  stored_t st = {.n = 0};
  snprintf(st.id, sizeof st.id, "%s", id);
  assert_int_equal(store_load(s, on_stored, &st), 0);
  store_close(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  return st;
}

static void rm_rf(const char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* A blocker whose processing row is written, then canceled while the
 * store fails its next commit (as on a full disk): unsaved. */
static job_t *cancel_unsaved(env_t *e) {
  job_t *a = submit(e, e->spin, "ms", LONG_SPIN_MS, 0);
  RUN_UNTIL(e, job_is_accepted(a));
  WAIT_PROCESSING(e, a);
  RUN_UNTIL(e, a->_writes == 0);
  fault_arm(FAULT_STORE_COMMIT, 1);
  assert_int_equal(registry_cancel(e->r, a), 1);
  RUN_UNTIL(e, job_is_final(a) && !a->_item && a->_writes == 0);
  assert_int_equal(fault_fired_count(FAULT_STORE_COMMIT), 1);
  assert_true(a->_unsaved);
  return a;
}

static void test_failed_write_is_written_again(void **state) {
  (void)state;
  /* A transition the store could not commit is written again, as the job
   * then is, by the registry's next second. */
  char dir[] = "/tmp/offload-regtest-XXXXXX";
  assert_non_null(mkdtemp(dir));
  env_t e;
  env_start(&e, (env_config_t){.store_dir = dir});
  job_t *a = cancel_unsaved(&e);
  char id[24];
  snprintf(id, sizeof id, "%s", a->id);
  RUN_UNTIL(&e, !a->_unsaved && a->_writes == 0);
  assert_int_equal(registry_stats(e.r)->store_failures, 1);
  env_stop(&e);
  stored_t st = read_back(dir, id);
  assert_string_equal(st.status, "canceled");
  assert_int_equal(st.n, 1);
  rm_rf(dir);
}

static void test_unsaved_job_is_not_evicted(void **state) {
  (void)state;
  /* Past --max-finished, an unsaved job waits to be evicted until it is
   * written; eviction then deletes its row too, so disk keeps what memory
   * keeps. */
  char dir[] = "/tmp/offload-regtest-XXXXXX";
  assert_non_null(mkdtemp(dir));
  env_t e;
  env_start(&e, (env_config_t){.max_finished = 1, .store_dir = dir});
  job_t *a = cancel_unsaved(&e);
  char id[24];
  snprintf(id, sizeof id, "%s", a->id);
  job_t *b = submit(&e, e.fib, "n", 5, -1);
  RUN_UNTIL(&e, job_is_final(b) && !b->_item && b->_writes == 0);
  assert_ptr_equal(registry_get(e.r, id), a);
  RUN_UNTIL(&e, registry_get(e.r, id) == NULL);
  char bid[24];
  snprintf(bid, sizeof bid, "%s", b->id);
  env_stop(&e);
  assert_int_equal(read_back(dir, id).n, 1); /* a's row went with it */
  assert_string_equal(read_back(dir, bid).status, "complete");
  rm_rf(dir);
}

static void test_drain(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  idle_t idle = {.e = &e};
  job_t *a = submit_blocker(&e);
  job_t *b = submit(&e, e.fib, "n", 1, -1);
  job_t *c = submit(&e, e.fib, "n", 1, -1);
  watch_t wb = {.w.cb = on_final};
  registry_watch(b, &wb.w);

  registry_on_idle(e.r, on_idle, &idle); /* not draining yet: waits */
  assert_int_equal(idle.fired, 0);
  registry_drain(e.r);
  assert_int_equal(idle.fired, 0); /* a is still in flight */
  assert_int_equal(b->status, JOB_CANCELED);
  assert_int_equal(c->status, JOB_CANCELED);
  assert_string_equal(b->err_code, "canceled");
  assert_true(b->canceled_by_shutdown);
  assert_int_equal(wb.fired, 1);
  assert_int_equal(a->status, JOB_PROCESSING);
  assert_false(a->cancel_requested); /* running jobs get the drain time */
  assert_int_equal(registry_in_flight(e.r), 1);

  uint64_t submitted = registry_stats(e.r)->submitted;
  json_t *params = json_pack("{s:i}", "n", 1);
  job_t *out = NULL;
  assert_int_equal(registry_submit(e.r, e.fib, params, -1, 0, &out), OFF_ESTOPPED);
  assert_null(out);
  json_decref(params);
  assert_int_equal(registry_stats(e.r)->submitted, submitted);
  assert_int_equal(registry_stats(e.r)->jobs, 3);

  registry_cancel_running(e.r);
  assert_true(a->cancel_requested);
  assert_true(a->canceled_by_shutdown);
  RUN_UNTIL(&e, idle.fired > 0);
  assert_int_equal(idle.fired, 1);
  assert_int_equal(a->status, JOB_CANCELED);
  assert_string_equal(a->err_code, "canceled");
  assert_int_equal(registry_in_flight(e.r), 0);
  for (int i = 0; i < 10; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  assert_int_equal(idle.fired, 1);

  /* Once per registration: a new one while idle fires at once. */
  registry_on_idle(e.r, on_idle, &idle);
  assert_int_equal(idle.fired, 2);
  env_stop(&e);
}

/* The server's shutdown path: drain, and free the pool from the idle callback
 * (which runs inside the pool's own done callback). */
static void test_drain_free_pool_from_idle(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  idle_t idle = {.e = &e, .free_pool = true};
  job_t *a = submit_blocker(&e);
  submit(&e, e.fib, "n", 1, -1);
  registry_drain(e.r);
  registry_on_idle(e.r, on_idle, &idle);
  assert_int_equal(idle.fired, 0);
  registry_cancel_running(e.r);
  RUN_UNTIL(&e, idle.fired > 0);
  assert_null(e.pool);
  assert_int_equal(a->status, JOB_CANCELED);
  assert_int_equal(registry_in_flight(e.r), 0);
  registry_free(e.r);
  uv_run(&e.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&e.loop), 0);
  tasks_catalog_fini(&e.cat);
}

/* registry.h: "Requests cancellation of every processing job." A queued job
 * is not processing, so it must stay queued. */
static void test_cancel_running_spares_queued(void **state) {
  (void)state;
  env_t e;
  env_start(&e, (env_config_t){0});
  job_t *a = submit_blocker(&e);
  job_t *b = submit(&e, e.fib, "n", 1, -1);
  registry_cancel_running(e.r);
  assert_true(a->cancel_requested);
  job_status_t b_after = b->status;
  bool b_requested = b->cancel_requested;
  RUN_UNTIL(&e, registry_in_flight(e.r) == 0);
  assert_int_equal(a->status, JOB_CANCELED);
  job_status_t b_final = b->status;
  env_stop(&e);
  if (b_after != JOB_QUEUED || b_requested)
    fail_msg("registry_cancel_running touched a queued job: status %s, cancel_requested %d", job_status_name(b_after),
             b_requested);
  assert_int_equal(b_final, JOB_COMPLETE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_unique_and_found),
      cmocka_unit_test(test_hash_growth),
      cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_position_and_cancel),
      cmocka_unit_test(test_queue_full),
      cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_failed_task),
      cmocka_unit_test(test_max_finished_eviction),
      cmocka_unit_test(test_retention_eviction),
      cmocka_unit_test(test_drain),                  cmocka_unit_test(test_restore),
      cmocka_unit_test(test_drain_free_pool_from_idle),
      cmocka_unit_test(test_cancel_running_spares_queued),
      cmocka_unit_test(test_failed_write_is_written_again),
      cmocka_unit_test(test_unsaved_job_is_not_evicted),
      cmocka_unit_test(test_restore_evicts_oldest_finished),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
