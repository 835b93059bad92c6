/* api/hold: held replies — a request answered when its job is final
 * (GET /jobs/<id>?wait=S, GET /fibonacci/<n>), with no thread held.
 *
 * A waiter is a registry watch on the job, the request, and a timer (armed
 * only for ?wait). It is freed when its timer handle closes, after
 * whichever comes first of: the job became final, the wait ran out, the
 * client went away (the http abort callback). */
#include <stdlib.h>

#include "api/api_int.h"
#include "util/err.h"

typedef struct waiter {
  job_watch_t watch; /* first: the registry hands this back */
  api_t *api;
  http_req_t *req;
  job_t *job;
  hold_kind_t kind;
  uv_timer_t timer;
} waiter_t;

static void on_waiter_closed(uv_handle_t *h) { free(h->data); }

static bool has_timer(const waiter_t *w) { return w->kind == HOLD_JOB || w->kind == HOLD_FIB || w->kind == HOLD_IMAGE; }

static void waiter_finish(waiter_t *w) {
  w->api->waiters--;
  if (!has_timer(w)) { /* a 202 on its way: no handle to close */
    free(w);
    return;
  }
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
}

void api_reply_fib(http_req_t *req, job_t *j) {
  switch (j->status) {
  case JOB_COMPLETE:
    api_reply_json(req, 200, NULL,
                   json_pack("{s:O, s:O}", "n", json_object_get(j->params, "n"), "result", j->result));
    return;
  case JOB_CANCELED:
    /* Shutdown: the service went away (503). A DELETE from someone holding the
     * job id: this request's job is gone, a conflict with that (409). */
    api_error_as(req, j->canceled_by_shutdown ? 503 : 409, j->err_code, NULL, "%s", j->err_message);
    return;
  default:
    api_error_as(req, 500, j->err_code ? j->err_code : "internal", NULL, "%s",
                 j->err_message ? j->err_message : "The job failed.");
  }
}

static void on_waited_final(job_t *j, job_watch_t *watch) {
  waiter_t *w = (waiter_t *)watch;
  if (w->kind == HOLD_FIB)
    api_reply_fib(w->req, j);
  else if (w->kind == HOLD_IMAGE)
    api_reply_image(w->api, w->req, j);
  else if (w->kind == HOLD_ACCEPT_SEED) /* final before kept: only a cancel does that */
    api_reply_seed_accepted(w->req, j);
  else if (w->kind == HOLD_ACCEPT_JOB)
    api_reply_job_accepted(w->api, w->req, j);
  else if (w->kind == HOLD_SAME_JOB || w->kind == HOLD_SAME_SEED)
    api_reply_same(w->api, w->req, j, w->kind == HOLD_SAME_SEED);
  else
    api_reply_job(w->api, w->req, 200, NULL, j);
  waiter_finish(w);
}

/* The 202 of a submission whose job the store was keeping. */
static void on_waited_accepted(job_t *j, job_watch_t *watch, int rc) {
  waiter_t *w = (waiter_t *)watch;
  if (rc == OFF_EEXIST && j->_existing) { /* a cluster: another node's job holds the key */
    api_reply_existing_row(w->api, w->req, j->_existing, j->def, j->_run_params ? j->_run_params : j->params);
    waiter_finish(w);
    return;
  }
  if (rc != 0) { /* the watch is already removed; the job is gone after this */
    api_reply_submit_error(w->req, rc);
    waiter_finish(w);
    return;
  }
  if (w->kind == HOLD_FIB || w->kind == HOLD_IMAGE)
    return; /* kept: now wait for its result */
  registry_unwatch(j, &w->watch);
  if (w->kind == HOLD_ACCEPT_SEED)
    api_reply_seed_accepted(w->req, j);
  else if (w->kind == HOLD_SAME_JOB || w->kind == HOLD_SAME_SEED)
    api_reply_same(w->api, w->req, j, w->kind == HOLD_SAME_SEED);
  else
    api_reply_job_accepted(w->api, w->req, j);
  waiter_finish(w);
}

static void on_wait_timeout(uv_timer_t *t) {
  waiter_t *w = t->data;
  registry_unwatch(w->job, &w->watch);
  registry_refresh(w->api->reg, w->job);
  api_reply_job(w->api, w->req, 200, NULL, w->job);
  waiter_finish(w);
}

static void on_wait_abort(http_req_t *req, void *data) {
  waiter_t *w = data;
  (void)req;
  registry_unwatch(w->job, &w->watch);
  /* Nobody is left to read a synchronous answer: stop the work. */
  if (w->kind == HOLD_FIB || w->kind == HOLD_IMAGE)
    registry_cancel(w->api->reg, w->job);
  waiter_finish(w);
}

int api_hold(api_t *a, http_req_t *req, job_t *j, hold_kind_t kind, uint64_t timeout_ms) {
  waiter_t *w = calloc(1, sizeof *w);
  if (!w)
    return OFF_ENOMEM;
  w->watch.cb = on_waited_final;
  w->watch.accepted = on_waited_accepted;
  w->api = a;
  w->req = req;
  w->job = j;
  w->kind = kind;
  /* Only the holds that wait for a result need a timer (and a handle's
   * deferred free); a 202 waits one store commit at most. */
  if (has_timer(w)) {
    uv_timer_init(a->loop, &w->timer);
    w->timer.data = w;
    if (timeout_ms)
      uv_timer_start(&w->timer, on_wait_timeout, timeout_ms, 0);
  }
  registry_watch(j, &w->watch);
  http_req_on_abort(req, on_wait_abort, w);
  a->waiters++;
  return 0;
}
