/* commands/params: a command task's "params" object into the specs the
 * server validates submissions with (offload_param_spec_t):
 *
 *   int    → INTEGER, min/max (default ±(2^53 - 1): what JSON numbers hold exactly)
 *   number → NUMBER, min/max (an absent bound is infinite; the value is always finite)
 *   enum   → STRING with choices ("values")
 *   bool   → BOOLEAN
 *   string → STRING, maxLength (default 1024, at most 65536) and a pattern
 *            (default COMMANDS_DEFAULT_PATTERN: no leading '-')
 *
 * A param is required unless it has a default or says "required": false;
 * "required": true with a default is a contradiction and refused. Every
 * default is checked against its own param's rules. Names are a letter then
 * letters, digits or '_' (they appear in placeholders, query strings and
 * error messages); "input" and "output" are the placeholders' own words,
 * "timeoutMs" and "retries" are job fields, so none of them may be a
 * param's name. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands/commands_int.h"
#include "tasks/tasks.h"
#include "util/err.h"

#define PARAM_NAME_MAX 48 /* "params.<name>" fits param_error_t.param */

static const char *const int_keys[] = {"type", "min", "max", "default", "required", "description", NULL};
static const char *const enum_keys[] = {"type", "values", "default", "required", "description", NULL};
static const char *const bool_keys[] = {"type", "default", "required", "description", NULL};
static const char *const string_keys[] = {"type", "maxLength", "pattern", "default", "required", "description", NULL};

static bool name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PARAM_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
    return false;
  return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

/* An int bound: absent → dflt; else it must be an integer within the limit. */
static int int_bound(commands_load_t *L, const char *name, const json_t *o, const char *key, int64_t dflt,
                     int64_t *out) {
  const json_t *v = json_object_get(o, key);
  *out = dflt;
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < -COMMANDS_INT_LIMIT || json_integer_value(v) > COMMANDS_INT_LIMIT)
    return commands_fail(L, "param \"%s\": \"%s\" must be an integer from %" PRId64 " to %" PRId64 "; fix its value",
                         name, key, -COMMANDS_INT_LIMIT, COMMANDS_INT_LIMIT);
  *out = (int64_t)json_integer_value(v);
  return 0;
}

static int real_bound(commands_load_t *L, const char *name, const json_t *o, const char *key, double dflt,
                      double *out) {
  const json_t *v = json_object_get(o, key);
  *out = dflt;
  if (!v)
    return 0;
  if (!json_is_number(v))
    return commands_fail(L, "param \"%s\": \"%s\" must be a number; fix its value", name, key);
  *out = json_number_value(v);
  return 0;
}

static int load_int(commands_load_t *L, offload_param_spec_t *s, const json_t *o, const json_t *dflt) {
  int rc;
  if ((rc = int_bound(L, s->name, o, "min", -COMMANDS_INT_LIMIT, &s->min)) != 0 ||
      (rc = int_bound(L, s->name, o, "max", COMMANDS_INT_LIMIT, &s->max)) != 0)
    return rc;
  if (s->min > s->max)
    return commands_fail(L, "param \"%s\": \"min\" (%" PRId64 ") is above \"max\" (%" PRId64 "); swap them", s->name,
                         s->min, s->max);
  s->type = OFFLOAD_PARAM_INTEGER;
  if (dflt && (!json_is_integer(dflt) || json_integer_value(dflt) < s->min || json_integer_value(dflt) > s->max))
    return commands_fail(L,
                         "param \"%s\": the default must be an integer from %" PRId64 " to %" PRId64
                         " (its min and max); change the default or the bounds",
                         s->name, s->min, s->max);
  return 0;
}

static int load_number(commands_load_t *L, offload_param_spec_t *s, const json_t *o, const json_t *dflt) {
  int rc;
  if ((rc = real_bound(L, s->name, o, "min", -INFINITY, &s->min_real)) != 0 ||
      (rc = real_bound(L, s->name, o, "max", INFINITY, &s->max_real)) != 0)
    return rc;
  /* Both bounds 0 reads as "unbounded" in a spec (offload/task.h). */
  if (s->min_real == 0 && s->max_real == 0)
    return commands_fail(L,
                         "param \"%s\": \"min\" and \"max\" are both 0, which leaves a single value; write 0 in argv "
                         "instead of a param",
                         s->name);
  if (s->min_real > s->max_real)
    return commands_fail(L, "param \"%s\": \"min\" (%g) is above \"max\" (%g); swap them", s->name, s->min_real,
                         s->max_real);
  s->type = OFFLOAD_PARAM_NUMBER;
  if (dflt && (!json_is_number(dflt) || json_number_value(dflt) < s->min_real || json_number_value(dflt) > s->max_real))
    return commands_fail(L, "param \"%s\": the default must be a number from %g to %g (its min and max); change it",
                         s->name, s->min_real, s->max_real);
  return 0;
}

