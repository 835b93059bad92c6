/* pool_test: the promises of offload/pool.h, through the header only.
 *
 * Each test owns a private uv_loop_t and drives it with UV_RUN_NOWAIT in a
 * polling loop until a condition holds or a generous deadline passes: the
 * tests also run under ASan and TSan on a small, noisy machine, so no
 * assertion depends on how fast anything is, only on what eventually happens.
 * Teardown always checks that pool_free leaves the loop closable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "offload/pool.h"
#include "util/clock.h"
#include "util/err.h"

#include "util/test_poll.h"

/* Runs `loop` until `cond` holds (see util/test_poll.h). */
#define RUN_UNTIL(loop, cond) POLL(loop, true, cond)

/* ---- a plain work item ---- */

typedef struct ctx ctx_t;

typedef struct item {
  pool_work_t work; /* first: the pool hands us back by this */
  pool_ctl_t ctl;   /* work.ctl points here */
  ctx_t *ctx;
  int id;
  atomic_bool *gate; /* when set, the run waits until *gate is true */
  _Atomic int runs;  /* worker side */
  int start_seq;     /* worker writes; loop reads after done */
  /* Loop side. */
  int dones;
  int started;       /* `started` callbacks */
  int state_at_started;
  int done_seq;
  int state_at_done;
  int submit_in_done_rc; /* what pool_submit said from inside done */
} item_t;

struct ctx {
  uv_loop_t loop;
  pool_t *pool;
  _Atomic int starts; /* start sequence counter, bumped by workers */
  _Atomic int running;
  int ndone;     /* loop thread only */
  item_t *extra; /* submitted from inside `done` when set */
  int stalls[3];  /* by pool_stall_t */
  pool_work_t *stalled;
  bool submit_in_done;
  item_t *trigger; /* whose `done` removes `victim` */
  item_t *victim;
  int remove_in_done_rc;
  size_t depth_after_remove;
};

static void on_run(pool_work_t *w) {
  item_t *it = (item_t *)w;
  it->start_seq = atomic_fetch_add(&it->ctx->starts, 1);
  atomic_fetch_add(&it->runs, 1);
  atomic_fetch_add(&it->ctx->running, 1);
  if (it->gate)
    while (!atomic_load(it->gate))
      usleep(100);
  atomic_fetch_sub(&it->ctx->running, 1);
}

static void on_done(pool_work_t *w, void *data) {
  ctx_t *c = data;
  item_t *it = (item_t *)w;
  assert_ptr_equal(it->ctx, c);
  it->dones++;
  it->done_seq = c->ndone++;
  it->state_at_done = pool_work_state(w);
  if (c->victim && it == c->trigger) {
    item_t *v = c->victim;
    c->victim = NULL;
    c->remove_in_done_rc = pool_remove(c->pool, &v->work);
    c->depth_after_remove = pool_depth(c->pool);
  }
  if (c->submit_in_done) {
    c->extra->work.run = on_run;
    it->submit_in_done_rc = pool_submit(c->pool, &c->extra->work);
  }
}

static void item_init(item_t *it, ctx_t *c, int id, atomic_bool *gate) {
  *it = (item_t){.ctx = c, .id = id, .gate = gate, .start_seq = -1, .done_seq = -1, .state_at_done = -1};
  it->work.run = on_run;
  it->work.ctl = &it->ctl;
}

static void on_stall(pool_work_t *w, pool_stall_t why, void *data) {
  ctx_t *c = data;
  c->stalls[why]++;
  c->stalled = w;
}

static void on_started(pool_work_t *w, void *data) {
  item_t *it = (item_t *)w;
  assert_ptr_equal(it->ctx, data);
  assert_int_equal(it->dones, 0); /* never after its done */
  it->started++;
  it->state_at_started = pool_work_state(w);
}

