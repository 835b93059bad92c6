/* http/access: the access log. One line per request the request callback
 * saw, written when its reply ends (conn_reply_done) or, when the
 * connection closes before that, at the close (status 499, nginx's "client
 * closed request", unless a reply had begun). The line is built on the
 * loop into the server's reusable buffer and handed to the log's queue
 * (util/logq.h), whose own thread writes it: the loop never waits for the
 * log's descriptor, and a line that does not fit is dropped and counted.
 *
 * No header is ever logged (Authorization holds a secret), and the query
 * string is left out (it may hold one too). */
#include <inttypes.h>
#include <string.h>

#include "http/conn.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/logfmt.h"

int http_access_format(buf_t *out, bool json, const http_access_t *a) {
  char when[LOGFMT_TIME_LEN];
  logfmt_time(when, a->wall_ms);
  const char *remote = a->remote ? a->remote : "";
  const char *method = a->method ? a->method : "";
  const char *path = a->path ? a->path : "";
  int rc;
  if (json) {
    rc = buf_printf(out, "{\"time\":\"%s\",\"remote\":", when);
    rc = rc ? rc : logfmt_json(out, remote, strlen(remote));
    rc = rc ? rc : buf_puts(out, ",\"method\":");
    rc = rc ? rc : logfmt_json(out, method, strlen(method));
    rc = rc ? rc : buf_puts(out, ",\"path\":");
    rc = rc ? rc : logfmt_json(out, path, strlen(path));
    rc = rc ? rc
            : buf_printf(out, ",\"status\":%d,\"bytes\":%" PRIu64 ",\"duration_us\":%" PRIu64 "}\n", a->status,
                         a->bytes, a->duration_us);
  } else {
    rc = buf_printf(out, "%s ", when);
    rc = rc ? rc : logfmt_text(out, remote, strlen(remote));
    rc = rc ? rc : buf_puts(out, " ");
    rc = rc ? rc : logfmt_text(out, method, strlen(method));
    rc = rc ? rc : buf_puts(out, " ");
    rc = rc ? rc : logfmt_text(out, path, strlen(path));
    rc = rc ? rc : buf_printf(out, " %d %" PRIu64 " %" PRIu64 "us\n", a->status, a->bytes, a->duration_us);
  }
  return rc ? OFF_ENOMEM : 0;
}

void conn_access_log(conn_t *c) {
  if (!c->log_pending)
    return;
  c->log_pending = false;
  http_server_t *s = c->srv;
  logq_t *q = s->cfg.access_log;
  if (q) {
    uint64_t now = clock_mono_ns();
    http_access_t a = {
        .wall_ms = clock_wall_ms(),
        .remote = c->peer,
        .method = c->req.method_name,
        .path = c->req.path,
        .status = c->req_status ? c->req_status : 499,
        .bytes = c->req_bytes,
        .duration_us = c->req_t0 && now > c->req_t0 ? (now - c->req_t0) / 1000 : 0,
    };
    buf_reset(&s->access_line);
    if (http_access_format(&s->access_line, s->cfg.access_log_json, &a) == 0)
      logq_push(q, s->access_line.data, s->access_line.len);
    else
      logq_drop(q);
  }
  c->req_t0 = 0;
  c->req_bytes = 0;
  c->req_status = 0;
}
