/* pg_test: the PostgreSQL store (store/pg.c, pg_apply.c) against a real
 * PostgreSQL 15 the test starts itself (scripts/pgtmp.py: a temp dir, a
 * unix socket, an unprivileged user): the schema and its version check,
 * claims (oldest first, never a job twice, only the node's tasks, never
 * more than asked), writes fenced by the claim's token, idempotency keys
 * across nodes, cancels, listings with queue places, the reaper of a dead
 * node's jobs, notifications, and the database going away and coming
 * back. Two or three stores on one loop stand for nodes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/test_poll.h"

#include "store/pg_test_env.h"

static void reset_db(void) {
  sql("DROP TABLE IF EXISTS jobs, nodes, offload_meta");
}

/* ---- nodes ---- */

typedef struct node {
  store_t *s;
  int ups, downs, lost, notes, nodes_events;
  char last_note[8192];
  uint64_t requeued;
} node_t;

static void on_event(const store_event_t *ev, void *data) {
  node_t *n = data;
  switch (ev->kind) {
  case STORE_EV_UP: n->ups++; break;
  case STORE_EV_DOWN: n->downs++; break;
  case STORE_EV_LOST: n->lost++; break;
  case STORE_EV_NOTIFY:
    n->notes++;
    snprintf(n->last_note, sizeof n->last_note, "%s", ev->payload);
    break;
  case STORE_EV_NODES:
    n->nodes_events++;
    n->requeued += ev->requeued;
    break;
  }
}

static store_t *open_node(uv_loop_t *loop, node_t *n, const char *id, int64_t lease_ms, char *err, size_t errsz) {
  memset(n, 0, sizeof *n);
  store_config_t cfg = {
      .kind = STORE_POSTGRES,
      .pg_url = url,
      .files_dir = files,
      .node_id = id,
      .node_url = "http://127.0.0.1:1",
      .heartbeat_ms = 50,
      .lease_ms = lease_ms,
      .on_event = on_event,
      .event_data = n,
  };
  n->s = store_open(loop, &cfg, err, errsz);
  if (n->s)
    assert_int_equal(store_load(n->s, NULL, NULL), 0);
  return n->s;
}

static void start_node(uv_loop_t *loop, node_t *n, const char *id, int64_t lease_ms) {
  char err[512] = "";
  if (!open_node(loop, n, id, lease_ms, err, sizeof err))
    fail_msg("store_open: %s", err);
  POLL(loop, true, n->ups > 0 && n->nodes_events > 0);
}

static void close_node(uv_loop_t *loop, node_t *n) {
  store_close(n->s);
  n->s = NULL;
  uv_run(loop, UV_RUN_NOWAIT);
}

/* ---- writes ---- */

typedef struct w {
  store_write_t w;
  store_job_t job;
  char ids[4][24];
  store_job_t rows[4];
  int calls, rc;
} w_t;

static void on_done(store_write_t *sw, int rc, void *data) {
  (void)data;
  w_t *x = (w_t *)sw;
  x->calls++;
  x->rc = rc;
}

static w_t *new_write(store_write_kind_t kind) {
  w_t *x = calloc(1, sizeof *x);
  x->w.kind = kind;
  x->w.job = &x->job;
  x->w.cb = on_done;
  x->rc = 99;
  return x;
}

static void free_write(w_t *x) {
  store_job_fini(&x->job);
  for (int i = 0; i < 4; i++)
    store_job_fini(&x->rows[i]);
  store_rows_free(x->w.out, x->w.nout);
  free(x);
}

static w_t *insert_job(const char *id, const char *task, const char *key) {
  w_t *x = new_write(STORE_W_INSERT);
  snprintf(x->job.id, sizeof x->job.id, "%s", id);
  x->job.task = strdup(task);
  x->job.params = strdup("{\"ms\":1}");
  x->job.status = "queued";
  x->job.created_at = clock_wall_ms();
  x->job.retries = 1;
  x->job.idem_key = key ? strdup(key) : NULL;
  return x;
}

