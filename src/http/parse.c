/* http/parse: llhttp callbacks → the request being read (path, query,
 * headers, buffered body) and the head/body limits.
 *
 * The callbacks only collect and count; they never dispatch. They pause the
 * parser (HPE_PAUSED) at the end of the head, at the end of the message, and
 * when a streamed body's handler asks to stop, and conn_process (conn.c)
 * acts on the pause outside llhttp. A header name with a space or other
 * non-token byte is a parse error here, never a header llhttp skips (it
 * would let "Content Length: 5" leave the body to be read as a second
 * request). llhttp's own strict mode would do it too, but also refuses raw
 * UTF-8 bytes in request targets, which real clients send. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/conn.h"
#include "util/log.h"

static conn_t *conn_of(llhttp_t *p) { return p->data; }

void parse_request_reset(conn_t *c) {
  if (c->body.cap > HTTP_BODY_KEEP_MAX)
    buf_free(&c->body);
  buf_reset(&c->body);
  buf_reset(&c->url);
  buf_reset(&c->hdr_text);
  buf_reset(&c->hdr_index);
  c->nhdrs = 0;
  c->in_field = false;
  c->head_bytes = 0;
  c->body_seen = 0;
  c->body_mode = HTTP_BODY_BUFFER;
  c->body_limit = c->srv->cfg.max_body;
  c->continue_sent = false;
  c->dispatched = c->msg_complete = false;
  c->err = HTTP_ERR_NONE;
  c->err_detail = NULL;
  c->body_reading = c->body_paused = false;
  c->body_data = NULL;
  c->body_end = NULL;
  c->body_ud = NULL;
  c->abort_cb = NULL;
  c->abort_data = NULL;
  c->streaming = c->chunked_out = c->no_body_out = false;
  c->out_left = -1;
  c->drain_cb = NULL;
  c->drain_data = NULL;
  memset(&c->req, 0, sizeof c->req);
  c->req._conn = c;
  c->req.content_length = -1;
}

static int count_head(conn_t *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > c->srv->cfg.max_header_bytes) {
    c->err = HTTP_ERR_HEADER_TOO_BIG;
    return HPE_USER;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = conn_of(p);
  parse_request_reset(c);
  conn_head_started(c);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (count_head(c, n))
    return HPE_USER;
  return buf_append(&c->url, at, n) ? HPE_USER : 0;
}

/* Header names and values arrive in pieces; a name piece after a value
 * starts the next header. Every piece goes into hdr_text, NUL-separated, and
 * each header's offsets into hdr_index. Both are bounded by the head limit
 * (max_header_bytes), so every header is kept, however many there are. */
static conn_hdr_t *last_hdr(conn_t *c) { return (conn_hdr_t *)c->hdr_index.data + (c->nhdrs - 1); }

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (count_head(c, n))
    return HPE_USER;
  for (size_t i = 0; i < n; i++) {
    if (!http_header_token_char((unsigned char)at[i])) {
      c->err = HTTP_ERR_PARSE;
      c->err_detail = "HPE_INVALID_HEADER_TOKEN";
      return HPE_USER;
    }
  }
  if (!c->in_field) {
    c->in_field = true;
    conn_hdr_t h = {(uint32_t)c->hdr_text.len, UINT32_MAX};
    if (buf_append(&c->hdr_index, &h, sizeof h))
      return HPE_USER;
    c->nhdrs++;
  }
  return buf_append(&c->hdr_text, at, n) ? HPE_USER : 0;
}

static int on_header_field_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  if (buf_append(&c->hdr_text, "", 1)) /* the name's NUL */
    return HPE_USER;
  last_hdr(c)->value = (uint32_t)c->hdr_text.len;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (count_head(c, n))
    return HPE_USER;
  c->in_field = false;
  return buf_append(&c->hdr_text, at, n) ? HPE_USER : 0;
}

static int on_header_value_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  c->in_field = false;
  return buf_append(&c->hdr_text, "", 1) ? HPE_USER : 0; /* the value's NUL */
}

const char *http_req_header(const http_req_t *req, const char *name) {
  const conn_t *c = req->_conn;
  const conn_hdr_t *h = (const conn_hdr_t *)c->hdr_index.data;
  for (size_t i = 0; i < c->nhdrs; i++) {
    if (h[i].value == UINT32_MAX || h[i].value >= c->hdr_text.len)
      continue;
    if (strcasecmp(c->hdr_text.data + h[i].name, name) == 0)
      return c->hdr_text.data + h[i].value;
  }
  return NULL;
}

