/* cli/submit: `offload submit TASK [name=value ...] [--file PATH] [--wait]`.
 * Without --file: GET /tasks for the task's param types (cli/params), then
 * POST /jobs with JSON. With --file: POST /jobs/TASK?name=value..., the file
 * as the body (mapped, not copied; `-` reads stdin), its media type from
 * --type or its extension. Prints the job's id (--json: the job object);
 * with --wait the id goes to stderr and the rest is `offload wait`'s. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "cli/net.h"
#include "cli/params.h"
#include "util/buf.h"
#include "util/err.h"

/* A strict non-negative decimal flag value; -1 when it is not one. */
static long long flag_int(const char *s) {
  if (!*s || strlen(s) > 12)
    return -1;
  long long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

/* The input file: mapped when it is a regular file, else read whole. */
typedef struct input {
  void *map;
  size_t len;
  buf_t copy;
} input_t;

static int input_open(input_t *in, const char *path) {
  memset(in, 0, sizeof *in);
  int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    in->len = (size_t)st.st_size;
    in->map = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (in->map == MAP_FAILED) {
      in->map = NULL;
      rc = -errno;
    }
  } else {
    char tmp[65536];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof tmp)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0 && buf_append(&in->copy, tmp, (size_t)n)) {
        rc = -ENOMEM;
        break;
      }
    if (n < 0 && rc == 0)
      rc = -errno;
    in->len = in->copy.len;
  }
  if (fd != STDIN_FILENO)
    close(fd);
  return rc;
}

static const void *input_data(const input_t *in) { return in->map ? in->map : in->copy.data; }

static void input_close(input_t *in) {
  if (in->map)
    munmap(in->map, in->len);
  buf_free(&in->copy);
}

static int submit_file(cli_ctx_t *ctx, const char *task, long long timeout, long long retries, json_t **job) {
  const char *file = cli_opt(ctx, "file"), *type = cli_opt(ctx, "type");
  char err[256];
  buf_t path = BUF_INIT, headers = BUF_INIT;
  int rc = CLI_USAGE;
  input_t in;
  int bad = buf_puts(&path, "/jobs/") || params_escape(&path, task) || buf_puts(&path, "?");
  int q = bad ? OFF_ENOMEM : params_query(&path, (char *const *)ctx->args.pos + 1, ctx->args.npos - 1, err, sizeof err);
  if (q == -1) {
    buf_free(&path);
    return cli_usage(ctx, "%s", err);
  }
  bad = bad || q;
  if (timeout >= 0)
    bad = bad || buf_printf(&path, "%stimeoutMs=%lld", ctx->args.npos > 1 ? "&" : "", timeout);
  if (retries >= 0)
    bad = bad || buf_printf(&path, "%sretries=%lld", ctx->args.npos > 1 || timeout >= 0 ? "&" : "", retries);
  if (!type)
    type = params_media_type(file);
  if (strpbrk(type, "\r\n")) {
    buf_free(&path);
    return cli_usage(ctx, "--type may not hold a line break");
  }
  bad = bad || buf_printf(&headers, "Content-Type: %s\r\n", type);
  if (bad) {
    cli_error("out of memory");
    rc = CLI_HTTP;
    goto out;
  }
  int e = input_open(&in, file);
  if (e) {
    input_close(&in);
    rc = cli_usage(ctx, "cannot read %s: %s", file, strerror(-e));
    goto out;
  }
  if (path.data[path.len - 1] == '?')
    path.data[--path.len] = '\0';
  rc = net_call_body(ctx, "POST", path.data, headers.data, input_data(&in), in.len, job, NULL);
  input_close(&in);
out:
  buf_free(&path);
  buf_free(&headers);
  return rc;
}

static int submit_json(cli_ctx_t *ctx, const char *task, long long timeout, long long retries, json_t **job) {
  char err[256];
  char *const *words = (char *const *)ctx->args.pos + 1;
  int nwords = ctx->args.npos - 1;
  /* The words' form first: a usage error needs no server. */
  json_t *params = params_build(NULL, words, nwords, err, sizeof err);
  if (!params)
    return cli_usage(ctx, "%s", err);
  json_decref(params);
  json_t *catalog;
  int rc = net_call(ctx, "GET", "/tasks", NULL, &catalog, NULL);
  if (rc)
    return rc;
  const json_t *spec = NULL;
  size_t i;
  const json_t *t;
  json_array_foreach(json_object_get(catalog, "tasks"), i, t) {
    const char *name = json_string_value(json_object_get(t, "name"));
    if (name && strcmp(name, task) == 0)
      spec = t;
  }
  /* An unknown task goes to the server all the same: its unknown_task
   * reply lists the tasks there are. */
  params = params_build(spec, words, nwords, err, sizeof err);
  json_decref(catalog);
  if (!params)
    return cli_usage(ctx, "%s", err);
  json_t *body = json_pack("{s:s, s:o}", "task", task, "params", params);
  if (body && timeout >= 0)
    json_object_set_new(body, "timeoutMs", json_integer(timeout));
  if (body && retries >= 0)
    json_object_set_new(body, "retries", json_integer(retries));
  if (!body) {
    cli_error("out of memory");
    return CLI_HTTP;
  }
  rc = net_call(ctx, "POST", "/jobs", body, job, NULL);
  json_decref(body);
  return rc;
}

int cli_cmd_submit(cli_ctx_t *ctx) {
  const char *task = ctx->args.pos[0];
  const char *tmo = cli_opt(ctx, "timeout-ms"), *ret = cli_opt(ctx, "retries");
  long long timeout = tmo ? flag_int(tmo) : -1, retries = ret ? flag_int(ret) : -1;
  if (tmo && timeout < 0)
    return cli_usage(ctx, "--timeout-ms must be a whole number of milliseconds; got \"%.40s\"", tmo);
  if (ret && retries < 0)
    return cli_usage(ctx, "--retries must be a whole number; got \"%.40s\"", ret);
  if (cli_opt(ctx, "type") && !cli_opt(ctx, "file"))
    return cli_usage(ctx, "--type goes with --file");
  json_t *job = NULL;
  int rc = cli_opt(ctx, "file") ? submit_file(ctx, task, timeout, retries, &job)
                                : submit_json(ctx, task, timeout, retries, &job);
  if (rc)
    return rc;
  const char *id = json_string_value(json_object_get(job, "id"));
  if (!id) {
    json_decref(job);
    cli_error("the server's reply has no job id");
    return CLI_HTTP;
  }
  if (cli_opt(ctx, "wait")) {
    fprintf(stderr, "submitted job %s (%s)\n", id, task);
    rc = cli_wait_and_report(ctx, id);
  } else if (ctx->json) {
    cli_print_json(job);
  } else {
    printf("%s\n", id);
  }
  json_decref(job);
  return rc;
}