static void ctx_start(ctx_t *c, unsigned workers, size_t max_queue) {
  *c = (ctx_t){0};
  assert_int_equal(uv_loop_init(&c->loop), 0);
  pool_config_t cfg = {.workers = workers, .max_queue = max_queue, .nice = 0, .kill_grace_ms = 50, .stall = on_stall,
                       .started = on_started};
  c->pool = pool_new(&c->loop, &cfg, on_done, c);
  assert_non_null(c->pool);
  assert_int_equal(pool_workers(c->pool), workers);
  assert_int_equal(pool_capacity(c->pool), max_queue);
}

/* pool_free, then one more loop run so the async handle closes. */
static void ctx_stop(ctx_t *c) {
  pool_free(c->pool);
  c->pool = NULL;
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* ---- tests ---- */

static void test_all_done_once_fifo(void **state) {
  (void)state;
  enum { N = 200 };
  ctx_t c;
  ctx_start(&c, 1, N);
  item_t *items = calloc(N, sizeof *items);
  assert_non_null(items);
  for (int i = 0; i < N; i++) {
    item_init(&items[i], &c, i, NULL);
    assert_int_equal(pool_submit(c.pool, &items[i].work), 0);
  }
  RUN_UNTIL(&c.loop, c.ndone == N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(atomic_load(&items[i].runs), 1);
    assert_int_equal(items[i].dones, 1);
    assert_int_equal(items[i].start_seq, i); /* one worker: FIFO start order */
    assert_int_equal(items[i].done_seq, i);  /* done calls come oldest first */
    assert_int_equal(items[i].state_at_done, POOL_WORK_DONE);
    assert_true(pool_work_started_ms(&items[i].work) > 0);
  }
  assert_int_equal(pool_depth(c.pool), 0);
  assert_int_equal(pool_busy(c.pool), 0);
  ctx_stop(&c);
  /* No late or duplicate done calls at shutdown. */
  for (int i = 0; i < N; i++)
    assert_int_equal(items[i].dones, 1);
  free(items);
}

static void test_bounded_queue_and_remove(void **state) {
  (void)state;
  ctx_t c;
  ctx_start(&c, 1, 2);
  atomic_bool gate = false;
  item_t a, b, d, e;
  item_init(&a, &c, 0, &gate);
  item_init(&b, &c, 1, NULL);
  item_init(&d, &c, 2, NULL);
  item_init(&e, &c, 3, NULL);

  assert_int_equal(pool_work_state(&a.work), POOL_WORK_IDLE);
  assert_int_equal(pool_work_started_ms(&a.work), 0);
  assert_int_equal(pool_submit(c.pool, &a.work), 0);
  RUN_UNTIL(&c.loop, pool_work_state(&a.work) == POOL_WORK_RUNNING && pool_busy(c.pool) == 1);
  assert_true(pool_work_started_ms(&a.work) > 0);
  assert_int_equal(pool_depth(c.pool), 0);

  assert_int_equal(pool_submit(c.pool, &b.work), 0);
  assert_int_equal(pool_submit(c.pool, &d.work), 0);
  assert_int_equal(pool_work_state(&b.work), POOL_WORK_QUEUED);
  assert_int_equal(pool_depth(c.pool), 2);
  assert_int_equal(pool_busy(c.pool), 1);

  /* Full: fails at once and nothing changes. */
  assert_int_equal(pool_submit(c.pool, &e.work), OFF_EFULL);
  assert_int_equal(pool_work_state(&e.work), POOL_WORK_IDLE);
  assert_int_equal(pool_depth(c.pool), 2);
  assert_int_equal(pool_busy(c.pool), 1);
  assert_int_equal(pool_work_state(&b.work), POOL_WORK_QUEUED);
  assert_int_equal(pool_work_state(&d.work), POOL_WORK_QUEUED);

  /* A queued item comes back; a running one does not. */
  assert_int_equal(pool_remove(c.pool, &b.work), 0);
  assert_int_equal(pool_work_state(&b.work), POOL_WORK_IDLE);
  assert_int_equal(pool_depth(c.pool), 1);
  assert_int_equal(pool_remove(c.pool, &a.work), OFF_EBUSY);
  assert_int_equal(pool_work_state(&a.work), POOL_WORK_RUNNING);

  /* The freed slot is usable again. */
  assert_int_equal(pool_submit(c.pool, &e.work), 0);
  assert_int_equal(pool_depth(c.pool), 2);

  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, a.dones == 1 && d.dones == 1 && e.dones == 1);
  assert_int_equal(b.dones, 0);
  assert_int_equal(atomic_load(&b.runs), 0);
  assert_int_equal(a.start_seq, 0);
  assert_int_equal(d.start_seq, 1);
  assert_int_equal(e.start_seq, 2);
  RUN_UNTIL(&c.loop, pool_busy(c.pool) == 0);
  assert_int_equal(pool_depth(c.pool), 0);
  /* A finished item cannot be taken back either. */
  assert_int_equal(pool_remove(c.pool, &a.work), OFF_EBUSY);

  ctx_stop(&c);
  assert_int_equal(b.dones, 0);
  assert_int_equal(a.dones + d.dones + e.dones, 3);
}

