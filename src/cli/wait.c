/* cli/wait: `offload wait ID` and the end of `submit --wait`: follow a job
 * until it is final, then report it.
 *
 * Following prefers the job's event stream, GET /jobs/<id>/events (each
 * event's data is the job object; the stream ends after the final one). A
 * server without it (404 or 405 there), or one with no stream to spare
 * (503), is followed with long polls instead,
 * GET /jobs/<id>?wait=S after a first GET /jobs/<id>: S = 30 when no bar
 * is drawn (one request per 30 s), S = 1 with a bar, so that it moves. A stream that ends early is followed
 * the same way.
 *
 * The report: the bar is erased; a one-line summary goes to stderr (the
 * error's code and message for a failed or canceled job); stdout gets the
 * result (a string as is, anything else as JSON), or with --json the final
 * job object and nothing else. Exit 0 complete, 1 failed, 3 canceled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "cli/net.h"
#include "cli/params.h"
#include "cli/progress.h"
#include "cli/sse.h"
#include "util/buf.h"
#include "util/clock.h"

typedef struct follow {
  progress_t bar;
  json_t *job; /* the latest job object seen */
  bool final;
} follow_t;

static bool is_final(const json_t *job) {
  const char *s = json_string_value(json_object_get(job, "status"));
  return s && (!strcmp(s, "complete") || !strcmp(s, "failed") || !strcmp(s, "canceled"));
}

static void seen(follow_t *f, json_t *job) {
  json_decref(f->job);
  f->job = job;
  f->final = is_final(job);
  progress_job(&f->bar, job);
}

static int on_event(void *data, const char *event, const char *id, const char *payload, size_t len) {
  follow_t *f = data;
  (void)id;
  if (strcmp(event, "job") != 0 && strcmp(event, "message") != 0)
    return 0;
  json_t *j = json_loadb(payload, len, 0, NULL);
  if (!json_is_object(j) || !json_is_string(json_object_get(j, "status"))) {
    json_decref(j);
    return 0;
  }
  seen(f, j);
  return f->final ? 1 : 0; /* the final event: no need to read on */
}

typedef struct stream {
  follow_t *f;
  sse_t sse;
  int err;
} stream_t;

static int on_stream(void *data, const char *at, size_t n) {
  stream_t *s = data;
  int rc = sse_feed(&s->sse, at, n);
  if (rc < 0)
    s->err = rc;
  return rc;
}

/* The bar's clock while a request runs: the long polls' data is the
 * follow_t, the stream's its stream_t. */
static void on_poll_tick(void *data) { progress_tick(&((follow_t *)data)->bar); }
static void on_stream_tick(void *data) { progress_tick(&((stream_t *)data)->f->bar); }

/* Replies to the stream that the long polls stand in for: 404 and 405 (a
 * server without it; or no such job, which the poll then says), 501, 503
 * (too_many_streams, shutting_down: reads still work), 204 (nothing after
 * the last event: the job is final). */
static bool polls_instead(int status) {
  return status == 204 || status == 404 || status == 405 || status == 501 || status == 503;
}

/* Follows the event stream. Returns 0 when the job is final, 1 when the
 * stream is not there or ended early (long polls take over), or an exit
 * status after printing why. */
static int follow_stream(cli_ctx_t *ctx, const char *path_id, follow_t *f) {
  char path[512];
  snprintf(path, sizeof path, "/jobs/%s/events", path_id);
  stream_t s = {.f = f};
  sse_init(&s.sse, on_event, f);
  net_opts_t o = {.headers = "Accept: text/event-stream\r\n",
                  .on_body = on_stream,
                  .on_tick = on_stream_tick,
                  .tick_ms = 100,
                  .data = &s};
  net_resp_t r;
  int rc = net_fetch(ctx, "GET", path, &o, &r);
  sse_fini(&s.sse);
  int out = 1;
  if (f->final)
    out = 0;
  else if (rc && rc != HTTPC_ESTOPPED && r.status == 0 && !f->job)
    out = net_unreachable(ctx, rc); /* no reply at all: the long polls would fare no better */
  else if (rc == 0 && r.status != 200 && !polls_instead(r.status))
    out = net_http_error(&r);
  net_resp_free(&r);
  return out;
}

