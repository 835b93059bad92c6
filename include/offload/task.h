/* offload/task.h: the API task code sees.
 *
 * A task is a pure function that runs on a worker thread:
 *     void my_task(offload_task_t *t);
 * It reads its (already validated) parameters, reports progress, checks for
 * cancellation, and sets a result or an error. It never sees libuv, HTTP or
 * the job store. Registering a task is one entry in src/tasks/tasks.c, or,
 * outside the tree, a plug-in: a shared object built against this header
 * alone that lists its tasks with OFFLOAD_PLUGIN (at the end; see
 * docs/PLUGINS.md).
 *
 * Threads: every function here is for the worker thread running `t`.
 * Ownership: `t` is borrowed for the duration of the run; strings passed in
 * are copied. */
#ifndef OFFLOAD_TASK_H
#define OFFLOAD_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct offload_task offload_task_t;
typedef void (*offload_task_fn)(offload_task_t *t);

typedef enum {
  OFFLOAD_PARAM_INTEGER = 1, /* a JSON integer in min..max */
  OFFLOAD_PARAM_BOOLEAN,
  OFFLOAD_PARAM_STRING,      /* one of `choices` (an enum), or any text of at most max_len bytes */
  OFFLOAD_PARAM_NUMBER,      /* a finite JSON number in min_real..max_real */
  OFFLOAD_PARAM_INT_LIST,    /* min_items..max_items integers, each in min..max: a JSON array, or "1,2,3" in a query string */
  OFFLOAD_PARAM_NUMBER_LIST, /* min_items..max_items finite numbers: a JSON array */
} offload_param_type_t;

/* What a string must look like, beyond its length. */
typedef enum {
  OFFLOAD_FORMAT_ANY = 0,
  OFFLOAD_FORMAT_HEX, /* an even number of hex digits (bytes written in hex) */
} offload_param_format_t;

/* One parameter. Zero means "the usual" for every field added after the
 * first four types (a spec written before keeps its meaning). */
typedef struct offload_param_spec {
  const char *name;
  offload_param_type_t type;
  bool required;
  int64_t min, max;           /* integers, and each item of an integer list: inclusive */
  const char *const *choices; /* strings: the allowed values, NULL-terminated; NULL = any text */
  bool test_only;             /* offered only when the server enables test tasks */
  size_t max_len;             /* strings without choices: most bytes (0 = 1024) */
  double min_real, max_real;  /* numbers: inclusive (both 0 = any finite number) */
  size_t min_items, max_items; /* lists (max_items 0 = 1024) */
  const char *dflt;           /* the default as JSON text, as GET /tasks shows it ("80", "\"webp\""); NULL = none */
  bool secret;                /* a secret (a password): shown and stored as "[redacted]", never logged */
  offload_param_format_t format; /* strings without choices */
  const char *description;    /* a phrase for GET /tasks; NULL = none */
  const char *pattern; /* strings without choices: a POSIX extended regex the whole value must match; NULL = any */
} offload_param_spec_t;

/* Where a task's jobs run. DEFAULT follows the server's --isolation; a task
 * that declares PROCESS (untrusted inputs, third-party code) always runs in
 * a worker process, whatever the flag says. */
typedef enum { OFFLOAD_ISOLATION_DEFAULT = 0, OFFLOAD_ISOLATION_THREAD, OFFLOAD_ISOLATION_PROCESS } offload_isolation_t;

/* Whether a task takes an input body (POST /jobs/<task>). */
typedef enum {
  OFFLOAD_INPUT_NONE = 0, /* params only (POST /jobs) */
  OFFLOAD_INPUT_OPTIONAL, /* an upload or params only */
  OFFLOAD_INPUT_REQUIRED, /* an upload always: POST /jobs/<task> */
} offload_input_t;

/* A task's name: 1..OFFLOAD_TASK_NAME_MAX of [a-z0-9._-], starting with a
 * letter or a digit ("stats", "video.transcode"). */
#define OFFLOAD_TASK_NAME_MAX 64

typedef struct offload_task_def {
  const char *name;        /* see OFFLOAD_TASK_NAME_MAX */
  const char *description; /* one sentence */
  offload_task_fn run;
  const offload_param_spec_t *params;
  size_t nparams;
  offload_isolation_t isolation;
  bool test_only; /* offered only when the server enables test tasks */
  bool files;     /* it writes output files: its jobs show "files" */
  offload_input_t input;
  const char *const *input_types; /* the media types it accepts (NULL-terminated); NULL = any */
  int64_t timeout_ms; /* the task's own time limit: a job's timeoutMs when it gives none, and the most it may
                         give; 0 = none (the server's --job-timeout-ms applies) */
} offload_task_def_t;

/* The value of parameter `name`; `dflt` when it is optional and absent.
 * A string stays valid for the run. */
int64_t offload_task_param_int(const offload_task_t *t, const char *name, int64_t dflt);
bool offload_task_param_bool(const offload_task_t *t, const char *name, bool dflt);
const char *offload_task_param_str(const offload_task_t *t, const char *name, const char *dflt);
/* A string's length in bytes too (it may hold NUL bytes: a password); 0 and
 * NULL when absent. */
