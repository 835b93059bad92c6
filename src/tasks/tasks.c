/* tasks/tasks: see tasks.h. */
#include "tasks/tasks.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

const offload_task_def_t *const tasks_builtin[] = {
    &task_report, &task_fibonacci, &task_primes, &task_spin, &task_password_hash, &task_password_verify, &task_pdf,
    &task_stats, &task_image, &task_crash, NULL,
};

void tasks_libraries_fini(void) {
  task_image_fini();
  task_pdf_fini();
  tasks_patterns_fini();
}

const offload_task_def_t *tasks_find_builtin(const char *name) {
  for (size_t i = 0; tasks_builtin[i]; i++)
    if (strcmp(tasks_builtin[i]->name, name) == 0)
      return tasks_builtin[i];
  return NULL;
}

const char *tasks_isolation_name(offload_isolation_t iso) {
  return iso == OFFLOAD_ISOLATION_PROCESS ? "process" : "thread";
}

int tasks_catalog_init(tasks_catalog_t *c) {
  tasks_options_t o = {.isolation = OFFLOAD_ISOLATION_THREAD, .test_tasks = false};
  return tasks_catalog_init_with(c, &o);
}

int tasks_catalog_init_with(tasks_catalog_t *c, const tasks_options_t *o) {
  memset(c, 0, sizeof *c);
  size_t nbuiltin = 0;
  while (tasks_builtin[nbuiltin])
    nbuiltin++;
  size_t n = nbuiltin + o->nextra + o->npinned;
  c->defs = calloc(n, sizeof *c->defs);
  c->specs = calloc(n, sizeof *c->specs);
  if (!c->defs || !c->specs)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    bool pinned = i >= nbuiltin + o->nextra;
    const offload_task_def_t *d = i < nbuiltin                ? tasks_builtin[i]
                                  : i < nbuiltin + o->nextra ? o->extra[i - nbuiltin]
                                                             : o->pinned[i - nbuiltin - o->nextra];
    if (d->test_only && !o->test_tasks)
      continue;
    if (tasks_catalog_find(c, d->name)) {
      tasks_catalog_fini(c);
      return OFF_EINVAL;
    }
    size_t k = c->n++;
    c->defs[k] = *d;
    c->defs[k].isolation = pinned                                    ? OFFLOAD_ISOLATION_THREAD
                           : d->isolation == OFFLOAD_ISOLATION_PROCESS ? OFFLOAD_ISOLATION_PROCESS
                           : o->isolation == OFFLOAD_ISOLATION_PROCESS ? OFFLOAD_ISOLATION_PROCESS
                                                                       : OFFLOAD_ISOLATION_THREAD;
    c->defs[k].nparams = 0;
    if (d->nparams) {
      c->specs[k] = malloc(sizeof *c->specs[k] * d->nparams);
      if (!c->specs[k])
        goto fail;
      for (size_t p = 0; p < d->nparams; p++)
        if (!d->params[p].test_only || o->test_tasks)
          c->specs[k][c->defs[k].nparams++] = d->params[p];
      c->defs[k].params = c->specs[k];
    }
  }
  return 0;
fail:
  tasks_catalog_fini(c);
  return OFF_ENOMEM;
}

bool tasks_catalog_uses(const tasks_catalog_t *c, offload_isolation_t iso) {
  for (size_t i = 0; i < c->n; i++)
    if (c->defs[i].isolation == iso)
      return true;
  return false;
}

void tasks_catalog_fini(tasks_catalog_t *c) {
  for (size_t i = 0; i < c->n; i++)
    free(c->specs[i]);
  free(c->specs);
  free(c->defs);
  memset(c, 0, sizeof *c);
}

const offload_task_def_t *tasks_catalog_find(const tasks_catalog_t *c, const char *name) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->defs[i].name, name) == 0)
      return &c->defs[i];
  return NULL;
}

int tasks_catalog_set_max(tasks_catalog_t *c, const char *task, const char *param, int64_t max) {
  for (size_t i = 0; i < c->n; i++) {
    if (strcmp(c->defs[i].name, task) != 0)
      continue;
    for (size_t k = 0; k < c->defs[i].nparams; k++)
      if (strcmp(c->specs[i][k].name, param) == 0) {
        c->specs[i][k].max = max;
        return 0;
      }
  }
  return OFF_ENOENT;
}

