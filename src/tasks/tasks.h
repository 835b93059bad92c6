/* tasks: the built-in task kinds (one file each) and the catalog the server
 * serves them from, plus validation of a job's parameters against a kind's
 * spec.
 *
 * Threads: the catalog is built on the loop thread at start-up and read-only
 * afterwards, so any thread may read it. Validation is pure.
 * Adding a task: write src/tasks/<name>.c defining `task_<name>` and add it to
 * tasks_builtin[] in tasks.c. Kinds from elsewhere (plug-ins: tasks/plugin.h)
 * join the catalog after the built-ins, as tasks_options_t.extra. */
#ifndef OFFLOAD_TASKS_TASKS_H
#define OFFLOAD_TASKS_TASKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "offload/task.h"

extern const offload_task_def_t task_report, task_fibonacci, task_primes, task_spin, task_crash;
extern const offload_task_def_t task_password_hash, task_password_verify, task_pdf, task_stats, task_image;

/* At exit, once no worker runs (pools freed): frees what the tasks'
 * libraries keep for the process's life (fontconfig's caches). */
void tasks_libraries_fini(void);
void task_pdf_fini(void);
void task_image_fini(void);

/* NULL-terminated table of every built-in kind, test-only ones included. */
extern const offload_task_def_t *const tasks_builtin[];

/* The built-in kind of this name (test-only ones included), or NULL. What a
 * worker process runs: the server validated the params already. */
const offload_task_def_t *tasks_find_builtin(const char *name);

/* A server's set of kinds: copies of the built-in defs, then of the extra
 * ones, whose limits the configuration may tighten (e.g. --max-iterations
 * for report), each with its isolation resolved to THREAD or PROCESS. */
typedef struct tasks_catalog {
  offload_task_def_t *defs;
  offload_param_spec_t **specs; /* owned copies, one array per def */
  size_t n;
} tasks_catalog_t;

typedef struct tasks_options {
  offload_isolation_t isolation; /* THREAD or PROCESS: --isolation */
  bool test_tasks;               /* --enable-test-tasks */
  /* Kinds beyond the built-ins (plug-ins' now; command tasks' later), in
   * the order GET /tasks lists them; borrowed, and they must outlive the
   * catalog (its copies keep their strings and params). Their sources
   * checked them (plugin_check_def) and their names against each other's,
   * to say which files clash. */
  const offload_task_def_t *const *extra;
  size_t nextra;
  /* Kinds after those that always run on worker threads, whatever
   * --isolation says: command tasks, whose thread only waits on the
   * program it started (the program is the isolated process). Borrowed. */
  const offload_task_def_t *const *pinned;
  size_t npinned;
} tasks_options_t;

/* Returns 0, OFF_ENOMEM, or OFF_EINVAL when two kinds share a name.
 * tasks_catalog_init: thread isolation, no test tasks, no extra kinds. */
int tasks_catalog_init(tasks_catalog_t *c);
int tasks_catalog_init_with(tasks_catalog_t *c, const tasks_options_t *o);
/* True when some kind runs in worker processes / threads. */
bool tasks_catalog_uses(const tasks_catalog_t *c, offload_isolation_t iso);
const char *tasks_isolation_name(offload_isolation_t iso);
void tasks_catalog_fini(tasks_catalog_t *c);
const offload_task_def_t *tasks_catalog_find(const tasks_catalog_t *c, const char *name);
/* Sets the max of one parameter; returns 0 or OFF_ENOENT. */
int tasks_catalog_set_max(tasks_catalog_t *c, const char *task, const char *param, int64_t max);
/* "a, b, c" of every kind's name, written into buf (always terminated). */
void tasks_catalog_names(const tasks_catalog_t *c, char *buf, size_t size);

/* What is wrong with one parameter, for a 400 reply. */
typedef enum { PARAM_OK = 0, PARAM_MISSING, PARAM_INVALID, PARAM_UNKNOWN } param_problem_t;

typedef struct param_error {
  param_problem_t problem;
  char param[64];    /* the name at fault */
  char message[256]; /* a sentence for a person */
} param_error_t;

/* Checks `params` (a JSON object, borrowed) against `def`: every required
 * parameter present, every value of the right type and range, no unknown name.
 * Returns true when valid; otherwise fills *err (the first fault found). */
bool tasks_validate(const offload_task_def_t *def, const json_t *params, param_error_t *err);

/* Strict decimal integer: an optional '-' then 1..19 digits, nothing else
 * (no '+', spaces, exponent or fraction). Returns true and sets *out when the
 * text is such an integer that fits int64. */
bool tasks_parse_int(const char *s, size_t len, int64_t *out);

/* Checks one integer against a spec's range; fills *err (with `param` as the
 * name) when outside it. */
bool tasks_check_range(const offload_param_spec_t *spec, int64_t v, const char *param, param_error_t *err);
/* The same for a number (NUMBER, NUMBER_LIST items): finite, in range. */
bool tasks_check_real(const offload_param_spec_t *spec, double x, const char *param, param_error_t *err);
/* A spec's effective limits (its zero fields read as the defaults). */
size_t tasks_max_len(const offload_param_spec_t *spec);
size_t tasks_max_items(const offload_param_spec_t *spec);

/* String patterns (offload_param_spec_t.pattern; tasks/pattern.c): a POSIX
 * extended regex that the whole value must match, as if written ^(...)$.
 * tasks_pattern_check: 0 when `pattern` compiles, else OFF_EINVAL with the
 * reason (regerror's text, or that back-references are refused) in err, or
 * OFF_ENOMEM. tasks_pattern_match: 1 when s[0..len) (NUL-terminated at
 * s[len]) matches as a whole, 0 when not (a NUL byte inside never does),
 * or OFF_EINVAL / OFF_ENOMEM. Each pattern is compiled on its first match
 * and kept until tasks_patterns_fini (at exit, from tasks_libraries_fini).
 * Any thread. */
int tasks_pattern_check(const char *pattern, char *err, size_t errlen);
int tasks_pattern_match(const char *pattern, const char *s, size_t len);
void tasks_patterns_fini(void);

/* A copy of `params` (borrowed) with every secret parameter of `def`
 * replaced by "[redacted]": what is shown and stored. NULL when out of
 * memory. has_secret: whether def has secret parameters at all. */
json_t *tasks_redact(const offload_task_def_t *def, const json_t *params);
bool tasks_has_secret(const offload_task_def_t *def);

#endif