/* Unlinking from the head, middle and tail keeps the rest in FIFO order. */
static void test_remove_keeps_order(void **state) {
  (void)state;
  enum { N = 8 };
  ctx_t c;
  ctx_start(&c, 1, N);
  atomic_bool gate = false;
  item_t blocker, q[N];
  item_init(&blocker, &c, -1, &gate);
  assert_int_equal(pool_submit(c.pool, &blocker.work), 0);
  RUN_UNTIL(&c.loop, pool_work_state(&blocker.work) == POOL_WORK_RUNNING);
  for (int i = 0; i < N; i++) {
    item_init(&q[i], &c, i, NULL);
    assert_int_equal(pool_submit(c.pool, &q[i].work), 0);
  }
  assert_int_equal(pool_depth(c.pool), N);
  item_t over;
  item_init(&over, &c, N, NULL);
  assert_int_equal(pool_submit(c.pool, &over.work), OFF_EFULL);
  int gone[] = {0, 4, N - 1, 1};
  for (size_t k = 0; k < sizeof gone / sizeof gone[0]; k++)
    assert_int_equal(pool_remove(c.pool, &q[gone[k]].work), 0);
  assert_int_equal(pool_depth(c.pool), N - 4);
  /* Re-submitting a removed item puts it at the tail. */
  assert_int_equal(pool_submit(c.pool, &q[4].work), 0);

  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, c.ndone == 1 + (N - 4) + 1);
  int expect[] = {2, 3, 5, 6, 4};
  for (size_t k = 0; k < sizeof expect / sizeof expect[0]; k++) {
    assert_int_equal(q[expect[k]].dones, 1);
    assert_int_equal(q[expect[k]].start_seq, (int)k + 1);
  }
  assert_int_equal(q[0].dones + q[1].dones + q[N - 1].dones, 0);
  ctx_stop(&c);
}

/* ---- shutdown with work in flight ---- */

static void *release_later(void *arg) {
  usleep(50 * 1000);
  atomic_store((atomic_bool *)arg, true);
  return NULL;
}

