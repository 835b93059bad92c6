/* api/system: GET /health and GET /tasks, and the pools' totals both
 * /health and /metrics report. */
#include "api/api_int.h"
#include <string.h>

#include "commands/run.h"
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
  static const char *const kinds[] = {"memory", "sqlite", "postgres"};
  store_kind_t kind = a->store ? store_kind(a->store) : STORE_MEMORY;
  api_reply_json(req, 200, NULL,
                 json_pack("{s:s, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:{s:s, s:b}}", "status", "ok", "workers", "total",
                           (json_int_t)t.workers, "busy", (json_int_t)t.busy, "queue", "depth", (json_int_t)t.depth,
                           "capacity", (json_int_t)t.capacity, "uptimeMs",
                           (json_int_t)(clock_mono_ms() - (int64_t)a->started_ms), "store", "kind", kinds[kind], "ok",
                           !a->store || store_ok(a->store)));
}

static const char *type_name(offload_param_type_t t) {
  switch (t) {
  case OFFLOAD_PARAM_BOOLEAN: return "boolean";
  case OFFLOAD_PARAM_STRING: return "string";
  case OFFLOAD_PARAM_NUMBER: return "number";
  case OFFLOAD_PARAM_INT_LIST: return "integer[]";
  case OFFLOAD_PARAM_NUMBER_LIST: return "number[]";
  case OFFLOAD_PARAM_INTEGER: break;
  }
  return "integer";
}

/* One parameter as GET /tasks shows it: name, type, required, then what
 * bounds it (min/max, maxLength, pattern, enum, minItems/maxItems), its default,
 * whether it is secret, and its description, each only where it applies. */
static json_t *param_json(const offload_param_spec_t *s) {
  json_t *o = json_pack("{s:s, s:s, s:b}", "name", s->name, "type", type_name(s->type), "required", s->required);
  if (!o)
    return NULL;
  switch (s->type) {
  case OFFLOAD_PARAM_INTEGER:
  case OFFLOAD_PARAM_INT_LIST:
    json_object_set_new(o, "min", json_integer((json_int_t)s->min));
    json_object_set_new(o, "max", json_integer((json_int_t)s->max));
    break;
  case OFFLOAD_PARAM_NUMBER:
  case OFFLOAD_PARAM_NUMBER_LIST:
    if (s->min_real != 0 || s->max_real != 0) {
      json_object_set_new(o, "min", json_real(s->min_real));
      json_object_set_new(o, "max", json_real(s->max_real));
    }
    break;
  case OFFLOAD_PARAM_STRING:
    if (s->choices) {
      json_t *choices = json_array();
      for (size_t i = 0; s->choices[i]; i++)
        json_array_append_new(choices, json_string(s->choices[i]));
      json_object_set_new(o, "enum", choices);
      json_object_set(o, "values", choices); /* the name command files use; the same list */
    } else {
      json_object_set_new(o, "maxLength", json_integer((json_int_t)tasks_max_len(s)));
      if (s->format == OFFLOAD_FORMAT_HEX)
        json_object_set_new(o, "format", json_string("hex"));
      if (s->pattern)
        json_object_set_new(o, "pattern", json_string(s->pattern));
    }
    break;
  case OFFLOAD_PARAM_BOOLEAN: break;
  }
  if (s->type == OFFLOAD_PARAM_INT_LIST || s->type == OFFLOAD_PARAM_NUMBER_LIST) {
    json_object_set_new(o, "minItems", json_integer((json_int_t)s->min_items));
    json_object_set_new(o, "maxItems", json_integer((json_int_t)tasks_max_items(s)));
  }
  if (s->dflt) {
    json_t *d = json_loads(s->dflt, JSON_DECODE_ANY, NULL);
    if (d)
      json_object_set_new(o, "default", d);
  }
  if (s->secret)
    json_object_set_new(o, "secret", json_true());
  if (s->description)
    json_object_set_new(o, "description", json_string(s->description));
  return o;
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
    json_t *t = json_pack("{s:s, s:s, s:o, s:s}", "name", d->name, "description", d->description, "params", ps,
                          "isolation", tasks_isolation_name(d->isolation));
    if (t && d->input != OFFLOAD_INPUT_NONE) { /* only tasks that take a body say so */
      json_t *types = json_array();
      for (size_t k = 0; d->input_types && d->input_types[k]; k++)
        json_array_append_new(types, json_string(d->input_types[k]));
      json_object_set_new(t, "input", json_pack("{s:b, s:o}", "required", d->input == OFFLOAD_INPUT_REQUIRED,
                                                 "contentTypes", types));
    }
    if (t && d->timeout_ms > 0) /* the task's own limit: a job's default timeoutMs and its most */
      json_object_set_new(t, "timeoutMs", json_integer((json_int_t)d->timeout_ms));
    if (t && commands_is_command(d)) /* GET /jobs/<id>/log has its output (the dashboard asks only then) */
      json_object_set_new(t, "log", json_true());
    json_array_append_new(arr, t);
  }
  api_reply_json(req, 200, NULL, json_pack("{s:o}", "tasks", arr));
}
