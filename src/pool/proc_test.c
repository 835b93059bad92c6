/* proc_test: the process backend (pool/proc.c) through offload/pool.h, with
 * this test binary as the worker (`proc_test worker` runs pool_child_main,
 * exactly what `offload worker` runs): jobs and results crossing, the shared
 * page, faults (signal, exit), cancel, deadlines, SIGKILL after grace,
 * recycling, a worker that cannot start, and a clean stop. Each test polls
 * with generous deadlines (util/test_poll.h); nothing depends on speed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "offload/pool.h"
#include "pool/child.h"
#include "pool/item.h"
#include "tasks/tasks.h"
#include "util/test_poll.h"

static const char *const worker_argv[] = {"proc_test", "worker", NULL};

typedef struct env {
  uv_loop_t loop;
  pool_t *pool;
  int done, stalls_timeout, stalls_cancel;
  pool_work_t *last_stall;
} env_t;

static void on_done(pool_work_t *w, void *data) {
  env_t *e = data;
  (void)w;
  e->done++;
}

static void on_stall(pool_work_t *w, pool_stall_t why, void *data) {
  env_t *e = data;
  e->last_stall = w;
  if (why == POOL_STALL_TIMEOUT)
    e->stalls_timeout++;
  else
    e->stalls_cancel++;
}

static void env_start(env_t *e, unsigned workers, uint64_t max_jobs, const char *exe) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  pool_config_t cfg = {
      .kind = POOL_PROCS,
      .workers = workers,
      .max_queue = 64,
      .kill_grace_ms = 100,
      .first_id = 10,
      .stall = on_stall,
      .proc = {.exe = exe, .argv = worker_argv, .encode = item_encode, .decode = item_decode, .max_jobs = max_jobs},
  };
  e->pool = pool_new(&e->loop, &cfg, on_done, e);
  assert_non_null(e->pool);
}

/* Children of this process that are not zombies. */
static int live_children(void) {
  int n = 0;
  DIR *d = opendir("/proc");
  struct dirent *de;
  while (d && (de = readdir(d))) {
    char path[300], b[512];
    snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    size_t n_read = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n_read] = '\0';
    char *p = strrchr(b, ')');
    char st;
    int ppid;
    if (p && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && ppid == getpid() && st != 'Z')
      n++;
  }
  if (d)
    closedir(d);
  return n;
}

static void env_stop(env_t *e) {
  pool_free(e->pool);
  uv_run(&e->loop, UV_RUN_DEFAULT); /* workers exit, handles close */
  assert_int_equal(uv_loop_close(&e->loop), 0);
  assert_int_equal(live_children(), 0);
}

static item_t *job(const char *task, const char *json, int64_t timeout_ms) {
  json_t *params = json_loads(json, 0, NULL);
  assert_non_null(params);
  const offload_task_def_t *def = tasks_find_builtin(task);
  assert_non_null(def);
  item_t *it = item_new(def, params, timeout_ms);
  json_decref(params);
  assert_non_null(it);
  return it;
}

static bool all_ready(env_t *e) {
  pool_worker_info_t info[8];
  size_t n = pool_worker_info(e->pool, info, 8);
  for (size_t i = 0; i < n; i++)
    if (info[i].state == POOL_W_STARTING)
      return false;
  return true;
}

static void test_jobs_cross(void **state) {
  (void)state;
  env_t e;
  env_start(&e, 2, 0, NULL);
  enum { N = 20 };
  item_t *its[N];
  for (int i = 0; i < N; i++) {
    its[i] = job("fibonacci", "{\"n\": 20}", 0);
    assert_int_equal(pool_submit(e.pool, &its[i]->work), 0);
  }
  POLL(&e.loop, true, e.done == N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(item_outcome(its[i]), ITEM_OUT_COMPLETE);
    assert_int_equal(its[i]->result.kind, TASK_RES_INT);
    assert_int_equal(its[i]->result.integer, 6765);
    assert_true(its[i]->work.ctl == &its[i]->ctl); /* back home */
    assert_true(item_progress(its[i]) > 0.0);
    item_free(its[i]);
  }
  POLL(&e.loop, true, all_ready(&e));
  pool_worker_info_t info[4];
  assert_int_equal(pool_worker_info(e.pool, info, 4), 2);
  uint64_t total = 0;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(info[i].id, 10 + i);
    assert_int_equal(info[i].kind, POOL_PROCS);
    assert_true(info[i].pid > 0 && info[i].pid != getpid());
    assert_int_equal(info[i].state, POOL_W_IDLE);
    assert_null(info[i].work);
    assert_true(info[i].rss_bytes > 0);
    total += info[i].jobs_done;
  }
  assert_int_equal(total, N);
  assert_int_equal(pool_busy(e.pool), 0);
  env_stop(&e);
}

