/* cli/jobs: the commands that read or change the server's records without
 * following anything: `status`, `cancel`, `jobs`, `tasks`, `workers`. Each
 * is one request; with --json stdout gets the reply's JSON as it came, else
 * a few aligned lines for a person. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_int.h"
#include "cli/net.h"
#include "cli/params.h"
#include "util/buf.h"

/* "/jobs/<id percent-encoded><tail>" into b; 0 or -1 (out of memory). */
static int job_path(buf_t *b, const char *id, const char *tail) {
  if (buf_puts(b, "/jobs/") || params_escape(b, id) || buf_puts(b, tail)) {
    cli_error("out of memory");
    return -1;
  }
  return 0;
}

static const char *str(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* An epoch-ms field as local "YYYY-mm-dd HH:MM:SS", "" when null. */
static const char *when(const json_t *o, const char *k, char *out, size_t size) {
  const json_t *v = json_object_get(o, k);
  out[0] = '\0';
  if (!json_is_integer(v))
    return out;
  time_t t = (time_t)(json_integer_value(v) / 1000);
  struct tm tm;
  if (localtime_r(&t, &tm))
    strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
  return out;
}

static void print_job(const json_t *j) {
  char t[32];
  printf("id        %s\ntask      %s\nstatus    %s\n", str(j, "id"), str(j, "task"), str(j, "status"));
  printf("progress  %.0f%%\n", json_number_value(json_object_get(j, "progress")) * 100);
  if (json_is_integer(json_object_get(j, "queuePosition")))
    printf("queue     #%" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(j, "queuePosition")));
  char *params = json_dumps(json_object_get(j, "params"), JSON_COMPACT | JSON_ENCODE_ANY);
  printf("params    %s\n", params ? params : "{}");
  free(params);
  printf("created   %s\n", when(j, "createdAt", t, sizeof t));
  if (json_is_integer(json_object_get(j, "startedAt")))
    printf("started   %s\n", when(j, "startedAt", t, sizeof t));
  if (json_is_integer(json_object_get(j, "finishedAt")))
    printf("finished  %s\n", when(j, "finishedAt", t, sizeof t));
  printf("attempts  %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(j, "attempts")));
  const json_t *res = json_object_get(j, "result");
  if (res && !json_is_null(res)) {
    char *s = json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("result    %s\n", s ? s : "?");
    free(s);
  }
  const json_t *e = json_object_get(j, "error");
  if (json_is_object(e))
    printf("error     %s: %s\n", str(e, "code"), str(e, "message"));
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(j, "files"), i, f) {
    printf("%s%s (%" JSON_INTEGER_FORMAT " bytes, %s)\n", i ? "          " : "files     ", str(f, "name"),
           json_integer_value(json_object_get(f, "bytes")), str(f, "contentType"));
  }
}

int cli_cmd_status(cli_ctx_t *ctx) {
  buf_t path = BUF_INIT;
  if (job_path(&path, ctx->args.pos[0], ""))
    return CLI_HTTP;
  json_t *j;
  int rc = net_call(ctx, "GET", path.data, NULL, &j, NULL);
  buf_free(&path);
  if (rc)
    return rc;
  if (ctx->json)
    cli_print_json(j);
  else
    print_job(j);
  json_decref(j);
  return CLI_OK;
}

int cli_cmd_cancel(cli_ctx_t *ctx) {
  buf_t path = BUF_INIT;
  if (job_path(&path, ctx->args.pos[0], ""))
    return CLI_HTTP;
  json_t *j;
  int status = 0;
  int rc = net_call(ctx, "DELETE", path.data, NULL, &j, &status);
  buf_free(&path);
  if (rc)
    return rc;
  if (ctx->json)
    cli_print_json(j);
  else if (strcmp(str(j, "status"), "canceled") == 0)
    printf("%s canceled\n", str(j, "id"));
  else
    printf("%s: cancel requested (the job is %s; it stops within moments)\n", str(j, "id"), str(j, "status"));
  json_decref(j);
  return CLI_OK;
}

int cli_cmd_jobs(cli_ctx_t *ctx) {
  buf_t path = BUF_INIT;
  const char *st = cli_opt(ctx, "status"), *limit = cli_opt(ctx, "limit");
  int bad = buf_puts(&path, "/jobs");
  if (st)
    bad = bad || buf_puts(&path, "?status=") || params_escape(&path, st);
  if (limit)
    bad = bad || buf_puts(&path, st ? "&limit=" : "?limit=") || params_escape(&path, limit);
  if (bad) {
    buf_free(&path);
    cli_error("out of memory");
    return CLI_HTTP;
  }
  json_t *j;
  int rc = net_call(ctx, "GET", path.data, NULL, &j, NULL);
  buf_free(&path);
  if (rc)
    return rc;
  if (ctx->json) {
    cli_print_json(j);
  } else {
    printf("%-24s %-16s %-11s %8s  %s\n", "ID", "TASK", "STATUS", "PROGRESS", "CREATED");
    size_t i;
    const json_t *job;
    json_array_foreach(json_object_get(j, "jobs"), i, job) {
      char t[32];
      printf("%-24s %-16.16s %-11s %7.0f%%  %s\n", str(job, "id"), str(job, "task"), str(job, "status"),
             json_number_value(json_object_get(job, "progress")) * 100, when(job, "createdAt", t, sizeof t));
    }
  }
  json_decref(j);
  return CLI_OK;
}

