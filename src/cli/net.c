/* cli/net: see net.h. */
#include "cli/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

#define CONNECT_MS 10000u
#define IDLE_MS 60000u

typedef struct fetch {
  const cli_ctx_t *ctx;
  const char *method;
  const net_opts_t *o;
  net_resp_t *out;
  buf_t target;
  uv_loop_t loop;
  httpc_t http;
  httpc_conn_t conn;
  uv_timer_t timer, tick;
  httpc_addrs_t addrs;
  int next, rc;
  bool connected, conn_live, finished;
} fetch_t;

static void try_next(fetch_t *f);
static void on_timer(uv_timer_t *t);

static void end(fetch_t *f, int rc) {
  if (f->finished)
    return;
  f->finished = true;
  f->rc = rc;
  if (f->conn_live)
    httpc_close(&f->conn, NULL);
  uv_close((uv_handle_t *)&f->timer, NULL);
  uv_close((uv_handle_t *)&f->tick, NULL);
}

static unsigned idle_ms(const fetch_t *f) { return f->o && f->o->idle_ms ? f->o->idle_ms : IDLE_MS; }

static void keep_response(fetch_t *f, httpc_conn_t *c) {
  f->out->status = c->status;
  snprintf(f->out->content_type, sizeof f->out->content_type, "%s", c->content_type);
  f->out->body = httpc_take_body(c, &f->out->len);
}

static void on_done(httpc_conn_t *c, int status) {
  fetch_t *f = c->data;
  if (status == 0 || status == HTTPC_ESTOPPED)
    keep_response(f, c);
  end(f, status);
}

static int on_body(httpc_conn_t *c, const char *at, size_t n) {
  fetch_t *f = c->data;
  uv_timer_again(&f->timer); /* bytes came: the idle clock starts over */
  return f->o->on_body(f->o->data, at, n);
}

static void on_conn_closed(uv_handle_t *h) {
  fetch_t *f = ((httpc_conn_t *)h->data)->data;
  f->conn_live = false;
  if (!f->finished)
    try_next(f);
}

static void on_connect(httpc_conn_t *c, int status) {
  fetch_t *f = c->data;
  if (status) {
    f->rc = status;
    httpc_close(c, on_conn_closed); /* then the next address */
    return;
  }
  f->connected = true;
  const net_opts_t *o = f->o;
  int rc = httpc_request(c, f->method, f->target.data, o ? o->headers : NULL, o ? o->body : NULL, o ? o->body_len : 0,
                         on_done, o && o->on_body ? on_body : NULL);
  if (rc) {
    end(f, rc);
    return;
  }
  /* From here the timer bounds the silence: reset by every piece of a
   * streamed body, so a stream with keep-alives lives on. */
  uv_timer_start(&f->timer, on_timer, idle_ms(f), idle_ms(f));
}

static void on_timer(uv_timer_t *t) {
  fetch_t *f = t->data;
  if (!f->connected && f->conn_live) {
    f->rc = UV_ETIMEDOUT;
    httpc_close(&f->conn, on_conn_closed);
    return;
  }
  end(f, UV_ETIMEDOUT);
}

static void on_tick(uv_timer_t *t) {
  fetch_t *f = t->data;
  f->o->on_tick(f->o->data);
}

static void try_next(fetch_t *f) {
  if (f->next >= f->addrs.n) {
    end(f, f->rc);
    return;
  }
  int rc = httpc_conn_init(&f->http, &f->conn);
  if (rc) {
    end(f, rc);
    return;
  }
  f->conn.data = f;
  f->conn_live = true;
  rc = httpc_connect(&f->conn, (const struct sockaddr *)&f->addrs.addr[f->next++], on_connect);
  if (rc) {
    f->rc = rc;
    httpc_close(&f->conn, on_conn_closed);
    return;
  }
  uv_timer_start(&f->timer, on_timer, CONNECT_MS, 0);
}

int net_fetch(const cli_ctx_t *ctx, const char *method, const char *path, const net_opts_t *o, net_resp_t *out) {
  memset(out, 0, sizeof *out);
  fetch_t *f = calloc(1, sizeof *f);
  if (!f)
    return UV_ENOMEM;
  f->ctx = ctx;
  f->method = method;
  f->o = o;
  f->out = out;
  int rc = httpc_resolve(&ctx->url, &f->addrs);
  if (rc == 0 && (buf_puts(&f->target, ctx->url.base) || buf_puts(&f->target, path)))
    rc = UV_ENOMEM;
  if (rc == 0)
    rc = uv_loop_init(&f->loop);
  if (rc) {
    buf_free(&f->target);
    free(f);
    return rc;
  }
  httpc_init(&f->http, &f->loop, ctx->url.authority, ctx->token);
  uv_timer_init(&f->loop, &f->timer);
  uv_timer_init(&f->loop, &f->tick);
  f->timer.data = f->tick.data = f;
  f->rc = UV_ECONNREFUSED;
  if (o && o->on_tick)
    uv_timer_start(&f->tick, on_tick, o->tick_ms, o->tick_ms);
  try_next(f);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  rc = f->rc;
  uv_loop_close(&f->loop);
  buf_free(&f->target);
  free(f);
  return rc;
}

void net_resp_free(net_resp_t *r) {
  free(r->body);
  r->body = NULL;
  r->len = 0;
}

int net_unreachable(const cli_ctx_t *ctx, int err) {
  const char *why = err == UV_EOF         ? "the connection closed before the reply ended"
                    : err == HTTPC_EPROTO ? "the reply is not HTTP/1.x"
                    : err == UV_ETIMEDOUT ? "timed out"
                                          : uv_strerror(err);
  cli_error("cannot reach %s: %s", ctx->url_text, why);
  return CLI_HTTP;
}

int net_http_error(const net_resp_t *r) {
  json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
  json_t *e = json_object_get(j, "error");
  const char *code = json_string_value(json_object_get(e, "code"));
  const char *msg = json_string_value(json_object_get(e, "message"));
  if (code)
    cli_error("%d %s: %s", r->status, code, msg ? msg : "(no message)");
  else {
    int n = r->body ? (int)strcspn(r->body, "\r\n") : 0;
    cli_error("%d: the server's reply is not an API error (%.*s)", r->status, n < 120 ? n : 120,
              r->body ? r->body : "");
  }
  json_decref(j);
  return CLI_HTTP;
}

int net_call_body(const cli_ctx_t *ctx, const char *method, const char *path, const char *headers, const void *body,
                  size_t len, json_t **out, int *status) {
  *out = NULL;
  net_opts_t o = {.headers = headers, .body = body, .body_len = len};
  net_resp_t r;
  int rc = net_fetch(ctx, method, path, &o, &r);
  if (rc) {
    net_resp_free(&r);
    return net_unreachable(ctx, rc);
  }
  if (status)
    *status = r.status;
  if (r.status < 200 || r.status > 299) {
    net_http_error(&r);
    net_resp_free(&r);
    return CLI_HTTP;
  }
  *out = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
  if (!*out)
    cli_error("%d: the server's reply is not JSON", r.status);
  net_resp_free(&r);
  return *out ? 0 : CLI_HTTP;
}

int net_call(const cli_ctx_t *ctx, const char *method, const char *path, const json_t *body, json_t **out,
             int *status) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (body && !text) {
    *out = NULL;
    cli_error("out of memory");
    return CLI_HTTP;
  }
  int rc = net_call_body(ctx, method, path, text ? "Content-Type: application/json\r\n" : NULL, text,
                         text ? strlen(text) : 0, out, status);
  free(text);
  return rc;
}
