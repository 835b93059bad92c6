/* tasks/plugin: task kinds from shared objects (`--plugin FILE.so`), the
 * plug-in ABI of include/offload/task.h (docs/PLUGINS.md).
 *
 * Loading a plug-in: its path resolved (realpath), dlopen(RTLD_NOW |
 * RTLD_LOCAL), then offload_plugin_abi (must equal OFFLOAD_PLUGIN_ABI),
 * then offload_plugin_tasks; every task definition is checked
 * (plugin_check_def) and its name must not clash with a built-in kind or
 * with a task of an earlier plug-in. The first fault stops the load with a
 * message naming the file (and the task) and what to do about it.
 *
 * Ownership: a set owns its paths. The definitions stay in the plug-ins'
 * memory, which is never unmapped: a plug-in is never dlclose'd, because a
 * stuck worker thread may still run its code when the server exits (see
 * docs/ARCHITECTURE.md), and a plug-in's own allocations stay reachable for
 * the leak checker. plugins_fini frees the set, not the code.
 *
 * Threads: loaded on the main thread before any worker starts (the server's
 * or a worker process's), read-only afterwards; any thread may read it. */
#ifndef OFFLOAD_TASKS_PLUGIN_H
#define OFFLOAD_TASKS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "offload/task.h"

/* Most --plugin flags a server takes. */
#define PLUGIN_MAX 32
/* Most parameters a task may declare. */
#define PLUGIN_MAX_PARAMS 64

typedef struct plugin {
  char *path;                      /* resolved, owned */
  void *handle;                    /* the dlopen handle; never closed */
  const offload_task_def_t *tasks; /* the plug-in's own array */
  size_t ntasks;
} plugin_t;

typedef struct plugin_set {
  plugin_t v[PLUGIN_MAX];
  size_t n;
} plugin_set_t;

/* Loads `paths[0..n)` into `set` (zeroed here first), in order. Returns 0,
 * or a negative OFF_E* code with a sentence in err (naming the file and the
 * fix) and the set emptied. n > PLUGIN_MAX is OFF_EINVAL. */
int plugins_load(plugin_set_t *set, const char *const *paths, size_t n, char *err, size_t errsize);
/* Frees the set's memory (the plug-ins stay loaded); zeroes it. */
void plugins_fini(plugin_set_t *set);

/* The task of this name in some loaded plug-in (test-only ones included),
 * or NULL; *from (when not NULL) is its plug-in. */
const offload_task_def_t *plugins_find(const plugin_set_t *set, const char *name, const plugin_t **from);
/* How many tasks the set holds, and one of them by index (plug-in order,
 * then each plug-in's array order). */
size_t plugins_count(const plugin_set_t *set);
const offload_task_def_t *plugins_task(const plugin_set_t *set, size_t i);

/* True when `name` is a valid task name (see OFFLOAD_TASK_NAME_MAX). */
bool plugin_name_ok(const char *name);
/* Checks one task definition (any source's: built-in, plug-in, or one made
 * at run time): its name, run, description, isolation, input, and each
 * parameter (name, type, ranges, choices, a default that is valid JSON of
 * an accepted value, no duplicates). True when sound; else false with the
 * first fault, a phrase, in why. */
bool plugin_check_def(const offload_task_def_t *def, char *why, size_t size);

#endif