static void test_progress_is_shared(void **state) {
  (void)state;
  /* While a job runs in another process, its progress is read from the
   * shared page: it rises with no message sent. */
  env_t e;
  env_start(&e, 1, 0, NULL);
  item_t *it = job("spin", "{\"ms\": 400}", 0);
  assert_int_equal(pool_submit(e.pool, &it->work), 0);
  POLL(&e.loop, true, atomic_load(&it->work.ctl->progress) > 0.1 && e.done == 0);
  assert_true(it->work.ctl != &it->ctl); /* the page, while it runs */
  pool_worker_info_t info;
  pool_worker_info(e.pool, &info, 1);
  assert_int_equal(info.state, POOL_W_BUSY);
  assert_ptr_equal(info.work, &it->work);
  POLL(&e.loop, true, e.done == 1);
  assert_int_equal(item_outcome(it), ITEM_OUT_COMPLETE);
  assert_true(item_progress(it) > 0.5);
  item_free(it);
  env_stop(&e);
}

static void test_worker_faults(void **state) {
  (void)state;
  env_t e;
  env_start(&e, 1, 0, NULL);
  struct {
    const char *mode;
    int sig, status;
  } cases[] = {{"segv", SIGSEGV, -1}, {"abort", SIGABRT, -1}, {"exit", 0, 3}};
  for (int i = 0; i < 3; i++) {
    char json[64];
    snprintf(json, sizeof json, "{\"mode\": \"%s\"}", cases[i].mode);
    item_t *it = job("crash", json, 0);
    int before = e.done;
    assert_int_equal(pool_submit(e.pool, &it->work), 0);
    POLL(&e.loop, true, e.done == before + 1);
    assert_int_equal(item_outcome(it), ITEM_OUT_CRASHED);
    assert_int_equal(atomic_load(&it->ctl.fault), POOL_FAULT_CRASH);
    assert_int_equal(atomic_load(&it->ctl.fault_signal), cases[i].sig);
    assert_int_equal(atomic_load(&it->ctl.fault_status), cases[i].status);
    char msg[256];
    item_fault_message(it, 0, msg, sizeof msg);
    assert_non_null(strstr(msg, i == 0 ? "SIGSEGV" : i == 1 ? "SIGABRT" : "status 3"));
    item_free(it);
  }
  assert_int_equal(pool_restarts(e.pool, POOL_RESTART_CRASH), 3);
  /* The replacement runs the next job. */
  item_t *ok = job("fibonacci", "{\"n\": 10}", 0);
  assert_int_equal(pool_submit(e.pool, &ok->work), 0);
  POLL(&e.loop, true, e.done == 4);
  assert_int_equal(item_outcome(ok), ITEM_OUT_COMPLETE);
  assert_int_equal(ok->result.integer, 55);
  item_free(ok);
  env_stop(&e);
}

static void test_cancel_and_kill(void **state) {
  (void)state;
  env_t e;
  env_start(&e, 1, 0, NULL);
  /* hang honours cancel: it stops by itself, nobody is killed. */
  item_t *a = job("crash", "{\"mode\": \"hang\"}", 0);
  assert_int_equal(pool_submit(e.pool, &a->work), 0);
  /* Cancel once the task runs (crash reports 0.5 as it starts): a job
   * canceled before it starts never runs at all. */
  POLL(&e.loop, true, atomic_load(&a->work.ctl->progress) > 0.0);
  pool_cancel(e.pool, &a->work);
  POLL(&e.loop, true, e.done == 1);
  assert_int_equal(item_outcome(a), ITEM_OUT_CANCELED);
  assert_int_equal(atomic_load(&a->ctl.fault), POOL_FAULT_NONE);
  assert_int_equal(pool_restarts(e.pool, POOL_RESTART_TIMEOUT_KILL), 0);
  item_free(a);
  /* ignore-cancel does not: killed after the grace period. */
  item_t *b = job("crash", "{\"mode\": \"ignore-cancel\"}", 0);
  assert_int_equal(pool_submit(e.pool, &b->work), 0);
  POLL(&e.loop, true, atomic_load(&b->work.ctl->progress) > 0.0);
  pool_cancel(e.pool, &b->work);
  POLL(&e.loop, true, e.done == 2);
  assert_int_equal(item_outcome(b), ITEM_OUT_CANCELED);
  assert_int_equal(atomic_load(&b->ctl.fault), POOL_FAULT_KILLED);
  assert_int_equal(atomic_load(&b->ctl.fault_signal), SIGKILL);
  assert_int_equal(pool_restarts(e.pool, POOL_RESTART_TIMEOUT_KILL), 1);
  assert_int_equal(e.stalls_cancel, 0); /* a process is killed, not reported stuck */
  item_free(b);
  env_stop(&e);
}