static void test_free_with_work_in_flight(void **state) {
  (void)state;
  enum { NQ = 5 };
  ctx_t c;
  ctx_start(&c, 1, NQ);
  atomic_bool gate = false;
  item_t running, queued[NQ], extra;
  item_init(&running, &c, 0, &gate);
  item_init(&extra, &c, 99, NULL);
  assert_int_equal(pool_submit(c.pool, &running.work), 0);
  RUN_UNTIL(&c.loop, pool_work_state(&running.work) == POOL_WORK_RUNNING);
  for (int i = 0; i < NQ; i++) {
    item_init(&queued[i], &c, i + 1, NULL);
    assert_int_equal(pool_submit(c.pool, &queued[i].work), 0);
  }
  /* Once pool_free has begun, submit refuses (tried from inside `done`). */
  c.extra = &extra;
  c.submit_in_done = true;

  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, release_later, &gate), 0);
  pool_free(c.pool); /* blocks until the running item finishes */
  assert_int_equal(pthread_join(th, NULL), 0);

  assert_int_equal(running.dones, 1);
  assert_int_equal(atomic_load(&running.runs), 1);
  assert_int_equal(running.state_at_done, POOL_WORK_DONE);
  assert_int_equal(running.submit_in_done_rc, OFF_ESTOPPED);
  for (int i = 0; i < NQ; i++) {
    assert_int_equal(queued[i].dones, 1);
    assert_int_equal(atomic_load(&queued[i].runs), 0);
    assert_int_equal(queued[i].state_at_done, POOL_WORK_QUEUED);
    assert_int_equal(queued[i].submit_in_done_rc, OFF_ESTOPPED);
  }
  assert_int_equal(c.ndone, 1 + NQ);
  assert_int_equal(extra.dones, 0);

  uv_run(&c.loop, UV_RUN_DEFAULT); /* closes the async handle, frees the pool */
  assert_int_equal(uv_loop_close(&c.loop), 0);
  assert_int_equal(c.ndone, 1 + NQ);
}

/* pool_free hands never-started items back through `done` still QUEUED. If
 * that callback takes back another never-started item with pool_remove (as
 * registry_cancel would, from a watch callback), the header's promise must
 * hold: either pool_remove refuses, or it returns 0 and `done` is never
 * called for that item. The queue depth must not go below zero either. */
static void test_remove_during_free(void **state) {
  (void)state;
  ctx_t c;
  ctx_start(&c, 1, 4);
  atomic_bool gate = false;
  item_t running, q1, q2, q3;
  item_init(&running, &c, 0, &gate);
  item_init(&q1, &c, 1, NULL);
  item_init(&q2, &c, 2, NULL);
  item_init(&q3, &c, 3, NULL);
  assert_int_equal(pool_submit(c.pool, &running.work), 0);
  RUN_UNTIL(&c.loop, pool_work_state(&running.work) == POOL_WORK_RUNNING);
  assert_int_equal(pool_submit(c.pool, &q1.work), 0);
  assert_int_equal(pool_submit(c.pool, &q2.work), 0);
  assert_int_equal(pool_submit(c.pool, &q3.work), 0);
  atomic_store(&gate, true);
  c.trigger = &q1; /* q1's done (QUEUED, during pool_free) removes q2 */
  c.victim = &q2;
  c.remove_in_done_rc = 12345;
  pool_free(c.pool);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c.loop), 0);

  /* Every promise checked before failing, so one run shows every break. */
  assert_int_not_equal(c.remove_in_done_rc, 12345);
  bool ok = running.dones == 1 && q1.dones == 1 && q3.dones == 1 && q2.dones == (c.remove_in_done_rc == 0 ? 0 : 1) &&
            c.depth_after_remove <= 4;
  if (!ok)
    fail_msg("pool_remove(q2) from q1's done during pool_free returned %d; done calls: running %d, q1 %d, "
             "q2 %d (want %d), q3 %d (want 1); pool_depth after the remove %zu",
             c.remove_in_done_rc, running.dones, q1.dones, q2.dones, c.remove_in_done_rc == 0 ? 0 : 1, q3.dones,
             c.depth_after_remove);
}

/* pool_free right after submits, items maybe mid-flight on several workers. */
static void test_free_busy_many_workers(void **state) {
  (void)state;
  enum { N = 64 };
  ctx_t c;
  ctx_start(&c, 4, N);
  item_t *items = calloc(N, sizeof *items);
  assert_non_null(items);
  for (int i = 0; i < N; i++) {
    item_init(&items[i], &c, i, NULL);
    assert_int_equal(pool_submit(c.pool, &items[i].work), 0);
  }
  pool_free(c.pool);
  for (int i = 0; i < N; i++) {
    assert_int_equal(items[i].dones, 1);
    int runs = atomic_load(&items[i].runs);
    assert_int_equal(items[i].state_at_done, runs ? POOL_WORK_DONE : POOL_WORK_QUEUED);
  }
  assert_int_equal(c.ndone, N);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&c.loop), 0);
  free(items);
}