static int load_enum(commands_load_t *L, offload_param_spec_t *s, const json_t *o, const json_t *dflt) {
  const json_t *vals = json_object_get(o, "values");
  size_t n = json_array_size(vals);
  if (!json_is_array(vals) || n == 0 || n > COMMANDS_MAX_VALUES)
    return commands_fail(L, "param \"%s\": an enum needs \"values\", a list of 1 to %d strings, e.g. [\"a\", \"b\"]",
                         s->name, COMMANDS_MAX_VALUES);
  const char **choices = commands_alloc(L, (n + 1) * sizeof *choices);
  if (!choices)
    return commands_oom(L);
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(vals, i);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > COMMANDS_STRING_DEFAULT)
      return commands_fail(L, "param \"%s\": values[%zu] must be a non-empty string of at most %d bytes; fix it",
                           s->name, i, COMMANDS_STRING_DEFAULT);
    for (size_t k = 0; k < i; k++)
      if (strcmp(choices[k], json_string_value(v)) == 0)
        return commands_fail(L, "param \"%s\": the value \"%.64s\" is listed twice; list each value once", s->name,
                             choices[k]);
    if (!(choices[i] = commands_strdup(L, json_string_value(v))))
      return commands_oom(L);
  }
  s->type = OFFLOAD_PARAM_STRING;
  s->choices = choices;
  if (!dflt)
    return 0;
  for (size_t i = 0; json_is_string(dflt) && i < n; i++)
    if (strcmp(choices[i], json_string_value(dflt)) == 0)
      return 0;
  return commands_fail(L, "param \"%s\": the default is not one of its values; make it one of them (e.g. \"%.64s\")",
                       s->name, choices[0]);
}

static int load_string(commands_load_t *L, offload_param_spec_t *s, const json_t *o, const json_t *dflt) {
  const json_t *ml = json_object_get(o, "maxLength");
  s->max_len = COMMANDS_STRING_DEFAULT;
  if (ml) {
    if (!json_is_integer(ml) || json_integer_value(ml) < 1 || json_integer_value(ml) > COMMANDS_STRING_MAX)
      return commands_fail(L, "param \"%s\": \"maxLength\" must be an integer from 1 to %d (bytes); fix it", s->name,
                           COMMANDS_STRING_MAX);
    s->max_len = (size_t)json_integer_value(ml);
  }
  const json_t *pat = json_object_get(o, "pattern");
  s->pattern = COMMANDS_DEFAULT_PATTERN;
  if (pat) {
    char why[128];
    if (!json_is_string(pat))
      return commands_fail(L, "param \"%s\": \"pattern\" must be a string (a POSIX extended regex); fix it", s->name);
    int rc = tasks_pattern_check(json_string_value(pat), why, sizeof why);
    if (rc == OFF_ENOMEM)
      return commands_oom(L);
    if (rc != 0)
      return commands_fail(L, "param \"%s\": the pattern \"%.128s\" is not a valid POSIX extended regex (%s); fix it",
                           s->name, json_string_value(pat), why);
    if (!(s->pattern = commands_strdup(L, json_string_value(pat))))
      return commands_oom(L);
  }
  s->type = OFFLOAD_PARAM_STRING;
  if (!dflt)
    return 0;
  if (!json_is_string(dflt) || json_string_length(dflt) > s->max_len)
    return commands_fail(L,
                         "param \"%s\": the default must be a string of at most %zu bytes (its maxLength); change it",
                         s->name, s->max_len);
  int m = tasks_pattern_match(s->pattern, json_string_value(dflt), json_string_length(dflt));
  if (m == OFF_ENOMEM)
    return commands_oom(L);
  if (m != 1)
    return commands_fail(L, "param \"%s\": the default \"%.64s\" does not match the pattern %.128s; change one of them",
                         s->name, json_string_value(dflt), s->pattern);
  return 0;
}

