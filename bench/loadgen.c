/* loadgen: the benchmark client. libuv + llhttp (response mode) + jansson,
 * so the client is C-fast and parses HTTP with the same parser as the server;
 * the HTTP/1.1 part is the project's client, src/util/httpc (shared with the
 * command-line client). It only ever connects to 127.0.0.1, and every run is
 * bounded in count and time.
 *
 *   loadgen latency --port P [--path /health] [--n N] [--max-s S] [--series FILE]
 *                   [--interval-us U]
 *       One keep-alive connection, N sequential GETs; prints p50/p99/p99.9/max.
 *       --interval-us paces requests: each starts U us after the previous one
 *       started (or at once if that one took longer). --series writes
 *       "t_since_start_s latency_ms" per request. SIGINT/SIGTERM stop the run
 *       early and still print the figures gathered so far.
 *   loadgen jobs --port P [--jobs N] [--inflight K] [--wait] [--iterations I] [--max-s S]
 *       K connections, each: GET /tasks/reports/start?heavyIterations=I, then
 *       (with --wait) GET /jobs/<id>?wait=60 until final, else poll
 *       GET /tasks/reports/<id> until complete. Prints jobs/s and the
 *       end-to-end latency of each job (submit sent -> final status read).
 *   loadgen submit --port P [--inflight K] [--n N] [--seconds T] [--iterations I] [--max-s S]
 *       K keep-alive connections, each keeps one
 *       POST /jobs {"task":"report","params":{"heavyIterations":I}} in flight:
 *       N submissions in all, or as many as fit in T seconds (then the ones in
 *       flight are answered and counted). Prints submissions/s and the
 *       latency of each 202 (request sent -> reply read); other statuses
 *       count as non_202 (the first few are shown on stderr).
 *   loadgen cluster --ports P1[,P2,...] [--inflight K] [--seconds T] [--warmup-s W]
 *                   [--body JSON] [--wait-s S] [--max-s M]
 *       Tiny jobs end to end on one or more nodes sharing a job store: K lanes,
 *       each POST /jobs BODY (default {"task":"fibonacci","params":{"n":1}}) to
 *       node i mod N on its own keep-alive connection, then
 *       GET /jobs/<id>?wait=S (default 30) on node (i+1) mod N (another node
 *       than the submit's whenever N > 1; the same connection when N = 1)
 *       until the job is final, then the next job. Warm-up W s (default 1) is
 *       not counted; then for T s (default 5): jobs/s = jobs final in the
 *       window / T, p50/p99 over the jobs submitted in the window (submit
 *       sent -> final status read). Then lanes start no more jobs; the ones out
 *       finish (a job still not final at --max-s is "lost"). Also prints the
 *       client's own CPU seconds (getrusage) to show its overhead.
 *
 * Output: one JSON object on stdout. */
#include <getopt.h>
#include <signal.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "util/httpc.h"

typedef enum { MODE_LATENCY, MODE_JOBS, MODE_SUBMIT, MODE_CLUSTER } mode_t_;

typedef struct opts {
  mode_t_ mode;
  int port;
  const char *path;
  long n;
  long jobs;
  int inflight;
  bool wait;
  long iterations;
  double max_s;
  const char *series;
  long interval_us;
  double seconds; /* submit: stop starting new requests after this long, 0 = none */
  /* cluster */
  int ports[16];
  int nports;
  double warmup_s;
  const char *body;
  int wait_s;
} opts_t;

typedef struct client client_t;

typedef struct conn {
  httpc_conn_t h; /* h.data is the conn */
  client_t *cl;
  /* per job */
  char job_id[64];
  uint64_t job_start_ns;
  uint64_t req_start_ns;
  bool in_job;
} conn_t;