static w_t *claim(size_t max, const char *tasks) {
  w_t *x = new_write(STORE_R_CLAIM);
  x->w.job = NULL;
  x->w.max = max;
  x->w.tasks = tasks;
  return x;
}

static w_t *final_write(const char *id, int token, const char *status) {
  w_t *x = new_write(STORE_W_UPDATE);
  snprintf(x->job.id, sizeof x->job.id, "%s", id);
  x->job.status = status;
  x->job.token = token;
  x->job.attempts = token;
  x->job.started_at = clock_wall_ms() - 5;
  x->job.finished_at = clock_wall_ms();
  x->job.result = strdup("{\"ok\":true}");
  return x;
}

static w_t *fetch(const char *id, store_write_kind_t kind) {
  w_t *x = new_write(kind);
  x->w.job = NULL;
  snprintf(x->ids[0], 24, "%s", id);
  x->w.ids = (const char(*)[24])x->ids;
  x->w.nids = 1;
  x->w.rows = x->rows;
  x->w.place = kind == STORE_R_FETCH; /* and its place in the queue */
  return x;
}

/* Writes `x` through `n` and waits for its callback. */
static void go(uv_loop_t *loop, node_t *n, w_t *x) {
  store_write(n->s, &x->w);
  POLL(loop, true, x->calls == 1);
}

/* ---- tests ---- */