void tasks_catalog_names(const tasks_catalog_t *c, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < c->n && used < size; i++) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", c->defs[i].name);
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

bool tasks_parse_int(const char *s, size_t len, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  if (len > 0 && s[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i == len || len - i > 19)
    return false;
  uint64_t v = 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow uint64 */
  }
  if (!neg && v > (uint64_t)INT64_MAX)
    return false;
  if (neg && v > (uint64_t)INT64_MAX + 1)
    return false;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

static void set_err(param_error_t *err, param_problem_t problem, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(param_error_t *err, param_problem_t problem, const char *param, const char *fmt, ...) {
  err->problem = problem;
  snprintf(err->param, sizeof err->param, "%s", param);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

bool tasks_check_range(const offload_param_spec_t *spec, int64_t v, const char *param, param_error_t *err) {
  if (v >= spec->min && v <= spec->max)
    return true;
  set_err(err, PARAM_INVALID, param, "%s must be an integer from %" PRId64 " to %" PRId64 "; got %" PRId64 ".", param,
          spec->min, spec->max, v);
  return false;
}

/* A string parameter's allowed values, "a, b, c", into buf. */
static void choices_text(const offload_param_spec_t *spec, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; spec->choices && spec->choices[i] && used < size; i++) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", spec->choices[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

size_t tasks_max_len(const offload_param_spec_t *spec) { return spec->max_len ? spec->max_len : 1024; }
size_t tasks_max_items(const offload_param_spec_t *spec) { return spec->max_items ? spec->max_items : 1024; }

static bool check_string(const offload_param_spec_t *spec, const json_t *v, const char *name, param_error_t *err) {
  /* A NUL byte would cut the text short wherever it is read as a C string
   * (a choice compared, a pattern matched, a command's argument); only a
   * secret (a password, read with its length) may hold one. Neither a JSON
   * body nor a query string can carry one today: this is the last guard. */
  if (json_is_string(v) && !spec->secret && memchr(json_string_value(v), '\0', json_string_length(v))) {
    set_err(err, PARAM_INVALID, name, "%s must not contain a NUL byte.", name);
    return false;
  }
  if (spec->choices) {
    for (size_t i = 0; json_is_string(v) && spec->choices[i]; i++)
      if (strcmp(json_string_value(v), spec->choices[i]) == 0)
        return true;
    char allowed[160];
    choices_text(spec, allowed, sizeof allowed);
    set_err(err, PARAM_INVALID, name, "%s must be one of: %s.", name, allowed);
    return false;
  }
  if (!json_is_string(v)) {
    set_err(err, PARAM_INVALID, name, "%s must be a string.", name);
    return false;
  }
  if (json_string_length(v) > tasks_max_len(spec)) {
    set_err(err, PARAM_INVALID, name, "%s must be at most %zu bytes long; got %zu.", name, tasks_max_len(spec),
            json_string_length(v));
    return false;
  }
  if (spec->format == OFFLOAD_FORMAT_HEX) {
    const char *t = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n % 2 || strspn(t, "0123456789abcdefABCDEF") != n) {
      set_err(err, PARAM_INVALID, name, "%s must be bytes in hex: an even number of the digits 0-9, a-f.", name);
      return false;
    }
  }
  if (spec->pattern) {
    int m = tasks_pattern_match(spec->pattern, json_string_value(v), json_string_length(v));
    if (m == 1)
      return true;
    if (m == 0)
      set_err(err, PARAM_INVALID, name, "%s must match the pattern %.160s (the whole value).", name, spec->pattern);
    else /* a spec's pattern that does not compile is the server's fault: refuse, never pass */
      set_err(err, PARAM_INVALID, name, "%s cannot be checked: the server's pattern for it is unusable (%s).", name,
              err_str(m));
    return false;
  }
  return true;
}

bool tasks_check_real(const offload_param_spec_t *spec, double x, const char *param, param_error_t *err) {
  bool bounded = spec->min_real != 0 || spec->max_real != 0;
  if (isfinite(x) && (!bounded || (x >= spec->min_real && x <= spec->max_real)))
    return true;
  if (bounded && isinf(spec->min_real)) /* one bound only (a command task's param may have one) */
    set_err(err, PARAM_INVALID, param, "%s must be a number of at most %g.", param, spec->max_real);
  else if (bounded && isinf(spec->max_real))
    set_err(err, PARAM_INVALID, param, "%s must be a number of at least %g.", param, spec->min_real);
  else if (bounded)
    set_err(err, PARAM_INVALID, param, "%s must be a number from %g to %g.", param, spec->min_real, spec->max_real);
  else
    set_err(err, PARAM_INVALID, param, "%s must be a finite number.", param);
  return false;
}

static bool check_list(const offload_param_spec_t *spec, const json_t *v, const char *name, param_error_t *err) {
  bool ints = spec->type == OFFLOAD_PARAM_INT_LIST;
  size_t n = json_array_size(v);
  if (!json_is_array(v) || n < spec->min_items || n > tasks_max_items(spec)) {
    set_err(err, PARAM_INVALID, name, "%s must be a list of %zu to %zu %s.", name, spec->min_items,
            tasks_max_items(spec), ints ? "integers" : "numbers");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *x = json_array_get(v, i);
    char item[96];
    snprintf(item, sizeof item, "%.60s[%zu]", name, i);
    if (ints ? !json_is_integer(x) : !json_is_number(x)) {
      set_err(err, PARAM_INVALID, item, "%s must be %s.", item, ints ? "an integer" : "a number");
      return false;
    }
    if (ints ? !tasks_check_range(spec, (int64_t)json_integer_value(x), item, err)
             : !tasks_check_real(spec, json_number_value(x), item, err))
      return false;
  }
  return true;
}

static bool check_value(const offload_param_spec_t *spec, const json_t *v, const char *name, param_error_t *err) {
  switch (spec->type) {
  case OFFLOAD_PARAM_BOOLEAN:
    if (json_is_boolean(v))
      return true;
    set_err(err, PARAM_INVALID, name, "%s must be true or false.", name);
    return false;
  case OFFLOAD_PARAM_STRING: return check_string(spec, v, name, err);
  case OFFLOAD_PARAM_NUMBER:
    if (json_is_number(v))
      return tasks_check_real(spec, json_number_value(v), name, err);
    set_err(err, PARAM_INVALID, name, "%s must be a number.", name);
    return false;
  case OFFLOAD_PARAM_INT_LIST:
  case OFFLOAD_PARAM_NUMBER_LIST: return check_list(spec, v, name, err);
  case OFFLOAD_PARAM_INTEGER: break;
  }
  if (!json_is_integer(v)) {
    set_err(err, PARAM_INVALID, name, "%s must be an integer from %" PRId64 " to %" PRId64 ".", name, spec->min,
            spec->max);
    return false;
  }
  return tasks_check_range(spec, (int64_t)json_integer_value(v), name, err);
}

bool tasks_validate(const offload_task_def_t *def, const json_t *params, param_error_t *err) {
  char name[64];
  for (size_t i = 0; i < def->nparams; i++) {
    const offload_param_spec_t *spec = &def->params[i];
    snprintf(name, sizeof name, "params.%s", spec->name);
    json_t *v = json_object_get(params, spec->name);
    if (!v) {
      if (spec->required) {
        set_err(err, PARAM_MISSING, name, "Task %s needs the parameter %s.", def->name, spec->name);
        return false;
      }
      continue;
    }
    if (!check_value(spec, v, name, err))
      return false;
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)params, key, v) {
    bool known = false;
    for (size_t i = 0; i < def->nparams && !known; i++)
      known = strcmp(def->params[i].name, key) == 0;
    if (!known) {
      snprintf(name, sizeof name, "params.%.55s", key);
      set_err(err, PARAM_UNKNOWN, name, "Task %s has no parameter named \"%.64s\".", def->name, key);
      return false;
    }
  }
  err->problem = PARAM_OK;
  return true;
}

bool tasks_has_secret(const offload_task_def_t *def) {
  for (size_t i = 0; i < def->nparams; i++)
    if (def->params[i].secret)
      return true;
  return false;
}

json_t *tasks_redact(const offload_task_def_t *def, const json_t *params) {
  json_t *copy = json_deep_copy(params);
  for (size_t i = 0; copy && i < def->nparams; i++)
    if (def->params[i].secret && json_object_get(copy, def->params[i].name) &&
        json_object_set_new(copy, def->params[i].name, json_string("[redacted]")) != 0) {
      json_decref(copy);
      return NULL;
    }
  return copy;
}
