/* pool_bench: the pool API alone, no HTTP.
 *
 *   pool_bench throughput [--tasks N] [--inflight K] [--workers W]
 *       Submit + completion of an empty task, N tasks, K in flight: tasks/s.
 *   pool_bench startup [--samples S]
 *       Time from asking for a worker (pool_new with one thread) to its first
 *       completed task (done callback on the loop): median and p90 of S.
 *
 * Output: one JSON object on stdout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "offload/pool.h"

typedef struct bench {
  uv_loop_t loop;
  pool_t *pool;
  pool_work_t *items;
  pool_ctl_t *ctls; /* items[i].ctl == &ctls[i] */
  long tasks, submitted, done;
  int inflight;
} bench_t;

static void run_empty(pool_work_t *w) { (void)w; }

static void on_done(pool_work_t *w, void *data) {
  bench_t *b = data;
  b->done++;
  if (b->submitted < b->tasks) {
    b->submitted++;
    if (pool_submit(b->pool, w) != 0) {
      fprintf(stderr, "pool_bench: submit failed\n");
      exit(1);
    }
  }
  if (b->done == b->tasks)
    uv_stop(&b->loop);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int throughput(long tasks, int inflight, unsigned workers) {
  bench_t b = {.tasks = tasks, .inflight = inflight};
  uv_loop_init(&b.loop);
  pool_config_t cfg = {.workers = workers, .max_queue = (size_t)inflight, .nice = 0};
  b.pool = pool_new(&b.loop, &cfg, on_done, &b);
  b.items = calloc((size_t)inflight, sizeof *b.items);
  b.ctls = calloc((size_t)inflight, sizeof *b.ctls);
  if (!b.pool || !b.items || !b.ctls)
    return 1;
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < inflight && b.submitted < tasks; i++) {
    b.items[i].run = run_empty;
    b.items[i].ctl = &b.ctls[i];
    b.submitted++;
    pool_submit(b.pool, &b.items[i]);
  }
  uv_run(&b.loop, UV_RUN_DEFAULT);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  pool_free(b.pool);
  uv_run(&b.loop, UV_RUN_DEFAULT);
  uv_loop_close(&b.loop);
  free(b.items);
  free(b.ctls);
  printf("{\"peer\":\"offload-pool\",\"tasks\":%ld,\"inflight\":%d,\"workers\":%u,\"seconds\":%.3f,"
         "\"tasks_per_s\":%.0f}\n",
         tasks, inflight, workers, secs, (double)tasks / secs);
  return 0;
}

static void on_first_done(pool_work_t *w, void *data) {
  (void)w;
  uv_stop((uv_loop_t *)data);
}

static int startup(int samples) {
  double *ms = calloc((size_t)samples, sizeof *ms);
  uv_loop_t loop;
  uv_loop_init(&loop);
  for (int i = 0; i < samples; i++) {
    pool_ctl_t ctl = {0};
    pool_work_t w = {.run = run_empty, .ctl = &ctl};
    pool_config_t cfg = {.workers = 1, .max_queue = 1, .nice = 0};
    uint64_t t0 = uv_hrtime();
    pool_t *p = pool_new(&loop, &cfg, on_first_done, &loop);
    if (!p || pool_submit(p, &w) != 0)
      return 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    ms[i] = (double)(uv_hrtime() - t0) / 1e6;
    pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
  qsort(ms, (size_t)samples, sizeof *ms, cmp_d);
  printf("{\"peer\":\"offload-thread\",\"samples\":%d,\"median_ms\":%.4f,\"p90_ms\":%.4f}\n", samples, ms[samples / 2],
         ms[(samples * 9) / 10]);
  free(ms);
  return 0;
}

int main(int argc, char **argv) {
  long tasks = 1000000;
  int inflight = 64, samples = 50;
  unsigned workers = uv_available_parallelism();
  static const struct option lo[] = {{"tasks", required_argument, 0, 't'},
                                     {"inflight", required_argument, 0, 'k'},
                                     {"workers", required_argument, 0, 'w'},
                                     {"samples", required_argument, 0, 's'},
                                     {0, 0, 0, 0}};
  if (argc < 2) {
    fprintf(stderr, "usage: pool_bench throughput|startup [flags]\n");
    return 2;
  }
  optind = 2;
  int ch;
  while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (ch) {
    case 't': tasks = atol(optarg); break;
    case 'k': inflight = atoi(optarg); break;
    case 'w': workers = (unsigned)atoi(optarg); break;
    case 's': samples = atoi(optarg); break;
    default: return 2;
    }
  }
  if (tasks < 1 || inflight < 1 || workers < 1 || samples < 1)
    return 2;
  if (!strcmp(argv[1], "throughput"))
    return throughput(tasks, inflight, workers);
  if (!strcmp(argv[1], "startup"))
    return startup(samples);
  return 2;
}
