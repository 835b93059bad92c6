/* cli/cli_int.h: what the client's files share: exit statuses, the context
 * of one invocation, messages, and each file's entry points. Main thread. */
#ifndef OFFLOAD_CLI_INT_H
#define OFFLOAD_CLI_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cli/args.h"
#include "util/httpc.h"

/* Exit statuses (docs/CLI.md). */
enum {
  CLI_OK = 0,       /* done; for wait: the job completed */
  CLI_FAILED = 1,   /* the job failed */
  CLI_USAGE = 2,    /* bad usage: a flag, an argument, a file that cannot be read */
  CLI_CANCELED = 3, /* the job was canceled */
  CLI_HTTP = 4,     /* the server cannot be reached, or answered with an error */
};

typedef struct cli_cmd cli_cmd_t;

/* One invocation. */
typedef struct cli_ctx {
  const cli_cmd_t *cmd;
  const char *url_text; /* as given (--url, OFFLOAD_URL or the default) */
  httpc_url_t url;
  const char *token; /* NULL: no Authorization header */
  bool json;         /* --json: stdout gets exactly one JSON document */
  cli_args_t args;
} cli_ctx_t;

/* cli.c */
/* "offload: <message>" and a newline on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The message and a pointer to `offload COMMAND --help`; returns CLI_USAGE. */
int cli_usage(const cli_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The value of option `name` (long name), NULL when not given; "" for a
 * switch that was given. */
const char *cli_opt(const cli_ctx_t *ctx, const char *name);
/* Prints `j` on stdout as one compact JSON line. */
void cli_print_json(const json_t *j);

/* jobs.c: status, cancel, jobs, tasks, workers */
int cli_cmd_status(cli_ctx_t *ctx);
int cli_cmd_cancel(cli_ctx_t *ctx);
int cli_cmd_jobs(cli_ctx_t *ctx);
int cli_cmd_tasks(cli_ctx_t *ctx);
int cli_cmd_workers(cli_ctx_t *ctx);
/* submit.c */
int cli_cmd_submit(cli_ctx_t *ctx);
/* wait.c */
int cli_cmd_wait(cli_ctx_t *ctx);
/* Waits until job `id` is final (event stream, else long polls), drawing the
 * bar on a terminal, then reports it: the summary on stderr, the result (or
 * with --json the job) on stdout. Returns the exit status. */
int cli_wait_and_report(cli_ctx_t *ctx, const char *id);
/* download.c */
int cli_cmd_download(cli_ctx_t *ctx);
/* top.c */
int cli_cmd_top(cli_ctx_t *ctx);

#endif
