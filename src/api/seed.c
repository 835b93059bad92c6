/* api/seed: the seeds' own endpoints, a frozen contract — GET
 * /tasks/reports/start, GET /tasks/reports/<id>, GET /fibonacci/<n>. */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "util/err.h"

void h_report_start(api_t *a, http_req_t *req, const router_match_t *m) {
  static const char *const allowed[] = {"heavyIterations", NULL};
  query_t q;
  if (!api_parse_query(req, &q, allowed))
    return;
  const query_param_t *p = query_get(&q, "heavyIterations");
  job_t *j = api_submit_int_job(a, req, "report", "heavyIterations", p ? p->value : NULL, p ? p->value_len : 0, true);
  if (!j)
    return;
  if (job_is_accepted(j))
    api_reply_seed_accepted(req, j);
  else if (api_hold(a, req, j, HOLD_ACCEPT_SEED, 0) != 0)
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory."); /* the job still runs once kept */
}

void api_reply_seed_accepted(http_req_t *req, job_t *j) {
  char url[64];
  snprintf(url, sizeof url, "/tasks/reports/%s", j->id);
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "Location", url);
  /* Accepted just now: it is queued from the client's point of view. */
  api_reply_json(req, 202, &h, json_pack("{s:s, s:s, s:s}", "jobId", j->id, "status", "queued", "statusUrl", url));
  http_headers_fini(&h);
}

void h_report_status(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  if (job_is_cold(j))
    api_reply_cold(a, req, 200, NULL, j, true);
  else
    api_reply_json(req, 200, NULL, api_seed_job_json(j, registry_position(a->reg, j)));
}

void h_fibonacci(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  char n[128];
  if (router_param(m, "n", n, sizeof n) < 0)
    n[0] = '\0';
  /* A value cut to fit is far too long for an integer: rejected below. */
  job_t *j = api_submit_int_job(a, req, "fibonacci", "n", n, strlen(n), false);
  if (!j)
    return;
  if (api_hold(a, req, j, HOLD_FIB, 0) != 0) {
    registry_cancel(a->reg, j);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
  }
}
