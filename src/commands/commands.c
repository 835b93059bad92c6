/* commands/commands: reading a --commands file (see commands.h): the file,
 * its "env" allow-list, each task's fields. A task's params are params.c's,
 * its argv and program argv.c's; rendering an argv is render.c's.
 *
 * Every check names the file, the task and the fix, because the only
 * reader of these messages is the person who wrote the file, at start-up.
 * Unknown keys are refused everywhere (a typo such as "timeoutMS" would
 * otherwise silently mean "no timeout"), and so is a declared param that no
 * argument uses (a value that would be validated and then thrown away is a
 * mistake in the file, not a feature). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "commands/commands_int.h"
#include "tasks/tasks.h"
#include "util/err.h"
#include "util/fault.h"

/* ---- what the files share ---- */

int commands_fail(commands_load_t *L, const char *fmt, ...) {
  int w;
  if (L->task)
    w = snprintf(L->err, L->errlen, "%s: task \"%s\": ", L->c->path, L->task);
  else if (L->index != SIZE_MAX)
    w = snprintf(L->err, L->errlen, "%s: tasks[%zu]: ", L->c->path, L->index);
  else
    w = snprintf(L->err, L->errlen, "%s: ", L->c->path);
  if (w >= 0 && (size_t)w < L->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err + w, L->errlen - (size_t)w, fmt, ap);
    va_end(ap);
  }
  return OFF_EINVAL;
}

int commands_oom(commands_load_t *L) {
  snprintf(L->err, L->errlen, "%s: out of memory while loading", L->c->path);
  return OFF_ENOMEM;
}

void *commands_alloc(commands_load_t *L, size_t size) {
  commands_mem_t *m = FAULT_HIT(FAULT_ALLOC) ? NULL : calloc(1, sizeof *m + size);
  if (!m)
    return NULL;
  m->next = L->c->_mem;
  L->c->_mem = m;
  return m->data;
}

char *commands_strndup(commands_load_t *L, const char *s, size_t n) {
  char *d = commands_alloc(L, n + 1); /* zeroed: terminated */
  if (d)
    memcpy(d, s, n);
  return d;
}

char *commands_strdup(commands_load_t *L, const char *s) { return commands_strndup(L, s, strlen(s)); }

int commands_known_keys(commands_load_t *L, const json_t *o, const char *what, const char *const *known) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)o, key, v) {
    size_t i = 0;
    while (known[i] && strcmp(known[i], key) != 0)
      i++;
    if (known[i])
      continue;
    char list[256] = "";
    for (i = 0; known[i]; i++)
      if (strcasecmp(known[i], key) == 0)
        return commands_fail(L, "%s has an unknown key \"%.64s\"; did you mean \"%s\"?", what, key, known[i]);
    for (i = 0; known[i]; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", known[i]);
    return commands_fail(L, "%s has an unknown key \"%.64s\"; the keys are: %s (check the spelling)", what, key, list);
  }
  return 0;
}

/* ---- the task ---- */

static const char *const task_keys[] = {"name",      "description", "argv",     "params",     "input", "inputTypes",
                                        "timeoutMs", "progress",    "memoryMB", "cpuSeconds", NULL};
static const char *const progress_keys[] = {"type", "pattern", NULL};

/* At most 63 bytes: what POST /jobs/<task> reads from its path (a 64-byte
 * buffer) and what fits param_error_t's names. */
static bool task_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
    return false;
  return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static bool media_type_ok(const char *s) {
  static const char tok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-";
  size_t a = strspn(s, tok);
  return a > 0 && s[a] == '/' && strspn(s + a + 1, tok) > 0 && s[a + 1 + strspn(s + a + 1, tok)] == '\0';
}

static int load_input(commands_load_t *L, commands_task_t *t, const json_t *o) {
  const json_t *in = json_object_get(o, "input");
  const json_t *types = json_object_get(o, "inputTypes");
  if (in && !json_is_boolean(in))
    return commands_fail(L, "\"input\" must be true or false; fix it");
  t->input = json_is_true(in);
  t->def.input = t->input ? OFFLOAD_INPUT_REQUIRED : OFFLOAD_INPUT_NONE;
  if (!types)
    return 0;
  size_t n = json_array_size(types);
  if (!t->input)
    return commands_fail(L, "\"inputTypes\" needs \"input\": true; add it or drop \"inputTypes\"");
  if (!json_is_array(types) || n == 0 || n > 32)
    return commands_fail(L, "\"inputTypes\" must be a list of 1 to 32 media types, e.g. [\"video/mp4\"]");
  const char **list = commands_alloc(L, (n + 1) * sizeof *list);
  if (!list)
    return commands_oom(L);
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(types, i);
    if (!json_is_string(v) || !media_type_ok(json_string_value(v)))
      return commands_fail(L, "inputTypes[%zu] must be a media type such as \"video/mp4\"; fix it", i);
    if (!(list[i] = commands_strdup(L, json_string_value(v))))
      return commands_oom(L);
  }
  t->def.input_types = list;
  return 0;
}

