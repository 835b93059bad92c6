/* tasks/plugin: see plugin.h. */
#include "tasks/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/tasks.h"
#include "util/err.h"

/* Where a message sends the reader. */
#define DOC "docs/PLUGINS.md"

static void say(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
}

/* ---- checking a definition ---- */

static bool in_set(char c, const char *set) { return c && strchr(set, c); }

#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGIT "0123456789"

bool plugin_name_ok(const char *name) {
  if (!name || !in_set(name[0], LOWER DIGIT))
    return false;
  size_t n = strlen(name);
  return n <= OFFLOAD_TASK_NAME_MAX && strspn(name, LOWER DIGIT "._-") == n;
}

/* Parameter names travel in query strings and JSON keys, and are shown in
 * messages as "params.<name>": short, plain, starting with a letter. */
#define PARAM_NAME_MAX 48

static bool param_name_ok(const char *name) {
  if (!name || !in_set(name[0], LOWER UPPER))
    return false;
  size_t n = strlen(name);
  return n <= PARAM_NAME_MAX && strspn(name, LOWER UPPER DIGIT "_-") == n;
}

/* The default (JSON text) must be a value the parameter accepts. */
static bool check_default(const offload_task_def_t *def, const offload_param_spec_t *p, char *why, size_t size) {
  json_t *v = json_loads(p->dflt, JSON_DECODE_ANY, NULL);
  if (!v) {
    say(why, size, "parameter %s: its default %.60s is not JSON text (a string default is written \"\\\"text\\\"\")",
        p->name, p->dflt);
    return false;
  }
  json_t *obj = json_object();
  if (!obj || json_object_set_new(obj, p->name, v) != 0) {
    json_decref(obj);
    say(why, size, "out of memory");
    return false;
  }
  offload_task_def_t one = {.name = def->name, .params = p, .nparams = 1};
  param_error_t perr;
  bool ok = tasks_validate(&one, obj, &perr);
  if (!ok)
    say(why, size, "parameter %s: its default %.60s is not a value it accepts (%s)", p->name, p->dflt, perr.message);
  json_decref(obj);
  return ok;
}

static bool check_param(const offload_task_def_t *def, size_t i, char *why, size_t size) {
  const offload_param_spec_t *p = &def->params[i];
  if (!param_name_ok(p->name)) {
    say(why, size, "parameter #%zu: its name \"%.60s\" is not 1..%d of [A-Za-z0-9_-] starting with a letter", i,
        p->name ? p->name : "(null)", PARAM_NAME_MAX);
    return false;
  }
  if (strcmp(p->name, "timeoutMs") == 0 || strcmp(p->name, "retries") == 0) {
    say(why, size, "parameter %s: the name is taken by the job option of the same name", p->name);
    return false;
  }
  for (size_t k = 0; k < i; k++)
    if (strcmp(def->params[k].name, p->name) == 0) {
      say(why, size, "parameter %s is declared twice", p->name);
      return false;
    }
  switch (p->type) {
  case OFFLOAD_PARAM_INTEGER:
  case OFFLOAD_PARAM_INT_LIST:
    if (p->min > p->max) {
      say(why, size, "parameter %s: min > max", p->name);
      return false;
    }
    break;
  case OFFLOAD_PARAM_NUMBER:
  case OFFLOAD_PARAM_NUMBER_LIST:
    if (!isfinite(p->min_real) || !isfinite(p->max_real) || p->min_real > p->max_real) {
      say(why, size, "parameter %s: min_real and max_real must be finite, min_real <= max_real", p->name);
      return false;
    }
    break;
  case OFFLOAD_PARAM_STRING:
    if (p->choices && !p->choices[0]) {
      say(why, size, "parameter %s: choices is empty (NULL means any text)", p->name);
      return false;
    }
    if (p->format != OFFLOAD_FORMAT_ANY && p->format != OFFLOAD_FORMAT_HEX) {
      say(why, size, "parameter %s: unknown format %d", p->name, (int)p->format);
      return false;
    }
    if (p->pattern) {
      regex_t re;
      int rc = regcomp(&re, p->pattern, REG_EXTENDED | REG_NOSUB);
      if (rc != 0) {
        char msg[128];
        regerror(rc, &re, msg, sizeof msg);
        say(why, size, "parameter %s: pattern \"%.64s\" is not a POSIX extended regex (%s)", p->name, p->pattern,
            msg);
        return false;
      }
      regfree(&re);
    }
    break;
  case OFFLOAD_PARAM_BOOLEAN: break;
  default: say(why, size, "parameter %s: unknown type %d", p->name, (int)p->type); return false;
  }
  if ((p->type == OFFLOAD_PARAM_INT_LIST || p->type == OFFLOAD_PARAM_NUMBER_LIST) &&
      p->min_items > tasks_max_items(p)) {
    say(why, size, "parameter %s: min_items > max_items", p->name);
    return false;
  }
  return !p->dflt || check_default(def, p, why, size);
}