static http_method_t method_of(uint8_t m) {
  switch (m) {
  case HTTP_GET: return HTTP_M_GET;
  case HTTP_HEAD: return HTTP_M_HEAD;
  case HTTP_POST: return HTTP_M_POST;
  case HTTP_PUT: return HTTP_M_PUT;
  case HTTP_DELETE: return HTTP_M_DELETE;
  case HTTP_PATCH: return HTTP_M_PATCH;
  case HTTP_OPTIONS: return HTTP_M_OPTIONS;
  default: return HTTP_M_OTHER;
  }
}

/* Head complete: fill in what the head callback looks at, then pause so
 * conn_process runs it outside the parser. */
static int on_headers_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  http_req_t *r = &c->req;
  if (!parse_finish_request(c))
    return HPE_USER;
  r->chunked = (p->flags & F_CHUNKED) != 0;
  r->content_length = (p->flags & F_CONTENT_LENGTH) && !r->chunked ? (int64_t)p->content_length : -1;
  r->http10 = p->http_major == 1 && p->http_minor == 0;
  const char *expect = http_req_header(r, "expect");
  r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0 && !r->http10;
  r->content_type = http_req_header(r, "content-type");
  c->pause_why = PAUSE_HEAD;
  return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (c->body_seen + n > c->body_limit) {
    c->err = HTTP_ERR_BODY_TOO_BIG;
    return HPE_USER;
  }
  c->body_seen += n;
  switch (c->body_mode) {
  case HTTP_BODY_BUFFER: return buf_append(&c->body, at, n) ? HPE_USER : 0;
  case HTTP_BODY_REFUSE: return 0; /* read and dropped */
  case HTTP_BODY_STREAM: {
    int rc = c->body_data(&c->req, at, n, c->body_ud);
    if (c->state != ST_DISPATCHED || !c->body_reading)
      return HPE_USER; /* it replied (or the connection closed): no more pieces */
    if (rc == HTTP_BODY_PAUSE) {
      c->pause_why = PAUSE_BODY;
      return HPE_PAUSED;
    }
    return 0;
  }
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  if (!llhttp_should_keep_alive(p) || p->upgrade)
    c->close_after = true;
  c->msg_complete = true;
  c->pause_why = PAUSE_END;
  return HPE_PAUSED;
}

void parse_settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_message_begin = on_message_begin;
  s->on_url = on_url;
  s->on_header_field = on_header_field;
  s->on_header_field_complete = on_header_field_complete;
  s->on_header_value = on_header_value;
  s->on_header_value_complete = on_header_value_complete;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}

bool parse_finish_request(conn_t *c) {
  http_req_t *r = &c->req;
  if (buf_append(&c->url, "", 0) || buf_append(&c->body, "", 0) || buf_append(&c->hdr_text, "", 0))
    return false;
  char *url = c->url.data;
  char *q = strchr(url, '?');
  if (q) {
    *q = '\0';
    r->query = q + 1;
  }
  /* Absolute-form targets ("http://host/path") are legal; route on the path. */
  r->path = url;
  if (strncasecmp(url, "http://", 7) == 0) {
    char *slash = strchr(url + 7, '/');
    r->path = slash ? slash : "/";
  }
  r->body = c->body.data;
  r->body_len = c->body.len;
  r->method_name = llhttp_method_name((llhttp_method_t)c->parser.method);
  r->method = method_of(c->parser.method);
  return true;
}

void parse_send_continue(conn_t *c) {
  if (!c->req.expect_continue || c->continue_sent)
    return;
  c->continue_sent = true;
  static const char text[] = "HTTP/1.1 100 Continue\r\n\r\n";
  wreq_t *w = conn_wreq_text(c, text, sizeof text - 1);
  if (!w) {
    conn_close(c);
    return;
  }
  conn_write(c, w);
}

void http_req_plan(http_req_t *req, http_body_mode_t mode, size_t limit) {
  conn_t *c = req->_conn;
  c->body_mode = mode;
  c->body_limit = limit ? limit : c->srv->cfg.max_body;
}