struct client {
  uv_loop_t *loop;
  opts_t o;
  httpc_t http;
  conn_t *conns;
  uint64_t start_ns;
  uint64_t *lat; /* ns, per request (latency) or per job (jobs) */
  long nlat, cap;
  long started, done, requests, errors;
  long accepted, non_202, outstanding; /* submit */
  FILE *series;
  bool stopping, draining;
  uv_timer_t deadline;
  uv_timer_t duration;
  uv_timer_t pace;
  uv_signal_t sigint, sigterm;
};

static void fail(const char *what) {
  fprintf(stderr, "loadgen: %s\n", what);
  exit(1);
}

static void record(client_t *cl, uint64_t ns) {
  if (cl->nlat == cl->cap) {
    cl->cap = cl->cap ? cl->cap * 2 : 4096;
    cl->lat = realloc(cl->lat, sizeof *cl->lat * (size_t)cl->cap);
    if (!cl->lat)
      fail("out of memory");
  }
  cl->lat[cl->nlat++] = ns;
}

static void send_next(conn_t *c);
static void send_get(conn_t *c, const char *path);

static void on_pace(uv_timer_t *t) {
  client_t *cl = t->data;
  if (cl->stopping)
    return;
  cl->started++;
  send_get(&cl->conns[0], cl->o.path);
}

static void on_response(httpc_conn_t *h, int status);

static void send_request(conn_t *c, const char *method, const char *path, const char *headers, const char *body,
                         size_t len) {
  c->req_start_ns = uv_hrtime();
  c->cl->requests++;
  int rc = httpc_request(&c->h, method, path, headers, body, len, on_response, NULL);
  if (rc != 0) {
    fprintf(stderr, "loadgen: request: %s\n", uv_strerror(rc));
    c->cl->errors++;
    c->cl->stopping = true;
    uv_stop(c->cl->loop);
  }
}

static void send_get(conn_t *c, const char *path) { send_request(c, "GET", path, NULL, NULL, 0); }

static void send_post(conn_t *c) {
  char body[128];
  int bn =
      snprintf(body, sizeof body, "{\"task\":\"report\",\"params\":{\"heavyIterations\":%ld}}", c->cl->o.iterations);
  if (bn < 0 || (size_t)bn >= sizeof body)
    fail("request too long");
  c->cl->outstanding++;
  send_request(c, "POST", "/jobs", "Content-Type: application/json\r\n", body, (size_t)bn);
}

static void finish_if_done(client_t *cl) {
  if (cl->stopping)
    return;
  if (cl->o.mode == MODE_SUBMIT) {
    /* Done when every submission has been answered, or when the time is up
     * and the ones still in flight have been. */
    if ((cl->done >= cl->o.n || cl->draining) && cl->outstanding == 0) {
      cl->stopping = true;
      uv_stop(cl->loop);
    }
    return;
  }
  long target = cl->o.mode == MODE_LATENCY ? cl->o.n : cl->o.jobs;
  if (cl->done >= target) {
    cl->stopping = true;
    uv_stop(cl->loop);
  }
}

static void send_next(conn_t *c) {
  client_t *cl = c->cl;
  if (cl->stopping)
    return;
  if (cl->o.mode == MODE_LATENCY) {
    if (cl->started >= cl->o.n)
      return;
    if (cl->o.interval_us > 0 && cl->started > 0) {
      uint64_t due = c->req_start_ns + (uint64_t)cl->o.interval_us * 1000u, now = uv_hrtime();
      if (due > now) {
        uv_timer_start(&cl->pace, on_pace, (due - now + 999999) / 1000000, 0);
        return;
      }
    }
    cl->started++;
    send_get(c, cl->o.path);
    return;
  }
  if (cl->o.mode == MODE_SUBMIT) {
    if (cl->draining || cl->started >= cl->o.n)
      return;
    cl->started++;
    send_post(c);
    return;
  }
  if (c->in_job) {
    char path[160];
    if (cl->o.wait)
      snprintf(path, sizeof path, "/jobs/%s?wait=60", c->job_id);
    else
      snprintf(path, sizeof path, "/tasks/reports/%s", c->job_id);
    send_get(c, path);
    return;
  }
  if (cl->started >= cl->o.jobs)
    return;
  cl->started++;
  c->in_job = true;
  c->job_id[0] = '\0';
  c->job_start_ns = uv_hrtime();
  char path[128];
  snprintf(path, sizeof path, "/tasks/reports/start?heavyIterations=%ld", cl->o.iterations);
  send_get(c, path);
}