const char *offload_task_param_strn(const offload_task_t *t, const char *name, size_t *len);
double offload_task_param_real(const offload_task_t *t, const char *name, double dflt);
/* A list's items, at most `max` of them, into `out`; returns how many the
 * list has (0 when absent). */
size_t offload_task_param_ints(const offload_task_t *t, const char *name, int64_t *out, size_t max);
size_t offload_task_param_reals(const offload_task_t *t, const char *name, double *out, size_t max);

/* The job's input (the body of POST /jobs/<task>): its bytes, read-only
 * and valid for the run, mapped in place (never copied); *len its size and
 * *content_type its media type (either may be NULL). NULL when the job has
 * none. */
const void *offload_task_input(const offload_task_t *t, size_t *len, const char **content_type);

/* Fan-out inside the job (the seeds' "split by CPU count"): runs
 * fn(ctx, i) for every i in [0, n) at once on this worker and on every idle
 * worker of its pool (in a worker process: one helper thread per core),
 * and returns when all have returned. fn runs on several threads at once
 * (different i); it may not call the other functions of this header but
 * offload_task_canceled and offload_task_progress (a chunk may report its
 * share: progress is a maximum, so reports from several threads are safe).
 * Chunks not started once the job is canceled or past its deadline are
 * skipped: then it returns -1, else 0. */
int offload_task_parallel(offload_task_t *t, size_t n, void (*fn)(void *ctx, size_t i), void *ctx);

/* Progress in 0..1; values below an earlier report are ignored. Cheap (one
 * relaxed atomic store): call it from the task's outer loop, every few ms. */
void offload_task_progress(offload_task_t *t, double fraction);

/* True once the job is canceled or its timeout has passed. The task should
 * return promptly (within a few ms); whatever it sets afterwards is ignored.
 * Cheap (one atomic load + a vDSO clock read when a deadline is set). */
bool offload_task_canceled(offload_task_t *t);

/* Results. Setting one replaces any earlier one. Without a result or an error
 * the job completes with result null. */
void offload_task_result_int(offload_task_t *t, int64_t v);
void offload_task_result_real(offload_task_t *t, double v);
void offload_task_result_null(offload_task_t *t);
/* A result of any JSON shape (object, array, string...), given as JSON
 * text (copied). Text that is not JSON, or over 48 KiB, fails the job
 * (codes invalid_result, result_too_large). */
void offload_task_result_json(offload_task_t *t, const char *json);

/* ---- output files ----
 * A task's outputs are named files: the job lists them in "files" and
 * GET /jobs/<id>/files/<name> serves them; they live and expire with the
 * job (a job that does not complete keeps none). A name is 1..128 of
 * [A-Za-z0-9._-], not starting with '.'. */
#define OFFLOAD_MAX_FILES 16

/* Creates (or truncates) output file `name` of media type `content_type`
 * and returns a descriptor to write it through. The runner closes it after
 * the run: the task must not. -1 with errno on failure (EINVAL: a bad name;
 * EMFILE: more than OFFLOAD_MAX_FILES; or the disk's error). */
int offload_task_file_open(offload_task_t *t, const char *name, const char *content_type);
/* The same with the whole content at once: 0, or -1 with errno. */
int offload_task_file_write(offload_task_t *t, const char *name, const char *content_type, const void *data,
                            size_t len);

/* Fails the job with error {"code": code, "message": the formatted text}.
 * `code` is snake_case. */
void offload_task_fail(offload_task_t *t, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- plug-ins ----
 * A plug-in is a shared object (`offload serve --plugin FILE.so`) that
 * exports two symbols, both written by OFFLOAD_PLUGIN(defs):
 *   offload_plugin_abi    the OFFLOAD_PLUGIN_ABI it was built with; the
 *                         server refuses any other value
 *   offload_plugin_tasks  its task definitions and their count
 * Its tasks join the built-in ones (names must not clash) and run like them,
 * in the isolation they declare. A plug-in may call the functions of this
 * header and nothing else of the server.
 *
 * OFFLOAD_PLUGIN_ABI goes up with any change to the layout of
 * offload_task_def_t or offload_param_spec_t, or to what a function of this
 * header means or takes; a plug-in built against another value must be
 * rebuilt. */
#define OFFLOAD_PLUGIN_ABI 1

typedef struct offload_plugin_tasks {
  const offload_task_def_t *tasks;
  size_t ntasks;
} offload_plugin_tasks_t;

/* Exports a static array of task definitions, in a plug-in's one source file:
 *     static const offload_task_def_t my_tasks[] = {{.name = "wordfreq", ...}};
 *     OFFLOAD_PLUGIN(my_tasks);
 * (`defs` must be an array, not a pointer: its length is taken with sizeof). */
#define OFFLOAD_PLUGIN(defs)                                                                                           \
  __attribute__((visibility("default"))) extern const uint32_t offload_plugin_abi;                                     \
  __attribute__((visibility("default"))) const uint32_t offload_plugin_abi = OFFLOAD_PLUGIN_ABI;                       \
  __attribute__((visibility("default"))) extern const offload_plugin_tasks_t offload_plugin_tasks;                     \
  __attribute__((visibility("default")))                                                                               \
  const offload_plugin_tasks_t offload_plugin_tasks = {(defs), sizeof(defs) / sizeof((defs)[0])}

#endif
