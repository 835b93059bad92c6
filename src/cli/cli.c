/* cli: the command table, `--help`, the global flags (--url, --token,
 * --json) and their environment variables, and dispatch. See cli.h; each
 * command lives in its own file (cli_int.h lists them). */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

#define DEFAULT_URL "http://127.0.0.1:3000"

struct cli_cmd {
  const char *name;
  const char *synopsis; /* after "offload NAME " */
  const char *summary;  /* one line for `offload --help` */
  const char *help;     /* the rest of `offload NAME --help` */
  cli_opt_t opts[CLI_OPTS_MAX - 4];
  int min_pos, max_pos; /* max_pos < 0: any number */
  bool json;            /* takes --json */
  int (*run)(cli_ctx_t *ctx);
};

/* The global flags every command takes, after its own. */
static const cli_opt_t global_opts[] = {
    {"url", 0, "URL", "the server (default: $OFFLOAD_URL, else " DEFAULT_URL ")"},
    {"token", 0, "TOKEN", "send \"Authorization: Bearer TOKEN\" (default: $OFFLOAD_TOKEN)"},
    {"json", 0, NULL, "print exactly one JSON document on stdout, nothing else"},
    {"help", 'h', NULL, "this text"},
};
#define NGLOBAL ((int)(sizeof global_opts / sizeof global_opts[0]))

