/* api/system: GET /health and GET /tasks, and the pools' totals both
 * /health and /metrics report. */
#include "api/api_int.h"
#include <string.h>

#include "util/clock.h"

void api_pool_totals(api_t *a, api_pool_totals_t *t) {
  memset(t, 0, sizeof *t);
  for (int l = 0; l < LANE_N; l++) {
    pool_t *p = a->pools[l];
    if (!p)
      continue;
    t->workers += pool_workers(p);
    t->busy += pool_busy(p);
    t->depth += pool_depth(p);
    t->capacity += pool_capacity(p);
    for (int c = 0; c < POOL_NRESTART; c++)
      t->restarts[c] += pool_restarts(p, (pool_restart_t)c);
  }
}

void h_health(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  api_pool_totals_t t;
  api_pool_totals(a, &t);
  api_reply_json(req, 200, NULL,
                 json_pack("{s:s, s:{s:I, s:I}, s:{s:I, s:I}, s:I}", "status", "ok", "workers", "total",
                           (json_int_t)t.workers, "busy", (json_int_t)t.busy, "queue", "depth", (json_int_t)t.depth,
                           "capacity", (json_int_t)t.capacity, "uptimeMs",
                           (json_int_t)(clock_mono_ms() - (int64_t)a->started_ms)));
}

static json_t *param_json(const offload_param_spec_t *s) {
  switch (s->type) {
  case OFFLOAD_PARAM_BOOLEAN:
    return json_pack("{s:s, s:s, s:b}", "name", s->name, "type", "boolean", "required", s->required);
  case OFFLOAD_PARAM_STRING: {
    json_t *choices = json_array();
    for (size_t i = 0; s->choices && s->choices[i]; i++)
      json_array_append_new(choices, json_string(s->choices[i]));
    return json_pack("{s:s, s:s, s:b, s:o}", "name", s->name, "type", "string", "required", s->required, "enum",
                     choices);
  }
  case OFFLOAD_PARAM_INTEGER: break;
  }
  return json_pack("{s:s, s:s, s:b, s:I, s:I}", "name", s->name, "type", "integer", "required", s->required, "min",
                   (json_int_t)s->min, "max", (json_int_t)s->max);
}

void h_tasks(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  json_t *arr = json_array();
  for (size_t i = 0; i < a->cat->n; i++) {
    const offload_task_def_t *d = &a->cat->defs[i];
    json_t *ps = json_array();
    for (size_t k = 0; k < d->nparams; k++)
      json_array_append_new(ps, param_json(&d->params[k]));
    json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:s}", "name", d->name, "description", d->description,
                                         "params", ps, "isolation", tasks_isolation_name(d->isolation)));
  }
  api_reply_json(req, 200, NULL, json_pack("{s:o}", "tasks", arr));
}
