/* api/system: GET /health and GET /tasks. */
#include "api/api_int.h"
#include "util/clock.h"

void h_health(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  api_reply_json(req, 200, NULL,
                 json_pack("{s:s, s:{s:i, s:i}, s:{s:I, s:I}, s:I}", "status", "ok", "workers", "total",
                           (int)pool_workers(a->pool), "busy", (int)pool_busy(a->pool), "queue", "depth",
                           (json_int_t)pool_depth(a->pool), "capacity", (json_int_t)pool_capacity(a->pool),
                           "uptimeMs", (json_int_t)(clock_mono_ms() - (int64_t)a->started_ms)));
}

void h_tasks(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  json_t *arr = json_array();
  for (size_t i = 0; i < a->cat->n; i++) {
    const offload_task_def_t *d = &a->cat->defs[i];
    json_t *ps = json_array();
    for (size_t k = 0; k < d->nparams; k++) {
      const offload_param_spec_t *s = &d->params[k];
      json_array_append_new(ps, json_pack("{s:s, s:s, s:b, s:I, s:I}", "name", s->name, "type", "integer", "required",
                                          s->required, "min", (json_int_t)s->min, "max", (json_int_t)s->max));
    }
    json_array_append_new(arr,
                          json_pack("{s:s, s:s, s:o}", "name", d->name, "description", d->description, "params", ps));
  }
  api_reply_json(req, 200, NULL, json_pack("{s:o}", "tasks", arr));
}