static void test_schema_and_newer_refused(void **state) {
  (void)state;
  reset_db();
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t a;
  start_node(&loop, &a, "a", 5000);
  close_node(&loop, &a);
  sql("UPDATE offload_meta SET value = '99' WHERE key = 'schema_version'");
  char err[512] = "";
  node_t b;
  assert_null(open_node(&loop, &b, "b", 5000, err, sizeof err));
  assert_non_null(strstr(err, "schema version 99"));
  assert_null(strstr(err, "password"));
  sql("UPDATE offload_meta SET value = '1' WHERE key = 'schema_version'");
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_claims_and_fencing(void **state) {
  (void)state;
  reset_db();
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t a, b;
  start_node(&loop, &a, "a", 5000);
  start_node(&loop, &b, "b", 5000);
  const char *ids[] = {"job0000000000000000001", "job0000000000000000002", "job0000000000000000003"};
  w_t *ins[3];
  for (int i = 0; i < 3; i++) {
    ins[i] = insert_job(ids[i], i == 2 ? "other" : "spin", NULL);
    store_write(a.s, &ins[i]->w);
  }
  POLL(&loop, true, ins[2]->calls == 1);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ins[i]->rc, 0);
    assert_int_equal(ins[i]->w.count, (uint64_t)i + 1); /* its place in the queue */
  }
  POLL(&loop, true, strstr(b.last_note, "\nN") != NULL); /* b hears there is work */
  /* b claims one (the oldest), a the next; nobody gets a task it does not run. */
  w_t *cb = claim(1, "[\"spin\"]");
  go(&loop, &b, cb);
  assert_int_equal(cb->rc, 0);
  assert_int_equal(cb->w.nout, 1);
  assert_string_equal(cb->w.out[0].id, ids[0]);
  assert_string_equal(cb->w.out[0].status, "processing");
  assert_string_equal(cb->w.out[0].owner, "b");
  assert_int_equal(cb->w.out[0].attempts, 1);
  w_t *ca = claim(5, "[\"spin\"]");
  go(&loop, &a, ca);
  assert_int_equal(ca->w.nout, 1);
  assert_string_equal(ca->w.out[0].id, ids[1]);
  /* a's write with b's token is fenced; b's own lands; a late second write is fenced too. */
  w_t *fa = final_write(ids[0], 1, "complete");
  go(&loop, &a, fa);
  assert_int_equal(fa->rc, OFF_EFENCED);
  w_t *fb = final_write(ids[0], 1, "complete");
  go(&loop, &b, fb);
  assert_int_equal(fb->rc, 0);
  w_t *fb2 = final_write(ids[0], 1, "failed");
  go(&loop, &b, fb2);
  assert_int_equal(fb2->rc, OFF_EFENCED);
  w_t *r = fetch(ids[0], STORE_R_FETCH);
  go(&loop, &a, r);
  assert_string_equal(r->rows[0].status, "complete");
  assert_string_equal(r->rows[0].result, "{\"ok\":true}");
  assert_true(store_stats(a.s)->fenced >= 1);
  /* The queued "other" job: its place is 1 now (counted only when asked). */
  w_t *r2 = fetch(ids[2], STORE_R_FETCH);
  go(&loop, &b, r2);
  assert_string_equal(r2->rows[0].status, "queued");
  assert_int_equal(r2->w.count, 1);
  assert_int_equal(r2->rows[0].place, 1);
  w_t *r3 = fetch(ids[2], STORE_R_FETCH);
  r3->w.place = false;
  go(&loop, &b, r3);
  assert_string_equal(r3->rows[0].status, "queued");
  assert_int_equal(r3->rows[0].place, 0);
  free_write(r3);
  w_t *all[] = {ins[0], ins[1], ins[2], cb, ca, fa, fb, fb2, r, r2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free_write(all[i]);
  close_node(&loop, &a);
  close_node(&loop, &b);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_idempotency_cancel_list(void **state) {
  (void)state;
  reset_db();
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t a, b;
  start_node(&loop, &a, "a", 5000);
  start_node(&loop, &b, "b", 5000);
  /* One key on two nodes in the same moment: one job. */
  w_t *k1 = insert_job("key0000000000000000001", "spin", "K");
  w_t *k2 = insert_job("key0000000000000000002", "spin", "K");
  store_write(a.s, &k1->w);
  store_write(b.s, &k2->w);
  POLL(&loop, true, k1->calls == 1 && k2->calls == 1);
  assert_true((k1->rc == 0) != (k2->rc == 0));
  w_t *lost = k1->rc == 0 ? k2 : k1, *won = k1->rc == 0 ? k1 : k2;
  assert_int_equal(lost->rc, OFF_EEXIST);
  assert_int_equal(lost->w.nout, 1);
  assert_string_equal(lost->w.out[0].id, won->job.id);
  /* Cancel: a queued job now; a running one is asked (its node hears "C"); an unknown one is none. */
  w_t *c1 = fetch(won->job.id, STORE_W_CANCEL);
  go(&loop, &b, c1);
  assert_int_equal(c1->rc, 0);
  assert_string_equal(c1->w.prev_status, "queued");
  assert_string_equal(c1->rows[0].status, "canceled");
  w_t *ins = insert_job("run0000000000000000001", "spin", NULL);
  go(&loop, &a, ins);
  w_t *cl = claim(1, "[\"spin\"]");
  go(&loop, &a, cl);
  assert_int_equal(cl->w.nout, 1);
  w_t *c2 = fetch("run0000000000000000001", STORE_W_CANCEL);
  go(&loop, &b, c2);
  assert_string_equal(c2->w.prev_status, "processing");
  assert_true(c2->rows[0].cancel_requested);
  POLL(&loop, true, strstr(a.last_note, "\nC a run0000000000000000001") != NULL);
  w_t *c3 = fetch("nope000000000000000001", STORE_W_CANCEL);
  go(&loop, &b, c3);
  assert_null(c3->w.prev_status);
  /* A listing, newest first, and the queue's places. */
  w_t *q1 = insert_job("q000000000000000000001", "spin", NULL), *q2 = insert_job("q000000000000000000002", "spin", NULL);
  store_write(a.s, &q1->w);
  store_write(a.s, &q2->w);
  POLL(&loop, true, q2->calls == 1);
  w_t *l = new_write(STORE_R_LIST);
  l->w.job = NULL;
  l->w.max = 10;
  go(&loop, &b, l);
  assert_int_equal(l->w.nout, 4);
  assert_string_equal(l->w.out[0].id, "q000000000000000000002");
  assert_string_equal(l->w.out[3].id, won->job.id);
  assert_int_equal(l->w.count, 2);
  w_t *lq = new_write(STORE_R_LIST);
  lq->w.job = NULL;
  lq->w.max = 10;
  lq->w.status = "processing";
  go(&loop, &b, lq);
  assert_int_equal(lq->w.nout, 1);
  w_t *all[] = {k1, k2, c1, ins, cl, c2, c3, q1, q2, l, lq};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free_write(all[i]);
  close_node(&loop, &a);
  close_node(&loop, &b);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_dead_node_reaped_and_fenced(void **state) {
  (void)state;
  reset_db();
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t a, b;
  start_node(&loop, &a, "a", 400);
  start_node(&loop, &b, "b", 400);
  w_t *ins = insert_job("dead000000000000000001", "spin", NULL);
  go(&loop, &a, ins);
  w_t *cb = claim(1, "[\"spin\"]");
  go(&loop, &b, cb);
  assert_int_equal(cb->w.nout, 1);
  close_node(&loop, &b); /* b stops heartbeating: dead after 400 ms */
  int64_t t0 = clock_mono_ms();
  w_t *ca = NULL;
  for (;;) { /* a re-queues it (counting b's attempt), then claims it itself */
    ca = claim(1, "[\"spin\"]");
    go(&loop, &a, ca);
    if (ca->w.nout)
      break;
    free_write(ca);
    assert_true(clock_mono_ms() - t0 < 10000);
    usleep(20000);
  }
  assert_int_equal(ca->w.out[0].attempts, 2);
  assert_true(a.requeued >= 1);
  /* b comes back (a new life of the same id) and writes its old result: fenced. */
  start_node(&loop, &b, "b", 400);
  w_t *late = final_write("dead000000000000000001", 1, "complete");
  go(&loop, &b, late);
  assert_int_equal(late->rc, OFF_EFENCED);
  w_t *mine = final_write("dead000000000000000001", 2, "complete");
  go(&loop, &a, mine);
  assert_int_equal(mine->rc, 0);
  w_t *all[] = {ins, cb, ca, late, mine};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free_write(all[i]);
  close_node(&loop, &a);
  close_node(&loop, &b);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_database_restart(void **state) {
  (void)state;
  reset_db();
  uv_loop_t loop;
  uv_loop_init(&loop);
  node_t a;
  start_node(&loop, &a, "a", 5000);
  assert_int_equal(run_cmd("stop"), 0);
  w_t *x = NULL;
  for (;;) { /* the first write after the stop finds the connection gone */
    x = insert_job("down000000000000000001", "spin", NULL);
    go(&loop, &a, x);
    if (x->rc != 0)
      break;
    free_write(x);
  }
  assert_int_equal(x->rc, OFF_ESTORE);
  POLL(&loop, true, a.downs == 1 && !store_ok(a.s));
  assert_int_equal(run_cmd("start"), 0);
  POLL(&loop, true, store_ok(a.s));
  w_t *y = insert_job("up00000000000000000001", "spin", NULL);
  go(&loop, &a, y);
  assert_int_equal(y->rc, 0);
  free_write(x);
  free_write(y);
  close_node(&loop, &a);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schema_and_newer_refused),
      cmocka_unit_test(test_claims_and_fencing),
      cmocka_unit_test(test_idempotency_cancel_list),
      cmocka_unit_test(test_dead_node_reaped_and_fenced),
      cmocka_unit_test(test_database_restart),
  };
  return cmocka_run_group_tests(tests, pg_up, pg_down_all);
}