static void handle_response(conn_t *c) {
  client_t *cl = c->cl;
  uint64_t now = uv_hrtime();
  const char *body = c->h.body ? c->h.body : "";
  int status = c->h.status;
  if (cl->o.mode == MODE_LATENCY) {
    if (status != 200)
      cl->errors++;
    record(cl, now - c->req_start_ns);
    if (cl->series)
      fprintf(cl->series, "%.6f %.4f\n", (double)(c->req_start_ns - cl->start_ns) / 1e9,
              (double)(now - c->req_start_ns) / 1e6);
    cl->done++;
    finish_if_done(cl);
    send_next(c);
    return;
  }
  if (cl->o.mode == MODE_SUBMIT) {
    cl->outstanding--;
    if (status == 202) {
      cl->accepted++;
      record(cl, now - c->req_start_ns);
    } else {
      if (cl->non_202 < 5)
        fprintf(stderr, "loadgen: submit got %d: %.200s\n", status, body);
      cl->non_202++;
    }
    cl->done++;
    finish_if_done(cl);
    send_next(c);
    return;
  }
  json_t *j = json_loadb(body, c->h.body_len, 0, NULL);
  if (!c->job_id[0]) {
    /* Submit reply. */
    const char *id = json_string_value(json_object_get(j, "jobId"));
    if (status != 202 || !id) {
      cl->errors++;
      fprintf(stderr, "loadgen: submit got %d: %.200s\n", status, body);
      json_decref(j);
      cl->stopping = true;
      uv_stop(cl->loop);
      return;
    }
    snprintf(c->job_id, sizeof c->job_id, "%s", id);
  } else {
    const char *st = json_string_value(json_object_get(j, "status"));
    if (st && (!strcmp(st, "complete") || !strcmp(st, "failed") || !strcmp(st, "canceled"))) {
      if (strcmp(st, "complete") != 0)
        cl->errors++;
      record(cl, now - c->job_start_ns);
      c->in_job = false;
      cl->done++;
      finish_if_done(cl);
    } else if (status != 200) {
      cl->errors++;
      c->in_job = false;
      cl->done++;
      finish_if_done(cl);
    }
  }
  json_decref(j);
  send_next(c);
}

/* A response (status 0), or the request failed: the connection is lost or
 * the reply was not HTTP. */
static void on_response(httpc_conn_t *h, int status) {
  conn_t *c = h->data;
  if (status == 0) {
    handle_response(c);
    return;
  }
  if (!c->cl->stopping) {
    fprintf(stderr, "loadgen: %s: %s\n", status == HTTPC_EPROTO ? "bad response" : "connection lost",
            uv_strerror(status));
    c->cl->errors++;
    c->cl->stopping = true;
    uv_stop(c->cl->loop);
  }
}

static void on_connect(httpc_conn_t *h, int status) {
  conn_t *c = h->data;
  if (status < 0) {
    fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
    exit(1);
  }
  send_next(c);
}

static void on_duration(uv_timer_t *t) {
  client_t *cl = t->data;
  cl->draining = true;
  finish_if_done(cl);
}

static void on_deadline(uv_timer_t *t) {
  client_t *cl = t->data;
  fprintf(stderr, "loadgen: --max-s reached after %ld of %ld\n", cl->done,
          cl->o.mode == MODE_JOBS ? cl->o.jobs : cl->o.n);
  cl->stopping = true;
  uv_stop(cl->loop);
}

