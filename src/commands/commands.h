/* commands: the command tasks a `--commands FILE` declares (issue 10). The
 * file is JSON, {"env": [names], "tasks": [...]}, read once at start-up
 * into commands_t: per task, a ready-to-register offload_task_def_t (its
 * typed params as offload_param_spec_t, validated at submission by
 * tasks_validate like any task's), the argv as literal texts and
 * whole-argument placeholders, the program resolved to an absolute path,
 * the outputs with their media types, the timeout, the progress parser and
 * rlimits. docs/COMMANDS.md is the file format and the security rules.
 *
 * Owns: every string, array, spec and compiled regex inside a commands_t,
 * freed by commands_free (the defs point into it: it must outlive any
 * catalog they are registered in).
 * Threads: commands_load and commands_free run at start-up and exit (main
 * or loop thread). A loaded commands_t is read-only, so any thread may read
 * it and call the render functions (pure: they allocate only their result).
 * Does not: register the tasks (def.run is NULL: the runner sets it when it
 * adds the defs to the catalog), spawn, read logs or progress, or make the
 * job's directory. It never invokes a shell. */
#ifndef OFFLOAD_COMMANDS_COMMANDS_H
#define OFFLOAD_COMMANDS_COMMANDS_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "offload/task.h"

/* Limits of a commands file (each refused at load, with the fix). */
#define COMMANDS_MAX_TASKS 256
#define COMMANDS_MAX_ARGS 256  /* argv elements, the program included */
#define COMMANDS_MAX_PARAMS 64 /* per task */
#define COMMANDS_MAX_ENV 256
#define COMMANDS_MAX_VALUES 64                       /* an enum's values */
#define COMMANDS_STRING_MAX 65536                    /* the largest maxLength of a string param */
#define COMMANDS_STRING_DEFAULT 1024                 /* a string param's maxLength when not given */
#define COMMANDS_INT_LIMIT INT64_C(9007199254740991) /* 2^53 - 1: an int param's default min (negated) and max */
#define COMMANDS_TIMEOUT_MAX_MS INT64_C(86400000)

/* The pattern a string param gets when it declares none: any text that
 * does not start with '-' (so the program cannot read it as an option), the
 * empty string included. A param that must allow a leading '-' says so with
 * a pattern of its own (".*" allows anything). */
#define COMMANDS_DEFAULT_PATTERN "([^-].*)?"

typedef enum {
  COMMANDS_ARG_LITERAL = 0, /* text: passed as written */
  COMMANDS_ARG_PARAM,       /* text: the param's name; param: its index in def.params */
  COMMANDS_ARG_INPUT,       /* {input}: the path of the request body offload wrote; text NULL */
  COMMANDS_ARG_OUTPUT,      /* {output:NAME}: text is NAME; the path is <job dir>/NAME */
} commands_arg_kind_t;

typedef struct commands_arg {
  commands_arg_kind_t kind;
  const char *text;
  size_t param;
} commands_arg_t;

typedef struct commands_output {
  const char *name;         /* [A-Za-z0-9._-]{1,128}, not starting with '.' */
  const char *content_type; /* from its extension (commands_content_type) */
} commands_output_t;

typedef enum {
  COMMANDS_PROGRESS_NONE = 0,
  COMMANDS_PROGRESS_FFMPEG, /* key=value lines of `-progress pipe:1` on stdout (out_time_us) over the input's duration
                             */
  COMMANDS_PROGRESS_REGEX,  /* each output line: group 1 of `progress_re` is a percent (0..100) */
} commands_progress_t;

typedef struct commands_task {
  offload_task_def_t def;     /* name, description, params, files, input, input_types; run NULL, isolation DEFAULT */
  const char *program;        /* the absolute path to execute (argv[0] found on PATH at load) */
  const commands_arg_t *args; /* args[0] is the program as written in the file (LITERAL) */
  size_t nargs;
  const commands_output_t *outputs; /* in argv order; names unique */
  size_t noutputs;
  bool input;         /* "input": true: the request body is {input}; def.input is REQUIRED */
  int64_t timeout_ms; /* "timeoutMs"; 0 = none */
  commands_progress_t progress;
  const char *progress_pattern; /* REGEX: the pattern as written */
  regex_t progress_re;          /* REGEX: compiled with REG_EXTENDED; re_nsub >= 1 */
  uint64_t memory_mb;           /* "memoryMB": RLIMIT_AS in MiB; 0 = no limit */
  uint64_t cpu_seconds;         /* "cpuSeconds": RLIMIT_CPU; 0 = no limit */
  json_t *_defaults;            /* param name → its default value */
  bool _re_compiled;
} commands_task_t;

typedef struct commands_mem commands_mem_t;

typedef struct commands {
  const char *path;       /* the file, as given */
  const char *const *env; /* the names passed through to every command (NULL-terminated) */
  size_t nenv;
  commands_task_t *tasks;
  size_t n;
  commands_mem_t *_mem; /* every allocation of the load, freed together */
} commands_t;

/* Reads and checks the commands file at `path` into *out. Returns 0, or
 * OFF_EINVAL with a sentence in err naming the file, the task (where there
 * is one) and the fix, or OFF_ENOMEM ("out of memory" in err). On failure
 * *out is left empty (commands_free on it is a no-op) and nothing leaks.
 * Programs are looked up on the PATH of this process (absolute entries
 * only). A task name taken by a built-in task is refused. */
int commands_load(const char *path, commands_t *out, char *err, size_t errlen);
/* Frees everything commands_load made; *c is then empty. NULL-safe. */
void commands_free(commands_t *c);

/* The task named `name`, or NULL. */
const commands_task_t *commands_find(const commands_t *c, const char *name);

/* The argv of one run: every argument as its own element, never split,
 * joined or shell-interpreted. Literals as written; a param's value from
 * `params` (borrowed; validated with tasks_validate against t->def first),
 * else its default, else (an optional param without default) its argument
 * is left out; an int in decimal, a number as the shortest text that reads
 * back as the same double (plain decimals when 1e-5 <= |x| < 1e16: "10000",
 * "0.1"; else with an exponent: "1e+21"), a bool as "true"/"false", a
 * string as it is. {input} → input_path, {output:NAME} → outdir/NAME.
 * Returns 0 and sets *argv_out to a NULL-terminated array in one
 * allocation (the caller frees it with free()); OFF_EINVAL when a value
 * does not fit its type (holds a NUL byte, or params were not validated),
 * or input_path / outdir is NULL where the task needs it; OFF_ENOMEM. */
int commands_render_argv(const commands_task_t *t, const json_t *params, const char *input_path, const char *outdir,
                         char ***argv_out);

/* The environment of a command: "NAME=value" for each name of the
 * allow-list set in `environ_in` (NULL-terminated, e.g. environ; names not
 * set there are left out), nothing else. Returns 0 and a NULL-terminated
 * array in one allocation (free()), or OFF_ENOMEM. */
int commands_render_env(const commands_t *c, char *const *environ_in, char ***envp_out);

/* The media type of an output file from its extension (case-insensitive):
 * mp4, webm, mkv, mov, jpg/jpeg, png, webp, gif, txt, json, pdf, csv, mp3,
 * wav, ogg; else application/octet-stream. A static string. */
const char *commands_content_type(const char *name);

#endif