static void test_deadline(void **state) {
  (void)state;
  env_t e;
  env_start(&e, 1, 0, NULL);
  /* The owner hears of the deadline once, while the worker still has the
   * item; a task that ignores it is killed after the grace period. */
  item_t *it = job("crash", "{\"mode\": \"ignore-cancel\"}", 100);
  assert_int_equal(pool_submit(e.pool, &it->work), 0);
  POLL(&e.loop, true, e.stalls_timeout == 1);
  assert_ptr_equal(e.last_stall, &it->work);
  assert_int_equal(e.done, 0);
  POLL(&e.loop, true, e.done == 1);
  assert_int_equal(e.stalls_timeout, 1);
  assert_int_equal(item_outcome(it), ITEM_OUT_TIMEOUT);
  assert_int_equal(atomic_load(&it->ctl.fault), POOL_FAULT_KILLED);
  uint64_t deadline = atomic_load(&it->ctl.deadline_ns);
  assert_true(deadline > 0 && clock_mono_ns() >= deadline + 100u * 1000000u);
  item_free(it);
  /* hang notices the deadline itself. */
  item_t *h = job("crash", "{\"mode\": \"hang\"}", 100);
  assert_int_equal(pool_submit(e.pool, &h->work), 0);
  POLL(&e.loop, true, e.done == 2);
  assert_int_equal(item_outcome(h), ITEM_OUT_TIMEOUT);
  assert_int_equal(atomic_load(&h->ctl.fault), POOL_FAULT_NONE);
  item_free(h);
  env_stop(&e);
}

static void test_recycle(void **state) {
  (void)state;
  env_t e;
  env_start(&e, 1, 2, NULL);
  int pids[5];
  item_t *its[5];
  for (int i = 0; i < 5; i++) {
    its[i] = job("fibonacci", "{\"n\": 5}", 0);
    POLL(&e.loop, true, all_ready(&e));
    pool_worker_info_t info;
    pool_worker_info(e.pool, &info, 1);
    pids[i] = info.pid;
    assert_int_equal(pool_submit(e.pool, &its[i]->work), 0);
    POLL(&e.loop, true, e.done == i + 1);
    assert_int_equal(item_outcome(its[i]), ITEM_OUT_COMPLETE);
    item_free(its[i]);
  }
  /* Jobs 1-2 on one process, 3-4 on the next, 5 on a third. */
  assert_int_equal(pids[0], pids[1]);
  assert_int_not_equal(pids[1], pids[2]);
  assert_int_equal(pids[2], pids[3]);
  assert_int_not_equal(pids[3], pids[4]);
  assert_int_equal(pool_restarts(e.pool, POOL_RESTART_RECYCLED), 2);
  assert_int_equal(pool_restarts(e.pool, POOL_RESTART_CRASH), 0);
  env_stop(&e);
}

static void test_worker_cannot_start(void **state) {
  (void)state;
  /* No such binary: the pool lives on, keeps trying (with a growing delay)
   * and shows the worker starting; queued work waits; stop still works. */
  env_t e;
  env_start(&e, 1, 0, "/nonexistent/offload");
  item_t *it = job("fibonacci", "{\"n\": 5}", 0);
  assert_int_equal(pool_submit(e.pool, &it->work), 0);
  for (int i = 0; i < 50; i++) {
    uv_run(&e.loop, UV_RUN_NOWAIT);
    usleep(2000);
  }
  pool_worker_info_t info;
  pool_worker_info(e.pool, &info, 1);
  assert_int_equal(info.state, POOL_W_STARTING);
  assert_int_equal(pool_depth(e.pool), 1);
  assert_int_equal(e.done, 0);
  pool_free(e.pool);
  uv_run(&e.loop, UV_RUN_DEFAULT);
  assert_int_equal(e.done, 1); /* handed back never started */
  assert_int_equal(pool_work_state(&it->work), POOL_WORK_QUEUED);
  item_free(it);
  assert_int_equal(uv_loop_close(&e.loop), 0);
}

static void test_stop_with_busy_worker(void **state) {
  (void)state;
  /* pool_free with a job still running: the worker is killed, the item
   * comes back, and no child is left behind. */
  env_t e;
  env_start(&e, 2, 0, NULL);
  item_t *it = job("crash", "{\"mode\": \"ignore-cancel\"}", 0);
  assert_int_equal(pool_submit(e.pool, &it->work), 0);
  POLL(&e.loop, true, atomic_load(&it->work.ctl->progress) > 0.0 && all_ready(&e));
  assert_int_equal(live_children(), 2);
  env_stop(&e);
  assert_int_equal(e.done, 1);
  assert_int_equal(item_outcome(it), ITEM_OUT_CRASHED);
  item_free(it);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "worker") == 0)
    return pool_child_main(argc, argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jobs_cross),     cmocka_unit_test(test_progress_is_shared),
      cmocka_unit_test(test_worker_faults),  cmocka_unit_test(test_cancel_and_kill),
      cmocka_unit_test(test_deadline),       cmocka_unit_test(test_recycle),
      cmocka_unit_test(test_worker_cannot_start), cmocka_unit_test(test_stop_with_busy_worker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