static void on_signal(uv_signal_t *h, int signum) {
  client_t *cl = h->data;
  (void)signum;
  cl->stopping = true;
  uv_stop(cl->loop);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, long n, double p) {
  if (n == 0)
    return 0;
  long i = (long)(p * (double)(n - 1) + 0.5);
  return (double)v[i] / 1e3; /* microseconds */
}

/* ---------------------------------------------------------------- cluster mode */

typedef struct cluster cluster_t;

typedef struct lane {
  cluster_t *cl;
  int index;
  httpc_conn_t sub;   /* POST /jobs */
  httpc_conn_t wconn; /* GET /jobs/<id>?wait=S (unused when one node: sub carries both) */
  httpc_conn_t *wait; /* &wconn, or &sub */
  int connected;
  bool in_job;
  char job_id[64];
  uint64_t job_start_ns;
} lane_t;

struct cluster {
  uv_loop_t *loop;
  opts_t o;
  httpc_t http;
  lane_t *lanes;
  char wait_path_fmt[32];
  size_t body_len;
  uint64_t start_ns, measure_ns, end_ns;
  uint64_t *lat;
  long nlat, cap;
  long in_window, submitted, completed, failed, non_202, errors, requests, out;
  bool stopping, ending;
  uv_timer_t deadline, end;
  uv_signal_t sigint, sigterm;
};

static void cluster_stop(cluster_t *cl) {
  if (!cl->stopping) {
    cl->stopping = true;
    uv_stop(cl->loop);
  }
}

static void cluster_next(lane_t *l);
static void cluster_on_response(httpc_conn_t *h, int status);

static void cluster_request(lane_t *l, httpc_conn_t *h, const char *method, const char *path, const char *headers,
                            const char *body, size_t len) {
  l->cl->requests++;
  int rc = httpc_request(h, method, path, headers, body, len, cluster_on_response, NULL);
  if (rc != 0) {
    fprintf(stderr, "loadgen: request: %s\n", uv_strerror(rc));
    l->cl->errors++;
    cluster_stop(l->cl);
  }
}

static bool is_final(const char *st) {
  return st && (!strcmp(st, "complete") || !strcmp(st, "failed") || !strcmp(st, "canceled"));
}

static void cluster_job_done(lane_t *l, const char *st) {
  cluster_t *cl = l->cl;
  uint64_t now = uv_hrtime();
  l->in_job = false;
  cl->out--;
  cl->completed++;
  if (strcmp(st, "complete") != 0)
    cl->failed++;
  if (now >= cl->measure_ns && now < cl->end_ns)
    cl->in_window++;
  if (l->job_start_ns >= cl->measure_ns && l->job_start_ns < cl->end_ns) {
    if (cl->nlat == cl->cap) {
      cl->cap = cl->cap ? cl->cap * 2 : 65536;
      cl->lat = realloc(cl->lat, sizeof *cl->lat * (size_t)cl->cap);
      if (!cl->lat)
        fail("out of memory");
    }
    cl->lat[cl->nlat++] = now - l->job_start_ns;
  }
}

static void cluster_next(lane_t *l) {
  cluster_t *cl = l->cl;
  if (cl->stopping)
    return;
  if (l->in_job) {
    char path[160];
    snprintf(path, sizeof path, "/jobs/%s?wait=%d", l->job_id, cl->o.wait_s);
    cluster_request(l, l->wait, "GET", path, NULL, NULL, 0);
    return;
  }
  if (cl->ending) {
    if (cl->out == 0)
      cluster_stop(cl);
    return;
  }
  l->in_job = true;
  l->job_id[0] = '\0';
  l->job_start_ns = uv_hrtime();
  cl->submitted++;
  cl->out++;
  cluster_request(l, &l->sub, "POST", "/jobs", "Content-Type: application/json\r\n", cl->o.body, cl->body_len);
}

