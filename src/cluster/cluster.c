/* cluster: see cluster.h.
 *
 * DESIGN. Claims: one claim in flight at a time, for as many jobs as this
 * node has free workers (every worker minus the jobs its pools hold), sent
 * when a notification says jobs were queued, when a worker frees up
 * (registry slot_free), when the database comes back, and every second
 * anyway (a lost notification costs at most a second). A claim that
 * filled every free worker is followed by another at once (a backlog).
 * Claims travel with the other writes of the loop turn, so a job's final
 * write and the next claim share one transaction.
 *
 * The check (every second, and at once when the store says this node's
 * lease had lapsed): the rows of the jobs this node runs are read back; a
 * row no longer processing under this node with this attempt is lost to
 * another node (registry_lose), and a row whose cancel was requested is
 * canceled here. It is the polling fallback of both cancel notifications
 * and lease checks. */
#include "cluster/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"

#define CLAIM_MAX 256
#define CHECK_MAX 256
#define POLL_MS 1000
#define PROGRESS_MS 500

struct cluster {
  cluster_config_t cfg;
  uv_loop_t *loop;
  registry_t *reg;
  store_t *store;
  uv_timer_t poll, progress;
  bool closing; /* stopping: no claims, no checks */
  int closed;   /* handles closed */
  bool claiming[LANE_N]; /* a claim is in flight */
  bool again[LANE_N];    /* claim again once it is back */
  bool checking; /* a check is in flight */
  store_node_t *nodes;
  size_t nnodes;
  cluster_job_cb on_job;
  cluster_streams_cb streams;
  void *listener_data;
  cluster_stats_t stats;
};

typedef struct claim {
  store_write_t w; /* first: the store hands this back */
  cluster_t *c;
  lane_t lane;
} claim_t;

typedef struct check {
  store_write_t w;
  cluster_t *c;
  size_t n;
  char (*ids)[24];
  int *tokens;
  store_job_t *rows;
} check_t;

/* ---- claims ---- */

static void claim_lane(cluster_t *c, lane_t l);

static void claim(cluster_t *c) {
  for (int l = 0; l < LANE_N; l++)
    claim_lane(c, (lane_t)l);
}

/* Claimed while the node was stopping: back to the shared queue, as they
 * were (the claim's attempt undone), fenced by the claim's token. */
typedef struct give_back {
  store_write_t w;
  store_job_t rec;
} give_back_t;

static void on_given_back(store_write_t *w, int rc, void *data) {
  give_back_t *g = (give_back_t *)w;
  (void)data;
  if (rc != 0)
    log_warn("cluster: job %s, claimed while stopping, could not be given back (%s); it runs again once this "
             "node's lease lapses",
             g->rec.id, err_str(rc));
  store_job_fini(&g->rec);
  free(g);
}

static void give_back(cluster_t *c, const store_job_t *row) {
  give_back_t *g = calloc(1, sizeof *g);
  if (!g)
    return;
  memcpy(g->rec.id, row->id, sizeof g->rec.id);
  g->rec.status = "queued";
  g->rec.token = row->attempts;
  g->rec.attempts = row->attempts - 1;
  g->w.kind = STORE_W_UPDATE;
  g->w.job = &g->rec;
  g->w.cb = on_given_back;
  store_write(c->store, &g->w);
}

static void on_claimed(store_write_t *w, int rc, void *data) {
  claim_t *cl = (claim_t *)w;
  cluster_t *c = data;
  lane_t lane = cl->lane;
  c->claiming[lane] = false;
  bool full = rc == 0 && w->nout == w->max;
  for (size_t i = 0; rc == 0 && i < w->nout; i++)
    if (c->closing)
      give_back(c, &w->out[i]);
    else if (registry_adopt(c->reg, &w->out[i]) != 0)
      log_error("cluster: out of memory taking claimed job %s; it runs again once this node's lease lapses",
                w->out[i].id);
  store_rows_free(w->out, w->nout);
  free(cl);
  if (c->closing)
    return;
  if (full || c->again[lane]) {
    c->again[lane] = false;
    claim_lane(c, lane);
  }
}