/* One param's bounds as text: "1..600000", "one of a, b", "max 1024 bytes". */
static void bounds(const json_t *p, char *out, size_t size) {
  const json_t *mn = json_object_get(p, "min"), *mx = json_object_get(p, "max"), *en = json_object_get(p, "enum");
  out[0] = '\0';
  if (json_is_array(en)) {
    buf_t b = BUF_INIT;
    size_t i;
    const json_t *v;
    json_array_foreach(en, i, v)
        buf_printf(&b, "%s%s", i ? "|" : "", json_string_value(v) ? json_string_value(v) : "?");
    snprintf(out, size, "%s", b.data ? b.data : "");
    buf_free(&b);
  } else if (mn || mx) {
    char a[32] = "", z[32] = "";
    if (mn)
      snprintf(a, sizeof a, "%.17g", json_number_value(mn));
    if (mx)
      snprintf(z, sizeof z, "%.17g", json_number_value(mx));
    snprintf(out, size, "%s..%s", a, z);
  } else if (json_is_integer(json_object_get(p, "maxLength"))) {
    snprintf(out, size, "<= %" JSON_INTEGER_FORMAT " bytes", json_integer_value(json_object_get(p, "maxLength")));
  }
}

/* GET `path` into *j for a table; with --json the reply is printed as it
 * is and *j is NULL. CLI_OK or the request's exit status. */
static int get_for_table(cli_ctx_t *ctx, const char *path, json_t **j) {
  int rc = net_call(ctx, "GET", path, NULL, j, NULL);
  if (rc == CLI_OK && ctx->json) {
    cli_print_json(*j);
    json_decref(*j);
    *j = NULL;
  }
  return rc;
}

int cli_cmd_tasks(cli_ctx_t *ctx) {
  json_t *j;
  int rc = get_for_table(ctx, "/tasks", &j);
  if (rc || !j)
    return rc;
  size_t i, k;
  const json_t *t, *p;
  json_array_foreach(json_object_get(j, "tasks"), i, t) {
    const json_t *in = json_object_get(t, "input");
    printf("%s%s (%s)\n  %s\n", i ? "\n" : "", str(t, "name"), str(t, "isolation"), str(t, "description"));
    if (json_is_object(in)) {
      buf_t types = BUF_INIT;
      size_t m;
      const json_t *ty;
      json_array_foreach(json_object_get(in, "contentTypes"), m, ty)
          buf_printf(&types, "%s%s", m ? ", " : "", json_string_value(ty));
      printf("  input: --file PATH%s (%s)\n", json_is_true(json_object_get(in, "required")) ? ", required" : "",
             types.data ? types.data : "any type");
      buf_free(&types);
    }
    json_array_foreach(json_object_get(t, "params"), k, p) {
      char b[160];
      bounds(p, b, sizeof b);
      char *dflt = json_object_get(p, "default") ? json_dumps(json_object_get(p, "default"), JSON_ENCODE_ANY) : NULL;
      printf("  %-18s %-9s %-8s %s%s%s%s%s\n", str(p, "name"), str(p, "type"),
             json_is_true(json_object_get(p, "required")) ? "required" : "", b, dflt ? " default " : "",
             dflt ? dflt : "", json_object_get(p, "description") ? "  " : "", str(p, "description"));
      free(dflt);
    }
  }
  json_decref(j);
  return CLI_OK;
}

int cli_cmd_workers(cli_ctx_t *ctx) {
  json_t *j;
  int rc = get_for_table(ctx, "/workers", &j);
  if (rc || !j)
    return rc;
  printf("%-4s %-8s %-8s %-9s %-24s %8s %10s %8s\n", "ID", "MODE", "PID", "STATE", "JOB", "JOBS", "CPU", "RSS");
  size_t i;
  const json_t *w;
  json_array_foreach(json_object_get(j, "workers"), i, w) {
    const char *job = json_string_value(json_object_get(w, "jobId"));
    printf("%-4" JSON_INTEGER_FORMAT " %-8s %-8" JSON_INTEGER_FORMAT " %-9s %-24s %8" JSON_INTEGER_FORMAT
           " %9.1fs %7.1fM\n",
           json_integer_value(json_object_get(w, "id")), str(w, "mode"), json_integer_value(json_object_get(w, "pid")),
           str(w, "state"), job ? job : "-", json_integer_value(json_object_get(w, "jobsDone")),
           (double)json_integer_value(json_object_get(w, "cpuMs")) / 1000.0,
           (double)json_integer_value(json_object_get(w, "rssBytes")) / 1048576.0);
  }
  json_decref(j);
  return CLI_OK;
}
