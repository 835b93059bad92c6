/* testplug: plug-ins for the loader's tests (src/tasks/plugin_test.c,
 * tests/e2e/test_plugins.py), one source built into one shared object per
 * variant (CMakeLists.txt: -DTESTPLUG_<VARIANT>):
 *
 *   GOOD      plugtest.echo (thread: echoes `word` and `times`), plugtest.where
 *             (declares PROCESS: answers its pid, or crashes with crash=true)
 *   OTHER     other.task: a second, compatible plug-in
 *   NOABI     no offload_plugin_abi symbol
 *   NOTASKS   offload_plugin_abi but no offload_plugin_tasks
 *   BADABI    offload_plugin_abi = OFFLOAD_PLUGIN_ABI + 41
 *   CLASH     a task named "stats", like a built-in
 *   DUP       a task named "plugtest.echo", like GOOD's
 *   BADDEF    a task whose run is NULL
 *   UNDEF     calls a function the server does not export
 *
 * Built against include/offload/task.h alone, like any plug-in. */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "offload/task.h"

/* Each variant uses some of these. */
#define UNUSED __attribute__((unused))

UNUSED static void echo_run(offload_task_t *t) {
  const char *word = offload_task_param_str(t, "word", "hi");
  int64_t times = offload_task_param_int(t, "times", 1);
  char out[512];
  snprintf(out, sizeof out, "{\"echo\":\"%s\",\"times\":%lld}", word, (long long)times);
  offload_task_result_json(t, out);
}

UNUSED static void where_run(offload_task_t *t) {
  if (offload_task_param_bool(t, "crash", false)) {
    volatile char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
      p[0] = 1;
    raise(SIGSEGV);
  }
  char out[64];
  snprintf(out, sizeof out, "{\"pid\":%ld,\"ppid\":%ld}", (long)getpid(), (long)getppid());
  offload_task_result_json(t, out);
}

UNUSED static const char *const words[] = {"hi", "ho", NULL};

UNUSED static const offload_param_spec_t echo_params[] = {
    {.name = "word", .type = OFFLOAD_PARAM_STRING, .choices = words, .dflt = "\"hi\""},
    {.name = "times", .type = OFFLOAD_PARAM_INTEGER, .min = 1, .max = 9, .dflt = "1", .description = "a count"},
};

UNUSED static const offload_param_spec_t where_params[] = {
    {.name = "crash", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "false"},
};

#if defined(TESTPLUG_UNDEF)
void offload_task_not_exported(offload_task_t *t);
static void undef_run(offload_task_t *t) { offload_task_not_exported(t); }
#endif

static const offload_task_def_t tasks[] = {
#if defined(TESTPLUG_GOOD)
    {.name = "plugtest.echo",
     .description = "Echoes its params.",
     .run = echo_run,
     .params = echo_params,
     .nparams = 2},
    {.name = "plugtest.where",
     .description = "Answers the pid it ran in.",
     .run = where_run,
     .params = where_params,
     .nparams = 1,
     .isolation = OFFLOAD_ISOLATION_PROCESS},
#elif defined(TESTPLUG_OTHER) || defined(TESTPLUG_NOABI) || defined(TESTPLUG_NOTASKS) || defined(TESTPLUG_BADABI)
    {.name = "other.task", .description = "Another plug-in's task.", .run = where_run},
#elif defined(TESTPLUG_CLASH)
    {.name = "stats", .description = "Not the built-in stats.", .run = echo_run},
#elif defined(TESTPLUG_DUP)
    {.name = "plugtest.echo", .description = "A second plugtest.echo.", .run = echo_run},
#elif defined(TESTPLUG_BADDEF)
    {.name = "plugtest.fine", .description = "A sound task.", .run = echo_run},
    {.name = "plugtest.norun", .description = "A task without code."},
#elif defined(TESTPLUG_UNDEF)
    {.name = "plugtest.undef", .description = "Calls what is not there.", .run = undef_run},
#else
#error "build with one -DTESTPLUG_<VARIANT>"
#endif
};

#if defined(TESTPLUG_NOABI)
__attribute__((visibility("default"))) const offload_plugin_tasks_t offload_plugin_tasks = {tasks, 1};
#elif defined(TESTPLUG_NOTASKS)
__attribute__((visibility("default"))) const uint32_t offload_plugin_abi = OFFLOAD_PLUGIN_ABI;
const offload_task_def_t *testplug_tasks(void) { return tasks; } /* keeps `tasks` used */
#elif defined(TESTPLUG_BADABI)
__attribute__((visibility("default"))) const uint32_t offload_plugin_abi = OFFLOAD_PLUGIN_ABI + 41;
__attribute__((visibility("default"))) const offload_plugin_tasks_t offload_plugin_tasks = {tasks, 1};
#else
OFFLOAD_PLUGIN(tasks);
#endif