static int load_one(commands_load_t *L, commands_task_t *t, offload_param_spec_t *s, const char *name,
                    const json_t *o) {
  if (!name_ok(name))
    return commands_fail(L,
                         "param \"%.64s\": a param's name is a letter then at most %d letters, digits or '_'; "
                         "rename it",
                         name, PARAM_NAME_MAX - 1);
  if (strcmp(name, "input") == 0 || strcmp(name, "output") == 0)
    return commands_fail(L, "param \"%s\" has the name of the {%s} placeholder; rename it", name, name);
  if (strcmp(name, "timeoutMs") == 0 || strcmp(name, "retries") == 0)
    return commands_fail(L, "param \"%s\" has the name of a job field (POST /jobs/<task>?%s=); rename it", name, name);
  const json_t *type = json_object_get(o, "type");
  const char *ty = json_is_string(type) ? json_string_value(type) : "";
  if (!json_is_object(o) || !type)
    return commands_fail(L, "param \"%s\" must be an object with a \"type\", e.g. {\"type\": \"int\", \"min\": 0}",
                         name);
  const char *const *keys = strcmp(ty, "int") == 0 || strcmp(ty, "number") == 0 ? int_keys
                            : strcmp(ty, "enum") == 0                           ? enum_keys
                            : strcmp(ty, "bool") == 0                           ? bool_keys
                            : strcmp(ty, "string") == 0                         ? string_keys
                                                                                : NULL;
  if (!keys)
    return commands_fail(L, "param \"%s\": \"type\" must be one of int, number, enum, bool, string; fix it", name);
  char what[96];
  snprintf(what, sizeof what, "param \"%s\"", name);
  int rc = commands_known_keys(L, o, what, keys);
  if (rc != 0)
    return rc;
  if (!(s->name = commands_strdup(L, name)))
    return commands_oom(L);
  const json_t *desc = json_object_get(o, "description");
  if (desc && !json_is_string(desc))
    return commands_fail(L, "param \"%s\": \"description\" must be a string; fix it", name);
  if (desc && !(s->description = commands_strdup(L, json_string_value(desc))))
    return commands_oom(L);
  const json_t *dflt = json_object_get(o, "default");
  const json_t *req = json_object_get(o, "required");
  if (req && !json_is_boolean(req))
    return commands_fail(L, "param \"%s\": \"required\" must be true or false; fix it", name);
  if (json_is_true(req) && dflt)
    return commands_fail(L, "param \"%s\" is required and has a default; remove one of them", name);
  s->required = req ? json_is_true(req) : !dflt;

  if (strcmp(ty, "int") == 0)
    rc = load_int(L, s, o, dflt);
  else if (strcmp(ty, "number") == 0)
    rc = load_number(L, s, o, dflt);
  else if (strcmp(ty, "enum") == 0)
    rc = load_enum(L, s, o, dflt);
  else if (strcmp(ty, "string") == 0)
    rc = load_string(L, s, o, dflt);
  else {
    s->type = OFFLOAD_PARAM_BOOLEAN;
    if (dflt && !json_is_boolean(dflt))
      rc = commands_fail(L, "param \"%s\": the default must be true or false; fix it", name);
  }
  if (rc != 0 || !dflt)
    return rc;
  char *text = json_dumps(dflt, JSON_ENCODE_ANY | JSON_COMPACT);
  s->dflt = text ? commands_strdup(L, text) : NULL;
  free(text);
  if (!s->dflt || json_object_set(t->_defaults, name, (json_t *)dflt) != 0)
    return commands_oom(L);
  return 0;
}

int commands_params_load(commands_load_t *L, commands_task_t *t, const json_t *params) {
  if (!(t->_defaults = json_object()))
    return commands_oom(L);
  if (!params)
    return 0;
  size_t n = json_object_size(params);
  if (!json_is_object(params))
    return commands_fail(L, "\"params\" must be an object keyed by param name, e.g. {\"crf\": {\"type\": \"int\"}}");
  if (n > COMMANDS_MAX_PARAMS)
    return commands_fail(L, "it declares %zu params, over the limit of %d; drop some", n, COMMANDS_MAX_PARAMS);
  offload_param_spec_t *specs = n ? commands_alloc(L, n * sizeof *specs) : NULL;
  if (n && !specs)
    return commands_oom(L);
  const char *key;
  json_t *o;
  size_t i = 0;
  json_object_foreach((json_t *)params, key, o) {
    int rc = load_one(L, t, &specs[i++], key, o);
    if (rc != 0)
      return rc;
  }
  t->def.params = specs;
  t->def.nparams = n;
  return 0;
}
