/* commands_int: what the loader's files share (commands.c reads the file
 * and the tasks; params.c turns a task's "params" into specs; argv.c reads
 * its "argv" and finds the program).
 * Not for other modules: they include commands.h. */
#ifndef OFFLOAD_COMMANDS_INT_H
#define OFFLOAD_COMMANDS_INT_H

#include "commands/commands.h"

/* One allocation of a load; all are freed together by commands_free. */
struct commands_mem {
  commands_mem_t *next;
  max_align_t data[];
};

/* The state of one load: where errors go and what they name. */
typedef struct commands_load {
  commands_t *c;
  const char *task; /* the task being read, for messages; NULL before its name is known */
  size_t index;     /* its place in "tasks" */
  char *err;
  size_t errlen;
} commands_load_t;

/* Fills the error as "<file>: task \"<name>\": <sentence>" (or "tasks[i]"
 * before the name is known; the file alone outside tasks) and returns
 * OFF_EINVAL. The sentence ends with the fix. */
int commands_fail(commands_load_t *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fills "<file>: out of memory while loading" and returns OFF_ENOMEM. */
int commands_oom(commands_load_t *L);

/* Zeroed memory owned by the commands_t (FAULT_ALLOC may fail it); NULL
 * when out of memory. */
void *commands_alloc(commands_load_t *L, size_t size);
char *commands_strdup(commands_load_t *L, const char *s);
char *commands_strndup(commands_load_t *L, const char *s, size_t n);

/* Checks that object `o` has only keys from `known` (NULL-terminated);
 * `what` names it in the message ("task", "param \"crf\""). 0 or the
 * failure. */
int commands_known_keys(commands_load_t *L, const json_t *o, const char *what, const char *const *known);

/* params.c: reads t's "params" object (NULL: none) into t->def.params,
 * t->def.nparams and t->_defaults. 0 or the failure. */
int commands_params_load(commands_load_t *L, commands_task_t *t, const json_t *params);

/* argv.c: reads t's "argv" (its params already read): t->args, t->nargs,
 * t->outputs, t->noutputs and t->program; checks that {input} and
 * "input": true go together and that every param is used. */
int commands_argv_load(commands_load_t *L, commands_task_t *t, const json_t *argv);

#endif