/* Claims as many jobs of the lane's tasks as the lane has free workers. */
static void claim_lane(cluster_t *c, lane_t l) {
  if (c->closing || !store_ok(c->store) || !c->cfg.lane_tasks[l] || strcmp(c->cfg.lane_tasks[l], "[]") == 0)
    return;
  if (c->claiming[l]) {
    c->again[l] = true;
    return;
  }
  size_t n = registry_lane_free(c->reg, l);
  if (n == 0)
    return;
  claim_t *cl = calloc(1, sizeof *cl);
  if (!cl)
    return;
  cl->c = c;
  cl->lane = l;
  cl->w.kind = STORE_R_CLAIM;
  cl->w.max = n < CLAIM_MAX ? n : CLAIM_MAX;
  cl->w.tasks = c->cfg.lane_tasks[l];
  cl->w.cb = on_claimed;
  cl->w.data = c;
  c->claiming[l] = true;
  c->stats.claims++;
  store_write(c->store, &cl->w);
}

void cluster_slot_free(void *data) { claim(data); }

/* ---- the check of this node's running jobs ---- */

static void check_free(check_t *k) {
  for (size_t i = 0; i < k->n; i++)
    store_job_fini(&k->rows[i]);
  free(k->rows);
  free(k->ids);
  free(k->tokens);
  free(k);
}

static void on_checked(store_write_t *w, int rc, void *data) {
  check_t *k = (check_t *)w;
  cluster_t *c = data;
  c->checking = false;
  for (size_t i = 0; rc == 0 && !c->closing && i < k->n; i++) {
    job_t *j = registry_get(c->reg, k->ids[i]);
    if (!j || job_is_final(j) || j->_token != k->tokens[i])
      continue; /* ended meanwhile, or another run */
    const store_job_t *row = &k->rows[i];
    bool ours = row->seq && strcmp(row->status, "processing") == 0 && row->owner &&
                strcmp(row->owner, c->cfg.node_id) == 0 && row->attempts == k->tokens[i];
    if (!ours)
      registry_lose(c->reg, j);
    else if (row->cancel_requested)
      registry_cancel(c->reg, j);
  }
  check_free(k);
}

static void check(cluster_t *c) {
  if (c->checking || c->closing || !store_ok(c->store))
    return;
  size_t n = 0;
  for (job_t *j = registry_first_with(c->reg, JOB_PROCESSING); j && n < CHECK_MAX; j = registry_next_with(j, JOB_PROCESSING))
    n += j->_token > 0;
  for (job_t *j = registry_first_with(c->reg, JOB_QUEUED); j && n < CHECK_MAX; j = registry_next_with(j, JOB_QUEUED))
    n += j->_token > 0 && !j->_release;
  if (n == 0)
    return;
  check_t *k = calloc(1, sizeof *k);
  if (!k)
    return;
  k->ids = calloc(n, sizeof *k->ids);
  k->tokens = calloc(n, sizeof *k->tokens);
  k->rows = calloc(n, sizeof *k->rows);
  if (!k->ids || !k->tokens || !k->rows) {
    check_free(k);
    return;
  }
  for (int st = JOB_QUEUED; st <= JOB_PROCESSING; st++)
    for (job_t *j = registry_first_with(c->reg, (job_status_t)st); j && k->n < n; j = registry_next_with(j, (job_status_t)st))
      if (j->_token > 0 && !j->_release) {
        memcpy(k->ids[k->n], j->id, JOB_ID_LEN + 1);
        k->tokens[k->n++] = j->_token;
      }
  k->c = c;
  k->w.kind = STORE_R_FETCH;
  k->w.ids = (const char(*)[24])k->ids;
  k->w.nids = k->n;
  k->w.rows = k->rows;
  k->w.cb = on_checked;
  k->w.data = c;
  c->checking = true;
  store_write(c->store, &k->w);
}

/* ---- timers ---- */

static void report_load(cluster_t *c) {
  size_t busy = registry_in_flight(c->reg);
  size_t streams = c->streams ? c->streams(c->listener_data) : 0;
  store_set_load(c->store, (int)c->cfg.workers, (int)(busy < c->cfg.workers ? busy : c->cfg.workers), (int)streams);
}

void cluster_load_changed(cluster_t *c) {
  if (c && !c->closing && c->store)
    report_load(c);
}

static void on_poll(uv_timer_t *t) {
  cluster_t *c = t->data;
  report_load(c);
  claim(c);
  check(c);
}

static void on_progress(uv_timer_t *t) {
  cluster_t *c = t->data;
  if (store_ok(c->store))
    registry_write_progress(c->reg);
}

/* ---- store events ---- */