/* Many tiny items through 4 workers, submitted as capacity allows: every one
 * runs once and is done once. Meant for TSan as much as for the counts. */
static void test_stress_many_items(void **state) {
  (void)state;
  enum { N = 20000, QMAX = 64 };
  ctx_t c;
  ctx_start(&c, 4, QMAX);
  item_t *items = calloc(N, sizeof *items);
  assert_non_null(items);
  uint64_t deadline = clock_mono_ns() + 6 * WAIT_NS;
  int submitted = 0, fulls = 0;
  while (c.ndone < N) {
    while (submitted < N) {
      item_init(&items[submitted], &c, submitted, NULL);
      int rc = pool_submit(c.pool, &items[submitted].work);
      if (rc == OFF_EFULL) {
        fulls++;
        break;
      }
      assert_int_equal(rc, 0);
      submitted++;
    }
    assert_true(pool_depth(c.pool) <= QMAX);
    assert_true(pool_busy(c.pool) <= 4);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    if (clock_mono_ns() > deadline)
      fail_msg("stress: only %d of %d done", c.ndone, N);
    if (submitted == N || fulls % 16 == 15)
      sched_yield();
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(atomic_load(&items[i].runs), 1);
    assert_int_equal(items[i].dones, 1);
    assert_int_equal(items[i].state_at_done, POOL_WORK_DONE);
  }
  ctx_stop(&c);
  for (int i = 0; i < N; i++)
    assert_int_equal(items[i].dones, 1);
  free(items);
}

static void test_order_and_deadline(void **state) {
  (void)state;
  /* Items wait in `order`: a lower one goes in before higher ones (a retry
   * keeps its place). The deadline is set when a worker takes the item. */
  ctx_t c;
  ctx_start(&c, 1, 8);
  atomic_bool gate = false;
  item_t block, it[3];
  item_init(&block, &c, 0, &gate);
  assert_int_equal(pool_submit(c.pool, &block.work), 0);
  RUN_UNTIL(&c.loop, atomic_load(&c.running) == 1);
  uint64_t orders[3] = {5, 9, 7};
  for (int i = 0; i < 3; i++) {
    item_init(&it[i], &c, i + 1, NULL);
    it[i].work.order = orders[i];
    it[i].work.timeout_ms = 60000;
    assert_int_equal(pool_submit(c.pool, &it[i].work), 0);
  }
  uint64_t before = clock_mono_ns();
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, c.ndone == 4);
  assert_true(it[0].start_seq < it[2].start_seq && it[2].start_seq < it[1].start_seq); /* 5, 7, 9 */
  for (int i = 0; i < 3; i++) {
    uint64_t d = atomic_load(&it[i].ctl.deadline_ns);
    assert_true(d >= before + UINT64_C(60000) * 1000000u && d <= clock_mono_ns() + UINT64_C(60000) * 1000000u);
    assert_false(atomic_load(&it[i].ctl.timed_out));
  }
  assert_true(atomic_load(&block.ctl.deadline_ns) == 0); /* no timeout */
  ctx_stop(&c);
}

