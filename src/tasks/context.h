/* tasks/context: the implementation of offload/task.h, the context a task
 * runs in, over words that live elsewhere (the work item's control slot, its
 * params copy and result slot: see pool/item.h). This layer knows nothing of
 * pools, threads or processes.
 *
 * Threads: a context is built by whoever runs the task, on that thread, and
 * lives only for the run. The run writes the result slot (only it does) and
 * raises *progress; *cancel may be set by another thread at any time; the run
 * sets *timed_out once deadline_ns has passed. How the result writes reach a
 * reader on another thread is the runner's business (pool/item.h).
 *
 * Ownership: every pointer in offload_task is borrowed for the run. A
 * task_result_t owns its err_message (freed by task_result_fini). */
#ifndef OFFLOAD_TASKS_CONTEXT_H
#define OFFLOAD_TASKS_CONTEXT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "offload/task.h"

typedef enum { TASK_RES_NULL = 0, TASK_RES_INT, TASK_RES_REAL, TASK_RES_JSON } task_result_kind_t;

/* The largest JSON result (offload_task_result_json), in bytes of text. */
#define TASK_RESULT_JSON_MAX (48 * 1024)

/* One output file of a run: <files_root>/<job id>/<name> (store/files.h). */
typedef struct task_file {
  char name[129];
  char content_type[128];
  int64_t bytes;
  int fd; /* the run's, open while it runs (+1: 0 = none), closed by task_files_close */
} task_file_t;

/* What a run leaves: a value, or a failure. Zeroed = result null, not failed. */
typedef struct task_result {
  task_result_kind_t kind;
  int64_t integer;
  double real;
  bool failed; /* the task called offload_task_fail */
  char err_code[48];
  char *err_message; /* owned; NULL when failed without a message */
  char *json;        /* owned: TASK_RES_JSON's text (valid JSON, at most TASK_RESULT_JSON_MAX bytes) */
  /* Output files, in the order opened (their bytes once the run ended). */
  task_file_t files[OFFLOAD_MAX_FILES];
  size_t nfiles;
} task_result_t;

struct offload_task {
  const json_t *params;     /* validated, read-only */
  _Atomic double *progress; /* 0..1, only ever raised by the run */
  _Atomic bool *cancel;     /* set by the controller */
  _Atomic bool *timed_out;  /* set by the run (offload_task_canceled) */
  uint64_t deadline_ns;     /* monotonic; 0 = none */
  task_result_t *result;    /* written by the run only */
  /* Where output files go: <files_root>/<job_id>/ (NULL root: a task that
   * opens one fails with ENOTSUP). */
  const char *files_root;
  const char *job_id;
  /* The runner's fan-out (pool_parallel); NULL: chunks run one by one here. */
  size_t (*parallel)(size_t n, void (*fn)(void *ctx, size_t i), void *ctx, bool (*stop)(void *), void *stop_ctx);
  const offload_task_def_t *def; /* the kind being run (set by task_run) */
  /* The input, mapped by the runner (NULL = none). */
  const void *input;
  size_t input_len;
  const char *input_type;
};

/* Maps `fd` (an input: a memfd or the stored file) read-only for a run;
 * fills t's input fields. 0, or -1 with errno. task_input_unmap undoes it. */
int task_input_map(offload_task_t *t, int fd, size_t len, const char *type);
void task_input_unmap(offload_task_t *t);

/* After a run: the sizes of its output files, and their descriptors
 * closed. The runner calls it on the thread (or in the process) that ran. */
void task_files_close(task_result_t *r);
/* Lists a file the run's program already wrote in the job's directory as
 * output `name` (a command task's {output:NAME}): it must be a regular file
 * (a symlink is refused). 0, or -1 with errno (ENOENT: not written;
 * ELOOP / EINVAL: not a regular file; EMFILE, ENOTSUP as for
 * offload_task_file_open). */
int task_file_adopt(offload_task_t *t, const char *name, const char *content_type);
/* Before a run: removes what an earlier run of the same job left (its
 * outputs; the stored input, a dotfile, stays). */
void task_files_clear(const offload_task_t *t);

/* Runs def->run on `t`, unless `t` is already canceled or past its deadline. */
void task_run(offload_task_t *t, const offload_task_def_t *def);

/* The result as a new JSON value (caller owns it); null for TASK_RES_NULL. */
json_t *task_result_json(const task_result_t *r);
/* Frees what `r` owns; `r` reads as zeroed afterwards. */
void task_result_fini(task_result_t *r);

#endif