static void on_notify(cluster_t *c, const char *payload) {
  c->stats.notifications++;
  const char *nl = strchr(payload, '\n');
  size_t slen = nl ? (size_t)(nl - payload) : strlen(payload);
  bool self = slen == strlen(c->cfg.node_id) && memcmp(payload, c->cfg.node_id, slen) == 0;
  bool kick = false;
  for (const char *line = nl; line && line[1]; line = strchr(line + 1, '\n')) {
    const char *l = line + 1;
    char kind = l[0];
    const char *arg = l[1] == ' ' ? l + 2 : NULL;
    char a[256] = "", b[32] = "";
    if (arg) {
      size_t n = strcspn(arg, " \n");
      snprintf(a, sizeof a, "%.*s", (int)(n < sizeof a ? n : sizeof a - 1), arg);
      if (arg[n] == ' ') {
        const char *arg2 = arg + n + 1;
        size_t m = strcspn(arg2, " \n");
        snprintf(b, sizeof b, "%.*s", (int)(m < sizeof b ? m : sizeof b - 1), arg2);
      }
    }
    switch (kind) {
    case 'N':
      kick = true;
      break;
    case 'C': /* "C <owner> <id>" */
      if (strcmp(a, c->cfg.node_id) == 0 && b[0])
        registry_cancel_remote(c->reg, b);
      break;
    case 'E':
    case 'F':
      if (c->on_job && a[0])
        c->on_job(a, kind == 'F', self, c->listener_data);
      break;
    default:
      break;
    }
  }
  if (kick)
    claim(c);
}

void cluster_on_event(const store_event_t *ev, void *data) {
  cluster_t *c = data;
  if (c->closing)
    return;
  switch (ev->kind) {
  case STORE_EV_UP:
    log_info("cluster: the database answers; node %s takes work", c->cfg.node_id);
    registry_save_unsaved(c->reg); /* what ended while it was away */
    claim(c);
    check(c);
    break;
  case STORE_EV_DOWN:
    break;
  case STORE_EV_NOTIFY:
    on_notify(c, ev->payload);
    break;
  case STORE_EV_NODES:
    store_nodes_free(c->nodes, c->nnodes);
    c->nodes = NULL;
    c->nnodes = 0;
    if (ev->nnodes && (c->nodes = calloc(ev->nnodes, sizeof *c->nodes)) != NULL) {
      for (size_t i = 0; i < ev->nnodes; i++) {
        c->nodes[i] = ev->nodes[i];
        c->nodes[i].id = strdup(ev->nodes[i].id);
        c->nodes[i].url = strdup(ev->nodes[i].url);
      }
      c->nnodes = ev->nnodes;
    }
    c->stats.lease_expiries += ev->expired;
    c->stats.requeued += ev->requeued;
    break;
  case STORE_EV_LOST:
    c->stats.lost++;
    check(c);
    break;
  }
}

/* ---- life ---- */

cluster_t *cluster_new(uv_loop_t *loop, const cluster_config_t *cfg) {
  cluster_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->cfg = *cfg;
  c->loop = loop;
  uv_timer_init(loop, &c->poll);
  uv_timer_init(loop, &c->progress);
  c->poll.data = c->progress.data = c;
  return c;
}

void cluster_configure(cluster_t *c, const cluster_config_t *cfg) { c->cfg = *cfg; }

void cluster_attach(cluster_t *c, registry_t *r, store_t *s) {
  c->reg = r;
  c->store = s;
  report_load(c);
  uv_timer_start(&c->poll, on_poll, POLL_MS, POLL_MS);
  uv_timer_start(&c->progress, on_progress, PROGRESS_MS, PROGRESS_MS);
  uv_unref((uv_handle_t *)&c->poll);
  uv_unref((uv_handle_t *)&c->progress);
}

void cluster_set_listener(cluster_t *c, cluster_job_cb cb, cluster_streams_cb streams, void *data) {
  c->on_job = cb;
  c->streams = streams;
  c->listener_data = data;
}

const store_node_t *cluster_nodes(const cluster_t *c, size_t *n) {
  *n = c->nnodes;
  return c->nodes;
}

const cluster_stats_t *cluster_stats(const cluster_t *c) { return &c->stats; }

void cluster_stop(cluster_t *c) {
  if (!c || c->closing)
    return;
  c->closing = true;
  uv_timer_stop(&c->poll);
  uv_timer_stop(&c->progress);
}

static void on_closed(uv_handle_t *h) {
  cluster_t *c = h->data;
  if (++c->closed < 2)
    return;
  store_nodes_free(c->nodes, c->nnodes);
  free(c);
}

void cluster_free(cluster_t *c) {
  if (!c)
    return;
  cluster_stop(c);
  uv_close((uv_handle_t *)&c->poll, on_closed);
  uv_close((uv_handle_t *)&c->progress, on_closed);
}