static void test_stuck_thread(void **state) {
  (void)state;
  /* A run that ignores its cancel flag: after the grace period the owner
   * hears (stall CANCEL) and the worker shows stuck; the other worker runs
   * on; when the run returns, `done` comes and the worker is idle again. */
  ctx_t c;
  ctx_start(&c, 2, 8);
  atomic_bool gate = false;
  item_t slow, quick;
  item_init(&slow, &c, 1, &gate);
  assert_int_equal(pool_submit(c.pool, &slow.work), 0);
  RUN_UNTIL(&c.loop, atomic_load(&c.running) == 1);
  pool_cancel(c.pool, &slow.work);
  assert_true(atomic_load(&slow.ctl.cancel));
  RUN_UNTIL(&c.loop, c.stalls[POOL_STALL_CANCEL] == 1);
  assert_ptr_equal(c.stalled, &slow.work);
  pool_worker_info_t info[2];
  assert_int_equal(pool_worker_info(c.pool, info, 2), 2);
  int stuck = info[0].state == POOL_W_STUCK ? 0 : 1;
  assert_int_equal(info[stuck].state, POOL_W_STUCK);
  assert_ptr_equal(info[stuck].work, &slow.work);
  assert_int_equal(info[1 - stuck].state, POOL_W_IDLE);
  assert_int_equal(info[stuck].pid, getpid());
  item_init(&quick, &c, 2, NULL);
  assert_int_equal(pool_submit(c.pool, &quick.work), 0);
  RUN_UNTIL(&c.loop, quick.dones == 1);
  assert_int_equal(slow.dones, 0);
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, slow.dones == 1);
  pool_worker_info(c.pool, info, 2);
  assert_int_equal(info[stuck].state, POOL_W_IDLE);
  assert_int_equal(c.stalls[POOL_STALL_CANCEL], 1);
  ctx_stop(&c);
}

static pool_worker_state_t first_worker_state(ctx_t *c) {
  pool_worker_info_t w;
  pool_worker_info(c->pool, &w, 1);
  return w.state;
}

static void test_timeout_stall(void **state) {
  (void)state;
  /* Past its deadline a thread's item is marked timed out and the owner is
   * told once, while the worker still runs it. */
  ctx_t c;
  ctx_start(&c, 1, 8);
  atomic_bool gate = false;
  item_t it;
  item_init(&it, &c, 1, &gate);
  it.work.timeout_ms = 20;
  assert_int_equal(pool_submit(c.pool, &it.work), 0);
  RUN_UNTIL(&c.loop, c.stalls[POOL_STALL_TIMEOUT] == 1);
  assert_true(atomic_load(&it.ctl.timed_out));
  assert_int_equal(it.dones, 0);
  RUN_UNTIL(&c.loop, first_worker_state(&c) == POOL_W_STUCK);
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, it.dones == 1);
  assert_int_equal(c.stalls[POOL_STALL_TIMEOUT], 1);
  assert_int_equal(c.stalls[POOL_STALL_CANCEL], 0);
  /* The same item (same address) again, as a retry reuses memory: it is a
   * new run, watched afresh, not mistaken for the one already judged. */
  atomic_store(&gate, false);
  atomic_store(&it.ctl.timed_out, false);
  it.dones = 0;
  assert_int_equal(pool_submit(c.pool, &it.work), 0);
  RUN_UNTIL(&c.loop, c.stalls[POOL_STALL_TIMEOUT] == 2);
  assert_true(atomic_load(&it.ctl.timed_out));
  RUN_UNTIL(&c.loop, first_worker_state(&c) == POOL_W_STUCK);
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, it.dones == 1);
  ctx_stop(&c);
}

static void test_started_while_running(void **state) {
  (void)state;
  /* The owner hears of a start while the item runs (not only at done),
   * once per run; a queued item is not reported. */
  ctx_t c;
  ctx_start(&c, 1, 8);
  atomic_bool gate = false;
  item_t a, b;
  item_init(&a, &c, 1, &gate);
  item_init(&b, &c, 2, NULL);
  assert_int_equal(pool_submit(c.pool, &a.work), 0);
  assert_int_equal(pool_submit(c.pool, &b.work), 0);
  RUN_UNTIL(&c.loop, a.started == 1);
  assert_int_equal(a.state_at_started, POOL_WORK_RUNNING);
  assert_int_equal(a.dones, 0);
  assert_int_equal(b.started, 0);
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, a.dones == 1 && b.dones == 1);
  assert_int_equal(a.started, 1);
  assert_true(b.started <= 1); /* a run done before the loop looked is told by done alone */
  /* A second run of the same item is a new start. */
  atomic_store(&gate, false);
  a.dones = 0;
  assert_int_equal(pool_submit(c.pool, &a.work), 0);
  RUN_UNTIL(&c.loop, a.started == 2);
  atomic_store(&gate, true);
  RUN_UNTIL(&c.loop, a.dones == 1);
  ctx_stop(&c);
}