static const cli_cmd_t commands[] = {
    {"submit",
     "TASK [name=value ...] [--file PATH] [--wait]",
     "submit a job; print its id",
     "Submits a job of TASK (see `offload tasks`). Each name=value is a parameter, typed by\n"
     "the task's spec from GET /tasks: integers, numbers, booleans (true/false), lists\n"
     "(1,2,3) and strings; name:=JSON sends raw JSON. With --file the file is the job's\n"
     "input (POST /jobs/TASK, the parameters in the query). Prints the job's id, or with\n"
     "--json the job object. --wait then waits as `offload wait` does.\n",
     {{"file", 'f', "PATH", "send PATH as the job's input (tasks that take one: stats, image)"},
      {"type", 't', "TYPE", "the input's media type (default: from PATH's extension)"},
      {"wait", 'w', NULL, "wait until the job is final; exit status as for `offload wait`"},
      {"timeout-ms", 0, "N", "the job's timeout in ms (timeoutMs)"},
      {"retries", 0, "N", "runs again after a crash, out-of-memory or timeout, up to N times"}},
     1,
     -1,
     true,
     cli_cmd_submit},
    {"status",
     "ID",
     "show a job",
     "Shows the job (GET /jobs/ID). Exit 0 whatever the job's state.\n",
     {{0}},
     1,
     1,
     true,
     cli_cmd_status},
    {"wait",
     "ID",
     "wait until a job is final; print its result",
     "Follows the job until it is final: on a terminal a live progress bar on stderr (from the\n"
     "job's event stream, or long polls on older servers). Then a one-line summary on stderr and\n"
     "the result on stdout (with --json the final job object instead).\n"
     "Exit 0 complete, 1 failed, 3 canceled.\n",
     {{0}},
     1,
     1,
     true,
     cli_cmd_wait},
    {"cancel",
     "ID",
     "cancel a job",
     "Cancels the job (DELETE /jobs/ID): a queued job is canceled at once, a running one is\n"
     "asked to stop. A job that is already final is an error (409 already_finished).\n",
     {{0}},
     1,
     1,
     true,
     cli_cmd_cancel},
    {"jobs",
     "[--status S] [--limit N]",
     "list jobs, newest first",
     "Lists retained jobs, newest first (GET /jobs).\n",
     {{"status", 's', "S", "only jobs in state S: queued, processing, complete, failed or canceled"},
      {"limit", 'n', "N", "at most N jobs, 1-1000 (default 100)"}},
     0,
     0,
     true,
     cli_cmd_jobs},
    {"tasks",
     "",
     "list the server's tasks and their parameters",
     "Lists the task catalog (GET /tasks).\n",
     {{0}},
     0,
     0,
     true,
     cli_cmd_tasks},
    {"workers",
     "",
     "list the server's workers",
     "Lists every worker: thread or process, state, job (GET /workers).\n",
     {{0}},
     0,
     0,
     true,
     cli_cmd_workers},
    {"download",
     "ID NAME [-o FILE]",
     "save an output file of a job",
     "Saves the output file NAME of job ID (GET /jobs/ID/files/NAME) as ./NAME, or as FILE;\n"
     "-o - writes it to stdout. Nothing is left behind when the download fails.\n",
     {{"output", 'o', "FILE", "where to save it (- for stdout)"}},
     2,
     2,
     false,
     cli_cmd_download},
    {"top",
     "",
     "a full-screen live view of the server (q quits)",
     "A full-screen live view from the server's event stream (GET /events): queue, workers,\n"
     "completions and failures per second, loop lag and the latest jobs with their progress.\n"
     "Servers without the stream are polled every second (GET /health, GET /jobs). q quits.\n",
     {{0}},
     0,
     0,
     false,
     cli_cmd_top},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char exit_text[] = "Exit status: 0 done (wait: complete), 1 the job failed, 2 bad usage, 3 the job was\n"
                                "canceled, 4 the server cannot be reached or answered with an error.\n";

static int nopts_of(const cli_cmd_t *c) {
  int n = 0;
  while (n < CLI_OPTS_MAX - 4 && c->opts[n].name)
    n++;
  return n;
}

static const cli_cmd_t *find(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

void cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("offload: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_usage(const cli_ctx_t *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("offload: ", stderr);
  if (ctx && ctx->cmd)
    fprintf(stderr, "%s: ", ctx->cmd->name);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see `offload %s%s--help`)\n", ctx && ctx->cmd ? ctx->cmd->name : "", ctx && ctx->cmd ? " " : "");
  va_end(ap);
  return CLI_USAGE;
}

void cli_print_json(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  if (s)
    printf("%s\n", s);
  free(s);
}

const char *cli_opt(const cli_ctx_t *ctx, const char *name) {
  int n = nopts_of(ctx->cmd);
  for (int i = 0; i < n; i++)
    if (strcmp(ctx->cmd->opts[i].name, name) == 0)
      return ctx->args.val[i];
  for (int i = 0; i < NGLOBAL; i++)
    if (strcmp(global_opts[i].name, name) == 0)
      return ctx->args.val[n + i];
  return NULL;
}

static void print_opt(FILE *out, const cli_opt_t *o) {
  char left[64];
  snprintf(left, sizeof left, "%s%c%s--%s%s%s", o->letter ? "-" : "", o->letter ? o->letter : ' ',
           o->letter ? ", " : "   ", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
  fprintf(out, "  %-24s %s\n", left, o->help);
}

static void command_help(FILE *out, const cli_cmd_t *c) {
  fprintf(out, "usage: offload %s%s%s [--url URL] [--token TOKEN]%s\n\n%s\n", c->name, c->synopsis[0] ? " " : "",
          c->synopsis, c->json ? " [--json]" : "", c->help);
  int n = nopts_of(c);
  for (int i = 0; i < n; i++)
    print_opt(out, &c->opts[i]);
  for (int i = 0; i < NGLOBAL; i++)
    if (c->json || strcmp(global_opts[i].name, "json") != 0)
      print_opt(out, &global_opts[i]);
  fprintf(out, "\nEnvironment: OFFLOAD_URL (default %s), OFFLOAD_TOKEN.\n%s", DEFAULT_URL, exit_text);
}

void cli_usage_commands(FILE *out) {
  fprintf(out, "\nClient commands (they speak the HTTP API; docs/CLI.md):\n");
  for (size_t i = 0; i < NCOMMANDS; i++) {
    char left[80];
    snprintf(left, sizeof left, "offload %s %s", commands[i].name, commands[i].synopsis);
    fprintf(out, "  %-58s %s\n", left, commands[i].summary);
  }
  fprintf(out,
          "  Every client command takes --url URL (or $OFFLOAD_URL, default %s), --token TOKEN\n"
          "  (or $OFFLOAD_TOKEN) and --help; most take --json. `offload COMMAND --help` says more.\n",
          DEFAULT_URL);
  fprintf(out, "  Exit status: 0 done (wait: complete), 1 the job failed, 2 bad usage, 3 the job was canceled,\n"
               "  4 the server cannot be reached or answered with an error.\n");
}

/* The index in argv of the command's name: after any global flags. */
static int command_index(int argc, char **argv) {
  int i = 1;
  while (i < argc) {
    if (strcmp(argv[i], "--json") == 0) {
      i++;
    } else if (strcmp(argv[i], "--url") == 0 || strcmp(argv[i], "--token") == 0) {
      i += 2;
    } else if (strncmp(argv[i], "--url=", 6) == 0 || strncmp(argv[i], "--token=", 8) == 0) {
      i++;
    } else {
      break;
    }
  }
  return i < argc && find(argv[i]) ? i : -1;
}

bool cli_handles(int argc, char **argv) { return command_index(argc, argv) > 0; }

int cli_main(int argc, char **argv) {
  int ci = command_index(argc, argv);
  if (ci < 0)
    return cli_usage(NULL, "unknown command \"%.60s\"", argc >= 2 ? argv[1] : "");
  cli_ctx_t ctx = {.cmd = find(argv[ci])};
  const cli_cmd_t *c = ctx.cmd;
  /* The words of the command: its own and the global flags given before its
   * name, in one list, so both places behave the same. */
  char *words[CLI_POS_MAX + 64];
  int nw = 0;
  for (int i = 1; i < argc && nw < (int)(sizeof words / sizeof words[0]); i++)
    if (i != ci)
      words[nw++] = argv[i];
  cli_opt_t all[CLI_OPTS_MAX];
  int n = nopts_of(c);
  memcpy(all, c->opts, sizeof c->opts[0] * (size_t)n);
  memcpy(all + n, global_opts, sizeof global_opts);
  char err[256];
  if (cli_args_parse(all, n + NGLOBAL, nw, words, &ctx.args, err, sizeof err))
    return cli_usage(&ctx, "%s", err);
  if (cli_opt(&ctx, "help")) {
    command_help(stdout, c);
    return CLI_OK;
  }
  if (cli_opt(&ctx, "json") && !c->json)
    return cli_usage(&ctx, "--json is not an option of %s", c->name);
  ctx.json = cli_opt(&ctx, "json") != NULL;
  if (ctx.args.npos < c->min_pos)
    return cli_usage(&ctx, "missing %s", c->synopsis);
  if (c->max_pos >= 0 && ctx.args.npos > c->max_pos)
    return cli_usage(&ctx, "unexpected argument \"%.60s\"", ctx.args.pos[c->max_pos]);
  const char *url = cli_opt(&ctx, "url");
  if (!url)
    url = getenv("OFFLOAD_URL");
  if (!url || !*url)
    url = DEFAULT_URL;
  ctx.url_text = url;
  if (httpc_url_parse(url, &ctx.url, err, sizeof err))
    return cli_usage(&ctx, "bad URL \"%.100s\": %s", url, err);
  ctx.token = cli_opt(&ctx, "token");
  if (!ctx.token)
    ctx.token = getenv("OFFLOAD_TOKEN");
  if (ctx.token && !*ctx.token)
    ctx.token = NULL;
  if (ctx.token && strpbrk(ctx.token, "\r\n"))
    return cli_usage(&ctx, "the token may not hold a line break");
  fflush(stdout);
  int rc = c->run(&ctx);
  if (fflush(stdout) != 0 && rc == CLI_OK) {
    cli_error("cannot write to stdout");
    rc = CLI_USAGE;
  }
  return rc;
}