static int load_progress(commands_load_t *L, commands_task_t *t, const json_t *p) {
  if (!p)
    return 0;
  const json_t *type = json_object_get(p, "type");
  const char *ty = json_is_string(type) ? json_string_value(type) : "";
  if (!json_is_object(p) || (strcmp(ty, "ffmpeg") != 0 && strcmp(ty, "regex") != 0))
    return commands_fail(L, "\"progress\" must be {\"type\": \"ffmpeg\"} or {\"type\": \"regex\", \"pattern\": "
                            "\"([0-9]+)%%\"}; fix it");
  int rc = commands_known_keys(L, p, "\"progress\"", progress_keys);
  if (rc != 0)
    return rc;
  const json_t *pat = json_object_get(p, "pattern");
  if (strcmp(ty, "ffmpeg") == 0) {
    if (pat)
      return commands_fail(L, "progress \"ffmpeg\" takes no \"pattern\"; drop it");
    for (size_t i = 1; i + 1 < t->nargs; i++)
      if (t->args[i].kind == COMMANDS_ARG_LITERAL && strcmp(t->args[i].text, "-progress") == 0 &&
          t->args[i + 1].kind == COMMANDS_ARG_LITERAL && strcmp(t->args[i + 1].text, "pipe:1") == 0) {
        t->progress = COMMANDS_PROGRESS_FFMPEG;
        return 0;
      }
    return commands_fail(L, "progress \"ffmpeg\" reads ffmpeg's progress lines on stdout; add the arguments "
                            "\"-progress\", \"pipe:1\" to argv");
  }
  if (!json_is_string(pat))
    return commands_fail(L, "progress \"regex\" needs a \"pattern\" whose first group is a percent, e.g. "
                            "\"([0-9]+(\\\\.[0-9]+)?)%%\"");
  const char *s = json_string_value(pat);
  int r = regcomp(&t->progress_re, s, REG_EXTENDED);
  if (r == REG_ESPACE)
    return commands_oom(L);
  if (r != 0) {
    char why[128];
    regerror(r, &t->progress_re, why, sizeof why);
    return commands_fail(L, "the progress pattern \"%.128s\" is not a valid POSIX extended regex (%s); fix it", s, why);
  }
  t->_re_compiled = true;
  if (t->progress_re.re_nsub < 1)
    return commands_fail(L,
                         "the progress pattern \"%.128s\" has no group; put the percent in parentheses, e.g. "
                         "\"([0-9]+)%%\"",
                         s);
  t->progress = COMMANDS_PROGRESS_REGEX;
  return (t->progress_pattern = commands_strdup(L, s)) ? 0 : commands_oom(L);
}

/* An optional positive integer field, at most `max`; 0 when absent. */
static int load_limit(commands_load_t *L, const json_t *o, const char *key, int64_t max, const char *unit,
                      int64_t *out) {
  const json_t *v = json_object_get(o, key);
  *out = 0;
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
    return commands_fail(L, "\"%s\" must be an integer from 1 to %" PRId64 " (%s); fix it or drop it for none", key,
                         max, unit);
  *out = (int64_t)json_integer_value(v);
  return 0;
}

static int load_task(commands_load_t *L, commands_task_t *t, const json_t *o) {
  if (!json_is_object(o))
    return commands_fail(L, "a task must be an object with \"name\" and \"argv\"; fix it");
  const json_t *name = json_object_get(o, "name");
  if (!json_is_string(name) || !task_name_ok(json_string_value(name)))
    return commands_fail(L, "\"name\" must be 1 to 63 of a-z 0-9 . _ - starting with a letter or digit (e.g. "
                            "\"video.transcode\"); fix it");
  if (!(t->def.name = commands_strdup(L, json_string_value(name))))
    return commands_oom(L);
  L->task = t->def.name;
  for (size_t i = 0; i < L->index; i++)
    if (strcmp(L->c->tasks[i].def.name, t->def.name) == 0)
      return commands_fail(L, "the name is taken by tasks[%zu] too; give each task its own name", i);
  if (tasks_find_builtin(t->def.name))
    return commands_fail(L, "the name is taken by a built-in task; pick another (e.g. \"cmd.%s\")", t->def.name);
  int rc = commands_known_keys(L, o, "the task", task_keys);
  if (rc != 0)
    return rc;
  const json_t *desc = json_object_get(o, "description");
  const json_t *argv = json_object_get(o, "argv");
  if (desc && !json_is_string(desc))
    return commands_fail(L, "\"description\" must be a string; fix it");
  if (!argv)
    return commands_fail(L, "it has no \"argv\"; add the program and its arguments, e.g. [\"ffmpeg\", \"-i\", "
                            "\"{input}\", ...]");
  char fallback[320];
  const json_t *a0 = json_array_get(argv, 0);
  snprintf(fallback, sizeof fallback, "Runs %.200s (a command task).", json_is_string(a0) ? json_string_value(a0) : "");
  if (!(t->def.description = commands_strdup(L, desc ? json_string_value(desc) : fallback)))
    return commands_oom(L);
  int64_t mem, cpu;
  if ((rc = load_input(L, t, o)) != 0 || (rc = commands_params_load(L, t, json_object_get(o, "params"))) != 0 ||
      (rc = commands_argv_load(L, t, argv)) != 0 || (rc = load_progress(L, t, json_object_get(o, "progress"))) != 0 ||
      (rc = load_limit(L, o, "timeoutMs", COMMANDS_TIMEOUT_MAX_MS, "milliseconds", &t->timeout_ms)) != 0 ||
      (rc = load_limit(L, o, "memoryMB", INT64_C(1) << 20, "MiB of address space", &mem)) != 0 ||
      (rc = load_limit(L, o, "cpuSeconds", INT64_C(86400), "seconds of CPU time", &cpu)) != 0)
    return rc;
  t->memory_mb = (uint64_t)mem;
  t->cpu_seconds = (uint64_t)cpu;
  t->def.files = t->noutputs > 0;
  return 0;
}