/* Long polls until the job is final. Returns 0 or an exit status. */
static int follow_polls(cli_ctx_t *ctx, const char *path_id, follow_t *f) {
  char path[512];
  int n = snprintf(path, sizeof path, "/jobs/%s", path_id);
  net_opts_t o = {.on_tick = on_poll_tick, .tick_ms = 100, .data = f, .idle_ms = 90000};
  for (bool first = true; !f->final; first = false) {
    /* The first look is at once, so the bar starts from the job's state. */
    if (!first)
      snprintf(path + n, sizeof path - (size_t)n, "?wait=%d", f->bar.on ? 1 : 30);
    net_resp_t r;
    int rc = net_fetch(ctx, "GET", path, &o, &r);
    if (rc) {
      net_resp_free(&r);
      progress_clear(&f->bar);
      return net_unreachable(ctx, rc);
    }
    if (r.status != 200) {
      progress_clear(&f->bar);
      int st = net_http_error(&r);
      net_resp_free(&r);
      return st;
    }
    json_t *j = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    net_resp_free(&r);
    if (!json_is_object(j)) {
      json_decref(j);
      progress_clear(&f->bar);
      cli_error("200: the server's reply is not a job");
      return CLI_HTTP;
    }
    seen(f, j);
  }
  return 0;
}

/* The summary line and the result; returns the exit status. */
static int report(cli_ctx_t *ctx, const json_t *job) {
  const char *id = json_string_value(json_object_get(job, "id"));
  const char *task = json_string_value(json_object_get(job, "task"));
  const char *status = json_string_value(json_object_get(job, "status"));
  const json_t *err = json_object_get(job, "error");
  const char *code = json_string_value(json_object_get(err, "code"));
  const char *msg = json_string_value(json_object_get(err, "message"));
  id = id ? id : "?";
  if (status && strcmp(status, "complete") == 0) {
    json_int_t started = json_integer_value(json_object_get(job, "startedAt"));
    json_int_t finished = json_integer_value(json_object_get(job, "finishedAt"));
    buf_t files = BUF_INIT;
    size_t i;
    const json_t *fl;
    json_array_foreach(json_object_get(job, "files"), i, fl) {
      const char *name = json_string_value(json_object_get(fl, "name"));
      buf_printf(&files, "%s%s", i ? ", " : "; files: ", name ? name : "?");
    }
    fprintf(stderr, "job %s (%s) complete in %.1fs%s\n", id, task ? task : "?",
            started && finished >= started ? (double)(finished - started) / 1000.0 : 0.0, files.data ? files.data : "");
    buf_free(&files);
    if (ctx->json) {
      cli_print_json(job);
    } else {
      const json_t *res = json_object_get(job, "result");
      if (json_is_string(res))
        printf("%s\n", json_string_value(res));
      else
        cli_print_json(res ? res : json_null());
    }
    return CLI_OK;
  }
  bool canceled = status && strcmp(status, "canceled") == 0;
  if (canceled)
    cli_error("job %s (%s) canceled: %s", id, task ? task : "?", msg ? msg : "(no message)");
  else
    cli_error("job %s (%s) %s: %s: %s", id, task ? task : "?", status ? status : "ended", code ? code : "?",
              msg ? msg : "(no message)");
  if (ctx->json)
    cli_print_json(job);
  return canceled ? CLI_CANCELED : CLI_FAILED;
}

int cli_wait_and_report(cli_ctx_t *ctx, const char *id) {
  buf_t pid = BUF_INIT;
  if (params_escape(&pid, id)) {
    cli_error("out of memory");
    return CLI_HTTP;
  }
  follow_t f = {0};
  progress_init(&f.bar, isatty(STDERR_FILENO) == 1);
  int st = follow_stream(ctx, pid.data ? pid.data : "", &f);
  if (st == 1)
    st = follow_polls(ctx, pid.data ? pid.data : "", &f);
  progress_clear(&f.bar);
  if (st == 0)
    st = report(ctx, f.job);
  json_decref(f.job);
  buf_free(&pid);
  return st;
}

int cli_cmd_wait(cli_ctx_t *ctx) { return cli_wait_and_report(ctx, ctx->args.pos[0]); }