/* ---- fan-out ---- */

enum { CHUNKS = 32 };
static pthread_t chunk_thread[CHUNKS];
static _Atomic int chunk_runs[CHUNKS];
static _Atomic bool stop_now;

static void record_chunk(void *ctx, size_t i) {
  (void)ctx;
  chunk_thread[i] = pthread_self();
  atomic_fetch_add(&chunk_runs[i], 1);
  usleep(2000); /* long enough that idle workers join */
}

static bool stop_flag(void *ctx) {
  (void)ctx;
  return atomic_load(&stop_now);
}

static size_t ran_in_item;

static void parallel_run(pool_work_t *w) {
  (void)w;
  ran_in_item = pool_parallel(CHUNKS, record_chunk, NULL, stop_flag, NULL);
}

static size_t distinct_threads(void) {
  size_t d = 0;
  for (size_t i = 0; i < CHUNKS; i++) {
    bool seen = false;
    for (size_t k = 0; k < i && !seen; k++)
      seen = pthread_equal(chunk_thread[k], chunk_thread[i]);
    d += !seen;
  }
  return d;
}

static void test_parallel_on_idle_workers(void **state) {
  (void)state;
  /* An item's fan-out runs every chunk once, on its own worker and the
   * pool's idle ones (3 workers: more than one thread takes part). */
  ctx_t c;
  ctx_start(&c, 3, 8);
  item_t it;
  item_init(&it, &c, 1, NULL);
  it.work.run = parallel_run;
  memset(chunk_runs, 0, sizeof chunk_runs);
  assert_int_equal(pool_submit(c.pool, &it.work), 0);
  RUN_UNTIL(&c.loop, it.dones == 1);
  assert_int_equal(ran_in_item, CHUNKS);
  for (size_t i = 0; i < CHUNKS; i++)
    assert_int_equal(atomic_load(&chunk_runs[i]), 1);
  assert_true(distinct_threads() >= 2);
  /* The pool still runs ordinary items afterwards. */
  item_t b;
  item_init(&b, &c, 2, NULL);
  assert_int_equal(pool_submit(c.pool, &b.work), 0);
  RUN_UNTIL(&c.loop, b.dones == 1);
  ctx_stop(&c);
}

static void test_parallel_off_a_pool_and_stop(void **state) {
  (void)state;
  /* Off a pool (this test's thread): local threads; all chunks run once. */
  memset(chunk_runs, 0, sizeof chunk_runs);
  assert_int_equal(pool_parallel(CHUNKS, record_chunk, NULL, NULL, NULL), CHUNKS);
  for (size_t i = 0; i < CHUNKS; i++)
    assert_int_equal(atomic_load(&chunk_runs[i]), 1);
  /* A stop that holds from the start: nothing runs. */
  atomic_store(&stop_now, true);
  assert_int_equal(pool_parallel(CHUNKS, record_chunk, NULL, stop_flag, NULL), 0);
  atomic_store(&stop_now, false);
  assert_int_equal(pool_parallel(0, record_chunk, NULL, NULL, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_done_once_fifo),     cmocka_unit_test(test_bounded_queue_and_remove),
      cmocka_unit_test(test_remove_keeps_order),     cmocka_unit_test(test_free_with_work_in_flight),
      cmocka_unit_test(test_free_busy_many_workers), cmocka_unit_test(test_remove_during_free),
      cmocka_unit_test(test_stress_many_items),      cmocka_unit_test(test_order_and_deadline),
      cmocka_unit_test(test_stuck_thread),           cmocka_unit_test(test_timeout_stall),
      cmocka_unit_test(test_started_while_running),
      cmocka_unit_test(test_parallel_on_idle_workers),
      cmocka_unit_test(test_parallel_off_a_pool_and_stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