/* ---- the file ---- */

static bool env_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
    return false;
  return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

static int load_env(commands_load_t *L, const json_t *env) {
  size_t n = json_array_size(env);
  if (env && (!json_is_array(env) || n > COMMANDS_MAX_ENV))
    return commands_fail(L, "\"env\" must be a list of at most %d variable names, e.g. [\"PATH\", \"LANG\"]",
                         COMMANDS_MAX_ENV);
  const char **names = commands_alloc(L, (n + 1) * sizeof *names);
  if (!names)
    return commands_oom(L);
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(env, i);
    if (!json_is_string(v) || !env_name_ok(json_string_value(v)))
      return commands_fail(L,
                           "env[%zu] must be a variable's name (letters, digits, '_', not starting with a digit); "
                           "fix it",
                           i);
    for (size_t k = 0; k < i; k++)
      if (strcmp(names[k], json_string_value(v)) == 0)
        return commands_fail(L, "env[%zu] \"%s\" is listed twice; list each name once", i, names[k]);
    if (!(names[i] = commands_strdup(L, json_string_value(v))))
      return commands_oom(L);
  }
  L->c->env = names;
  L->c->nenv = n;
  return 0;
}

static int load_root(commands_load_t *L, const json_t *root) {
  static const char *const root_keys[] = {"env", "tasks", NULL};
  if (!json_is_object(root))
    return commands_fail(L, "the file must hold a JSON object {\"env\": [...], \"tasks\": [...]}; fix it");
  int rc = commands_known_keys(L, root, "the file", root_keys);
  if (rc != 0 || (rc = load_env(L, json_object_get(root, "env"))) != 0)
    return rc;
  const json_t *tasks = json_object_get(root, "tasks");
  size_t n = json_array_size(tasks);
  if (!json_is_array(tasks) || n == 0 || n > COMMANDS_MAX_TASKS)
    return commands_fail(L, "\"tasks\" must be a list of 1 to %d tasks; add one or drop --commands",
                         COMMANDS_MAX_TASKS);
  if (!(L->c->tasks = commands_alloc(L, n * sizeof *L->c->tasks)))
    return commands_oom(L);
  for (size_t i = 0; i < n; i++) {
    L->index = i;
    L->task = NULL;
    L->c->n = i + 1; /* what commands_free must walk (regexes, defaults), even on failure */
    if ((rc = load_task(L, &L->c->tasks[i], json_array_get(tasks, i))) != 0)
      return rc;
  }
  return 0;
}

int commands_load(const char *path, commands_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  commands_load_t L = {.c = out, .index = SIZE_MAX, .err = err, .errlen = errlen};
  out->path = path; /* for messages; replaced by the owned copy below */
  json_error_t jerr;
  struct stat st;
  json_t *root = NULL;
  int rc;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    rc = commands_fail(&L, "not a regular file; check the --commands path");
  } else if (!(root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr))) {
    if (json_error_code(&jerr) == json_error_cannot_open_file)
      rc = commands_fail(&L, "cannot read the file (%s); check the --commands path", strerror(errno));
    else
      rc = commands_fail(&L, "line %d, column %d: %s; fix the JSON", jerr.line, jerr.column, jerr.text);
  } else if (!(out->path = commands_strdup(&L, path))) {
    out->path = path;
    rc = commands_oom(&L);
  } else {
    rc = load_root(&L, root);
  }
  json_decref(root);
  if (rc != 0)
    commands_free(out);
  return rc;
}

void commands_free(commands_t *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->n; i++) {
    if (c->tasks[i]._re_compiled)
      regfree(&c->tasks[i].progress_re);
    json_decref(c->tasks[i]._defaults);
  }
  for (commands_mem_t *m = c->_mem, *next; m; m = next) {
    next = m->next;
    free(m);
  }
  memset(c, 0, sizeof *c);
}

const commands_task_t *commands_find(const commands_t *c, const char *name) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->tasks[i].def.name, name) == 0)
      return &c->tasks[i];
  return NULL;
}