bool plugin_check_def(const offload_task_def_t *def, char *why, size_t size) {
  if (!plugin_name_ok(def->name)) {
    say(why, size, "the name is not 1..%d of [a-z0-9._-] starting with a letter or a digit", OFFLOAD_TASK_NAME_MAX);
    return false;
  }
  if (!def->run) {
    say(why, size, "run is NULL");
    return false;
  }
  if (!def->description) {
    say(why, size, "description is NULL (GET /tasks shows one sentence)");
    return false;
  }
  if ((unsigned)def->isolation > OFFLOAD_ISOLATION_PROCESS) {
    say(why, size, "unknown isolation %d", (int)def->isolation);
    return false;
  }
  if ((unsigned)def->input > OFFLOAD_INPUT_REQUIRED) {
    say(why, size, "unknown input %d", (int)def->input);
    return false;
  }
  if (def->timeout_ms < 0) {
    say(why, size, "timeout_ms is negative (0 means no limit of the task's own)");
    return false;
  }
  if (def->nparams > PLUGIN_MAX_PARAMS || (def->nparams && !def->params)) {
    say(why, size, "params must hold nparams (at most %d) specs", PLUGIN_MAX_PARAMS);
    return false;
  }
  for (size_t i = 0; i < def->nparams; i++)
    if (!check_param(def, i, why, size))
      return false;
  return true;
}

/* ---- the set ---- */

size_t plugins_count(const plugin_set_t *set) {
  size_t n = 0;
  for (size_t i = 0; i < set->n; i++)
    n += set->v[i].ntasks;
  return n;
}

const offload_task_def_t *plugins_task(const plugin_set_t *set, size_t i) {
  for (size_t k = 0; k < set->n; k++) {
    if (i < set->v[k].ntasks)
      return &set->v[k].tasks[i];
    i -= set->v[k].ntasks;
  }
  return NULL;
}

const offload_task_def_t *plugins_find(const plugin_set_t *set, const char *name, const plugin_t **from) {
  for (size_t k = 0; k < set->n; k++)
    for (size_t i = 0; i < set->v[k].ntasks; i++)
      if (strcmp(set->v[k].tasks[i].name, name) == 0) {
        if (from)
          *from = &set->v[k];
        return &set->v[k].tasks[i];
      }
  return NULL;
}

void plugins_fini(plugin_set_t *set) {
  for (size_t i = 0; i < set->n; i++)
    free(set->v[i].path);
  memset(set, 0, sizeof *set);
}

/* ---- loading ---- */