static void cluster_on_response(httpc_conn_t *h, int status) {
  lane_t *l = h->data;
  cluster_t *cl = l->cl;
  if (status != 0) {
    if (!cl->stopping) {
      fprintf(stderr, "loadgen: %s: %s\n", status == HTTPC_EPROTO ? "bad response" : "connection lost",
              uv_strerror(status));
      cl->errors++;
      cluster_stop(cl);
    }
    return;
  }
  json_t *j = json_loadb(h->body ? h->body : "", h->body_len, 0, NULL);
  const char *st = json_string_value(json_object_get(j, "status"));
  if (!l->job_id[0]) { /* the submit's reply */
    const char *id = json_string_value(json_object_get(j, "id"));
    if (h->status != 202 || !id) {
      if (cl->non_202 < 5)
        fprintf(stderr, "loadgen: submit got %d: %.200s\n", h->status, h->body ? h->body : "");
      cl->non_202++;
      l->in_job = false; /* not a job: submit again */
      cl->submitted--;
      cl->out--;
    } else {
      snprintf(l->job_id, sizeof l->job_id, "%s", id);
      if (is_final(st)) /* the 202 waits for the row's commit: a tiny job may be done by then */
        cluster_job_done(l, st);
    }
  } else if (h->status == 200 && is_final(st)) {
    cluster_job_done(l, st);
  } else if (h->status != 200) {
    if (cl->errors < 5)
      fprintf(stderr, "loadgen: wait got %d: %.200s\n", h->status, h->body ? h->body : "");
    cl->errors++;
    cluster_stop(cl);
  }
  json_decref(j);
  cluster_next(l);
}

static void cluster_on_connect(httpc_conn_t *h, int status) {
  lane_t *l = h->data;
  if (status < 0) {
    fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
    exit(1);
  }
  if (++l->connected == (l->wait == &l->sub ? 1 : 2))
    cluster_next(l);
}

static void cluster_on_end(uv_timer_t *t) {
  cluster_t *cl = t->data;
  cl->ending = true;
  if (cl->out == 0)
    cluster_stop(cl);
}

static void cluster_on_deadline(uv_timer_t *t) {
  cluster_t *cl = t->data;
  fprintf(stderr, "loadgen: --max-s reached with %ld jobs not final\n", cl->out);
  cluster_stop(cl);
}