/* Its tasks, checked, against the built-ins and the plug-ins before it. */
static int check_tasks(const plugin_set_t *set, const plugin_t *pl, const char *given, char *err, size_t errsize) {
  if (!pl->tasks || pl->ntasks == 0) {
    say(err, errsize, "plug-in %s exports no tasks: list them in OFFLOAD_PLUGIN(...) (" DOC ")", given);
    return OFF_EINVAL;
  }
  for (size_t i = 0; i < pl->ntasks; i++) {
    const offload_task_def_t *d = &pl->tasks[i];
    char why[384];
    if (!plugin_check_def(d, why, sizeof why)) {
      say(err, errsize, "plug-in %s: task #%zu \"%.64s\": %s; fix its offload_task_def_t and rebuild it (" DOC ")",
          given, i, d->name ? d->name : "(null)", why);
      return OFF_EINVAL;
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(pl->tasks[k].name, d->name) == 0) {
        say(err, errsize, "plug-in %s declares task \"%s\" twice; rename one of them", given, d->name);
        return OFF_EINVAL;
      }
    if (tasks_find_builtin(d->name)) {
      say(err, errsize, "plug-in %s: task \"%s\" clashes with the built-in task %s; rename it in the plug-in", given,
          d->name, d->name);
      return OFF_EINVAL;
    }
    const plugin_t *other;
    if (plugins_find(set, d->name, &other)) {
      say(err, errsize, "plug-in %s: task \"%s\" clashes with task %s of plug-in %s; rename one of them", given,
          d->name, d->name, other->path);
      return OFF_EINVAL;
    }
  }
  return 0;
}

static int load_one(plugin_set_t *set, const char *given, char *err, size_t errsize) {
  char real[PATH_MAX];
  if (!realpath(given, real)) {
    say(err, errsize, "plug-in %s: %s; give --plugin the path of a shared object (" DOC ")", given, strerror(errno));
    return OFF_ENOENT;
  }
  for (size_t i = 0; i < set->n; i++)
    if (strcmp(set->v[i].path, real) == 0) {
      say(err, errsize, "plug-in %s is given twice; pass each --plugin once", given);
      return OFF_EINVAL;
    }
  /* RTLD_NOW: a symbol the server does not export fails here, not mid-job.
   * RTLD_LOCAL: two plug-ins' symbols never meet. */
  dlerror();
  void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    say(err, errsize,
        "plug-in %s cannot be loaded: %s; build it as a shared object against include/offload/task.h alone, "
        "calling only its functions (" DOC ")",
        given, e ? e : "unknown error");
    return OFF_EINVAL;
  }
  /* From here on the handle stays open even on failure (see plugin.h). */
  const uint32_t *abi = dlsym(h, "offload_plugin_abi");
  if (!abi) {
    say(err, errsize,
        "plug-in %s has no offload_plugin_abi symbol: was it built against include/offload/task.h? export it "
        "with OFFLOAD_PLUGIN(...) (" DOC ")",
        given);
    return OFF_EINVAL;
  }
  if (*abi != OFFLOAD_PLUGIN_ABI) {
    say(err, errsize,
        "plug-in %s has the wrong ABI version: rebuild it against this server's include/offload/task.h "
        "(ABI %d, the plug-in has %u)",
        given, OFFLOAD_PLUGIN_ABI, (unsigned)*abi);
    return OFF_EINVAL;
  }
  const offload_plugin_tasks_t *pt = dlsym(h, "offload_plugin_tasks");
  if (!pt) {
    say(err, errsize,
        "plug-in %s has no offload_plugin_tasks symbol: export its tasks with OFFLOAD_PLUGIN(...) (" DOC ")", given);
    return OFF_EINVAL;
  }
  plugin_t pl = {.handle = h, .tasks = pt->tasks, .ntasks = pt->ntasks};
  int rc = check_tasks(set, &pl, given, err, errsize);
  if (rc != 0)
    return rc;
  pl.path = strdup(real);
  if (!pl.path) {
    say(err, errsize, "plug-in %s: out of memory", given);
    return OFF_ENOMEM;
  }
  set->v[set->n++] = pl;
  return 0;
}

int plugins_load(plugin_set_t *set, const char *const *paths, size_t n, char *err, size_t errsize) {
  memset(set, 0, sizeof *set);
  if (n > PLUGIN_MAX) {
    say(err, errsize, "at most %d --plugin flags; got %zu", PLUGIN_MAX, n);
    return OFF_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = load_one(set, paths[i], err, errsize);
    if (rc != 0) {
      plugins_fini(set);
      return rc;
    }
  }
  return 0;
}