static void cluster_on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  cluster_stop(h->data);
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static int run_cluster(const opts_t *o) {
  static cluster_t cl; /* large and zeroed */
  cl.o = *o;
  if (cl.o.nports < 1)
    fail("--ports is required");
  if (cl.o.seconds <= 0)
    cl.o.seconds = 5;
  if (!cl.o.body)
    cl.o.body = "{\"task\":\"fibonacci\",\"params\":{\"n\":1}}";
  cl.body_len = strlen(cl.o.body);
  if (cl.o.wait_s < 1)
    cl.o.wait_s = 30;
  if (cl.o.max_s < cl.o.warmup_s + cl.o.seconds + 1)
    cl.o.max_s = cl.o.warmup_s + cl.o.seconds + 60;
  cl.loop = uv_default_loop();
  httpc_init(&cl.http, cl.loop, "127.0.0.1", NULL);
  cl.lanes = calloc((size_t)cl.o.inflight, sizeof *cl.lanes);
  if (!cl.lanes)
    fail("out of memory");
  double cpu0 = cpu_s();
  cl.start_ns = uv_hrtime();
  cl.measure_ns = cl.start_ns + (uint64_t)(cl.o.warmup_s * 1e9);
  cl.end_ns = cl.measure_ns + (uint64_t)(cl.o.seconds * 1e9);
  uv_timer_init(cl.loop, &cl.deadline);
  uv_timer_init(cl.loop, &cl.end);
  cl.deadline.data = cl.end.data = &cl;
  uv_timer_start(&cl.deadline, cluster_on_deadline, (uint64_t)(cl.o.max_s * 1000), 0);
  uv_timer_start(&cl.end, cluster_on_end, (uint64_t)((cl.o.warmup_s + cl.o.seconds) * 1000), 0);
  uv_signal_init(cl.loop, &cl.sigint);
  uv_signal_init(cl.loop, &cl.sigterm);
  cl.sigint.data = cl.sigterm.data = &cl;
  uv_signal_start(&cl.sigint, cluster_on_signal, SIGINT);
  uv_signal_start(&cl.sigterm, cluster_on_signal, SIGTERM);
  for (int i = 0; i < cl.o.inflight; i++) {
    lane_t *l = &cl.lanes[i];
    l->cl = &cl;
    l->index = i;
    int n = cl.o.nports;
    int ps = cl.o.ports[i % n], pw = cl.o.ports[(i + 1) % n];
    struct sockaddr_in a;
    if (httpc_conn_init(&cl.http, &l->sub) != 0)
      fail("uv_tcp_init");
    l->sub.data = l;
    uv_ip4_addr("127.0.0.1", ps, &a);
    if (httpc_connect(&l->sub, (const struct sockaddr *)&a, cluster_on_connect) != 0)
      fail("uv_tcp_connect");
    if (n == 1) {
      l->wait = &l->sub;
      continue;
    }
    l->wait = &l->wconn;
    if (httpc_conn_init(&cl.http, &l->wconn) != 0)
      fail("uv_tcp_init");
    l->wconn.data = l;
    uv_ip4_addr("127.0.0.1", pw, &a);
    if (httpc_connect(&l->wconn, (const struct sockaddr *)&a, cluster_on_connect) != 0)
      fail("uv_tcp_connect");
  }
  uv_run(cl.loop, UV_RUN_DEFAULT);
  double secs = (double)(uv_hrtime() - cl.start_ns) / 1e9, cpu = cpu_s() - cpu0;
  qsort(cl.lat, (size_t)cl.nlat, sizeof *cl.lat, cmp_u64);
  printf("{\"mode\":\"cluster\",\"nodes\":%d,\"inflight\":%d,\"warmup_s\":%.3f,\"seconds\":%.3f,\"jobs\":%ld,"
         "\"jobs_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"submitted\":%ld,\"completed\":%ld,"
         "\"failed\":%ld,\"lost\":%ld,\"non_202\":%ld,\"errors\":%ld,\"requests\":%ld,\"wall_s\":%.3f,"
         "\"client_cpu_s\":%.3f}\n",
         cl.o.nports, cl.o.inflight, cl.o.warmup_s, cl.o.seconds, cl.in_window, (double)cl.in_window / cl.o.seconds,
         pct(cl.lat, cl.nlat, 0.5), pct(cl.lat, cl.nlat, 0.99), cl.nlat ? (double)cl.lat[cl.nlat - 1] / 1e3 : 0,
         cl.submitted, cl.completed, cl.failed, cl.out, cl.non_202, cl.errors, cl.requests, secs, cpu);
  fflush(stdout);
  for (int i = 0; i < cl.o.inflight; i++) {
    httpc_close(&cl.lanes[i].sub, NULL);
    if (cl.lanes[i].wait == &cl.lanes[i].wconn)
      httpc_close(&cl.lanes[i].wconn, NULL);
  }
  uv_close((uv_handle_t *)&cl.deadline, NULL);
  uv_close((uv_handle_t *)&cl.end, NULL);
  uv_close((uv_handle_t *)&cl.sigint, NULL);
  uv_close((uv_handle_t *)&cl.sigterm, NULL);
  uv_run(cl.loop, UV_RUN_DEFAULT);
  free(cl.lanes);
  free(cl.lat);
  uv_loop_close(cl.loop);
  return cl.errors || cl.out || cl.failed ? 3 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2)
    fail("usage: loadgen latency|jobs|submit|cluster --port P [...]");
  client_t cl = {0};
  cl.o = (opts_t){.path = "/health", .n = 2000, .jobs = 1000, .inflight = 32, .iterations = 1, .max_s = 120, .warmup_s = 1};
  if (!strcmp(argv[1], "latency"))
    cl.o.mode = MODE_LATENCY;
  else if (!strcmp(argv[1], "jobs"))
    cl.o.mode = MODE_JOBS;
  else if (!strcmp(argv[1], "submit"))
    cl.o.mode = MODE_SUBMIT;
  else if (!strcmp(argv[1], "cluster"))
    cl.o.mode = MODE_CLUSTER;
  else
    fail("mode must be latency, jobs, submit or cluster");
  static const struct option lo[] = {
      {"port", required_argument, 0, 'p'},
      {"path", required_argument, 0, 'P'},
      {"n", required_argument, 0, 'n'},
      {"jobs", required_argument, 0, 'j'},
      {"inflight", required_argument, 0, 'k'},
      {"wait", no_argument, 0, 'w'},
      {"iterations", required_argument, 0, 'i'},
      {"max-s", required_argument, 0, 'm'},
      {"series", required_argument, 0, 's'},
      {"interval-us", required_argument, 0, 'I'},
      {"seconds", required_argument, 0, 'S'}, /* submit, cluster */
      {"ports", required_argument, 0, 'L'},   /* cluster */
      {"warmup-s", required_argument, 0, 'W'},
      {"body", required_argument, 0, 'B'},
      {"wait-s", required_argument, 0, 'T'},
      {0, 0, 0, 0},
  };
  optind = 2;
  bool n_set = false;
  int ch;
  while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (ch) {
    case 'p': cl.o.port = atoi(optarg); break;
    case 'P': cl.o.path = optarg; break;
    case 'n':
      cl.o.n = atol(optarg);
      n_set = true;
      break;
    case 'j': cl.o.jobs = atol(optarg); break;
    case 'k': cl.o.inflight = atoi(optarg); break;
    case 'w': cl.o.wait = true; break;
    case 'i': cl.o.iterations = atol(optarg); break;
    case 'm': cl.o.max_s = atof(optarg); break;
    case 's': cl.o.series = optarg; break;
    case 'I': cl.o.interval_us = atol(optarg); break;
    case 'S': cl.o.seconds = atof(optarg); break;
    case 'L':
      for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
        if (cl.o.nports == 16)
          fail("--ports: at most 16");
        cl.o.ports[cl.o.nports++] = atoi(tok);
      }
      if (cl.o.nports > 0)
        cl.o.port = cl.o.ports[0];
      break;
    case 'W': cl.o.warmup_s = atof(optarg); break;
    case 'B': cl.o.body = optarg; break;
    case 'T': cl.o.wait_s = atoi(optarg); break;
    default: fail("bad flag");
    }
  }
  if (cl.o.port <= 0 || cl.o.port > 65535)
    fail("--port is required");
  if (cl.o.mode == MODE_LATENCY)
    cl.o.inflight = 1;
  if (cl.o.mode == MODE_SUBMIT && cl.o.seconds > 0 && !n_set)
    cl.o.n = LONG_MAX; /* bounded by --seconds alone */
  if (cl.o.inflight < 1 || cl.o.inflight > 1024)
    fail("--inflight must be 1..1024");
  if (cl.o.series && !(cl.series = fopen(cl.o.series, "w")))
    fail("cannot open --series file");
  if (cl.o.mode == MODE_CLUSTER)
    return run_cluster(&cl.o);

  cl.loop = uv_default_loop();
  httpc_init(&cl.http, cl.loop, "127.0.0.1", NULL);
  cl.conns = calloc((size_t)cl.o.inflight, sizeof *cl.conns);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", cl.o.port, &addr);
  uv_timer_init(cl.loop, &cl.deadline);
  cl.deadline.data = &cl;
  uv_timer_start(&cl.deadline, on_deadline, (uint64_t)(cl.o.max_s * 1000), 0);
  uv_timer_init(cl.loop, &cl.pace);
  cl.pace.data = &cl;
  uv_timer_init(cl.loop, &cl.duration);
  cl.duration.data = &cl;
  if (cl.o.mode == MODE_SUBMIT && cl.o.seconds > 0)
    uv_timer_start(&cl.duration, on_duration, (uint64_t)(cl.o.seconds * 1000), 0);
  uv_signal_init(cl.loop, &cl.sigint);
  uv_signal_init(cl.loop, &cl.sigterm);
  cl.sigint.data = cl.sigterm.data = &cl;
  uv_signal_start(&cl.sigint, on_signal, SIGINT);
  uv_signal_start(&cl.sigterm, on_signal, SIGTERM);
  cl.start_ns = uv_hrtime();
  for (int i = 0; i < cl.o.inflight; i++) {
    conn_t *c = &cl.conns[i];
    c->cl = &cl;
    if (httpc_conn_init(&cl.http, &c->h) != 0)
      fail("uv_tcp_init");
    c->h.data = c;
    if (httpc_connect(&c->h, (const struct sockaddr *)&addr, on_connect) != 0)
      fail("uv_tcp_connect");
  }
  uv_run(cl.loop, UV_RUN_DEFAULT);
  double secs = (double)(uv_hrtime() - cl.start_ns) / 1e9;
  if (cl.series)
    fclose(cl.series);

  qsort(cl.lat, (size_t)cl.nlat, sizeof *cl.lat, cmp_u64);
  if (cl.o.mode == MODE_LATENCY)
    printf("{\"mode\":\"latency\",\"path\":\"%s\",\"n\":%ld,\"errors\":%ld,\"seconds\":%.3f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
           cl.o.path, cl.nlat, cl.errors, secs, pct(cl.lat, cl.nlat, 0.5), pct(cl.lat, cl.nlat, 0.99),
           pct(cl.lat, cl.nlat, 0.999), cl.nlat ? (double)cl.lat[cl.nlat - 1] / 1e3 : 0);
  else if (cl.o.mode == MODE_SUBMIT)
    printf("{\"mode\":\"submit\",\"inflight\":%d,\"iterations\":%ld,\"requests\":%ld,\"accepted\":%ld,"
           "\"non_202\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"requests_per_s\":%.1f,\"accepted_per_s\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
           cl.o.inflight, cl.o.iterations, cl.done, cl.accepted, cl.non_202, cl.errors, secs, (double)cl.done / secs,
           (double)cl.accepted / secs, pct(cl.lat, cl.nlat, 0.5), pct(cl.lat, cl.nlat, 0.99),
           pct(cl.lat, cl.nlat, 0.999), cl.nlat ? (double)cl.lat[cl.nlat - 1] / 1e3 : 0);
  else
    printf("{\"mode\":\"jobs\",\"jobs\":%ld,\"inflight\":%d,\"wait\":%s,\"errors\":%ld,\"requests\":%ld,"
           "\"seconds\":%.3f,\"jobs_per_s\":%.1f,\"requests_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"max_us\":%.1f}\n",
           cl.nlat, cl.o.inflight, cl.o.wait ? "true" : "false", cl.errors, cl.requests, secs, (double)cl.nlat / secs,
           (double)cl.requests / secs, pct(cl.lat, cl.nlat, 0.5), pct(cl.lat, cl.nlat, 0.99),
           cl.nlat ? (double)cl.lat[cl.nlat - 1] / 1e3 : 0);
  for (int i = 0; i < cl.o.inflight; i++)
    httpc_close(&cl.conns[i].h, NULL);
  uv_close((uv_handle_t *)&cl.deadline, NULL);
  uv_close((uv_handle_t *)&cl.pace, NULL);
  uv_close((uv_handle_t *)&cl.duration, NULL);
  uv_close((uv_handle_t *)&cl.sigint, NULL);
  uv_close((uv_handle_t *)&cl.sigterm, NULL);
  uv_run(cl.loop, UV_RUN_DEFAULT); /* pending writes cancel, handles close */
  free(cl.conns);
  free(cl.lat);
  uv_loop_close(cl.loop);
  return cl.errors || cl.non_202 ? 3 : 0;
}
