/* http: listener, connections, llhttp glue, replies. See http.h.
 *
 * DESIGN: each connection owns a TCP handle, one timer and an llhttp parser.
 * Bytes read are appended to the connection's input buffer and parsed from
 * there. The parser is paused at the end of every message (on_message_complete
 * returns HPE_PAUSED): the request is dispatched outside the parser's
 * callbacks, and parsing resumes only after its reply has been queued, so
 * pipelined requests are answered in order even when a reply is held. While a
 * reply is pending the connection keeps reading (to notice a client that
 * leaves) into the input buffer, up to IN_BUF_PAUSED_MAX, then stops reading.
 *
 * The one timer serves, by state: the head deadline (from the connection's
 * opening or a request's first byte until its headers are complete), the
 * body deadline (the same length, from the end of the head), the keep-alive
 * idle limit, the lingering close, and a zero
 * timeout that resumes parsing after a held reply (so a reply sent from deep
 * inside another module never re-enters the parser).
 *
 * Memory: a connection is freed only from the close callbacks of both its
 * handles, so code that closed it may still look at its flags until it
 * returns to the loop. */
#include "http/http.h"

#include <assert.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/dlist.h"
#include "util/log.h"

#define READ_BUF_SIZE (64 * 1024)
#define IN_BUF_PAUSED_MAX (64 * 1024) /* stop reading past this while paused */
#define WRITE_QUEUE_MAX (1024 * 1024) /* stop parsing while more is unsent */
#define LINGER_MS 2000                /* read-and-discard before a close */
#define BURST_MAX 32                  /* requests per pass before yielding to other connections */
#define FIELD_MAX 32                  /* longest header name we look at */
#define CTYPE_MAX 256

typedef enum {
  ST_IDLE,       /* between requests (or fresh): head deadline or keep-alive timer */
  ST_HEAD,       /* reading a request head */
  ST_BODY,       /* reading a body */
  ST_DISPATCHED, /* handed to the handler, reply pending */
  ST_LINGER,     /* last reply sent; shutting down */
  ST_CLOSED,
} conn_state_t;

typedef enum { HDR_NONE, HDR_CONTENT_TYPE, HDR_EXPECT } hdr_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  http_server_t *srv;
  llhttp_t parser;
  conn_state_t state;
  int open_handles;
  struct conn *prev, *next;

  char *in; /* unparsed input */
  size_t in_len, in_cap;
  bool reading;
  bool paused_parser;         /* llhttp is paused at a message end */
  bool resume_pending;        /* on the server's resume list */
  struct conn *rprev, *rnext; /* resume list links */
  bool parsing;               /* inside process_input: it continues by itself */
  bool peer_eof;              /* the client half-closed: answer what it sent, then close */
  bool shut_down;             /* uv_shutdown issued (once only) */
  bool shut_done;             /* ... and completed: every reply is in the kernel */
  bool close_after;           /* close once the current reply is written */

  /* The request being read. */
  http_req_t req;
  char *url;
  size_t url_len, url_cap;
  char *body;
  size_t body_len, body_cap;
  size_t head_bytes;
  char field[FIELD_MAX + 1];
  size_t field_len;
  bool field_long;
  hdr_t hdr;
  char ctype[CTYPE_MAX + 1];
  size_t ctype_len;
  bool has_ctype;
  char expect[32];
  size_t expect_len;
  http_req_error_t err;
} conn_t;

struct http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bool listening;
  bool freeing;
  http_config_t cfg;
  http_request_cb cb;
  void *data;
  llhttp_settings_t settings;
  conn_t *conns;
  conn_t *resume_head, *resume_tail; /* connections to parse again next loop turn */
  uv_idle_t resume_idle;
  int open_handles; /* listener, resume_idle */
  int port;
  http_stats_t stats;
  char readbuf[READ_BUF_SIZE]; /* reads are delivered one at a time */
};

static void conn_close(conn_t *c);
static void process_input(conn_t *c);
static void on_resume_idle(uv_idle_t *h);

/* ---- small helpers ---- */

static int buf_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t ncap = *cap ? *cap : 256;
    while (ncap < *len + n + 1)
      ncap *= 2;
    char *nb = realloc(*buf, ncap);
    if (!nb)
      return -1;
    *buf = nb;
    *cap = ncap;
  }
  memcpy(*buf + *len, at, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

static const char *status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  }
  return "Unknown";
}

static void timer_set(conn_t *c, uv_timer_cb cb, uint64_t ms) { uv_timer_start(&c->timer, cb, ms, 0); }

static void on_timeout_close(uv_timer_t *t) {
  conn_t *c = t->data;
  log_debug("http: connection timed out in state %d", (int)c->state);
  conn_close(c);
}

/* Parses `c` again on the next loop turn (from an idle handle, after the
 * poll phase has let every other connection in): used after a held reply,
 * when the client drains its replies, and to break up pipelined bursts. A
 * zero timer would not do: libuv 1.44 runs a timer re-armed from its own
 * callback again in the same turn. */
static void schedule_resume(conn_t *c) {
  if (c->resume_pending || c->state == ST_CLOSED)
    return;
  http_server_t *s = c->srv;
  c->resume_pending = true;
  DLIST_APPEND(s->resume_head, s->resume_tail, c, rprev, rnext);
  uv_idle_start(&s->resume_idle, on_resume_idle);
}

static void unschedule_resume(conn_t *c) {
  if (!c->resume_pending)
    return;
  DLIST_UNLINK(c->srv->resume_head, c->srv->resume_tail, c, rprev, rnext);
  c->resume_pending = false;
}

static void on_resume_idle(uv_idle_t *h) {
  http_server_t *s = h->data;
  /* Only those scheduled before this turn: a burst re-schedules itself. */
  conn_t *last = s->resume_tail;
  while (s->resume_head) {
    conn_t *c = s->resume_head;
    unschedule_resume(c);
    process_input(c);
    if (c == last)
      break;
  }
  if (!s->resume_head)
    uv_idle_stop(h);
}

#define BODY_KEEP_MAX (64 * 1024) /* larger body buffers are freed after each request */

static void request_reset(conn_t *c) {
  if (c->body_cap > BODY_KEEP_MAX) {
    free(c->body);
    c->body = NULL;
    c->body_cap = 0;
  }
  c->url_len = 0;
  if (c->url)
    c->url[0] = '\0';
  c->body_len = 0;
  c->head_bytes = 0;
  c->field_len = 0;
  c->field_long = false;
  c->hdr = HDR_NONE;
  c->ctype_len = 0;
  c->has_ctype = false;
  c->expect_len = 0;
  c->err = HTTP_ERR_NONE;
  memset(&c->req, 0, sizeof c->req);
  c->req._conn = c;
}

/* ---- llhttp callbacks: they only collect; dispatch happens outside ---- */

static int count_head(conn_t *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > c->srv->cfg.max_header_bytes) {
    c->err = HTTP_ERR_HEADER_TOO_BIG;
    return HPE_USER;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = p->data;
  request_reset(c);
  c->state = ST_HEAD;
  timer_set(c, on_timeout_close, c->srv->cfg.request_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n))
    return HPE_USER;
  return buf_append(&c->url, &c->url_len, &c->url_cap, at, n) ? HPE_USER : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n))
    return HPE_USER;
  if (c->field_len + n > FIELD_MAX) {
    c->field_long = true;
    return 0;
  }
  memcpy(c->field + c->field_len, at, n);
  c->field_len += n;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->field[c->field_len] = '\0';
  c->hdr = HDR_NONE;
  if (!c->field_long) {
    if (strcasecmp(c->field, "content-type") == 0) {
      c->hdr = HDR_CONTENT_TYPE;
      c->ctype_len = 0;
      c->has_ctype = true;
    } else if (strcasecmp(c->field, "expect") == 0) {
      c->hdr = HDR_EXPECT;
      c->expect_len = 0;
    }
  }
  c->field_len = 0;
  c->field_long = false;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (count_head(c, n))
    return HPE_USER;
  if (c->hdr == HDR_CONTENT_TYPE) {
    size_t room = CTYPE_MAX - c->ctype_len;
    size_t k = n < room ? n : room;
    memcpy(c->ctype + c->ctype_len, at, k);
    c->ctype_len += k;
  } else if (c->hdr == HDR_EXPECT) {
    size_t room = sizeof c->expect - 1 - c->expect_len;
    size_t k = n < room ? n : room;
    memcpy(c->expect + c->expect_len, at, k);
    c->expect_len += k;
  }
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->hdr = HDR_NONE;
  return 0;
}

static void write_raw(conn_t *c, const char *text, size_t len);

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->ctype[c->ctype_len] = '\0';
  c->expect[c->expect_len] = '\0';
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->cfg.max_body) {
    c->err = HTTP_ERR_BODY_TOO_BIG;
    return HPE_USER;
  }
  if (c->expect_len && strcasecmp(c->expect, "100-continue") == 0 && p->http_minor >= 1) {
    write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (c->state == ST_CLOSED)
      return HPE_USER;
  }
  c->state = ST_BODY;
  timer_set(c, on_timeout_close, c->srv->cfg.request_timeout_ms);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (c->body_len + n > c->srv->cfg.max_body) {
    c->err = HTTP_ERR_BODY_TOO_BIG;
    return HPE_USER;
  }
  return buf_append(&c->body, &c->body_len, &c->body_cap, at, n) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  if (!llhttp_should_keep_alive(p) || p->upgrade)
    c->close_after = true;
  return HPE_PAUSED;
}

/* ---- replies ---- */

typedef struct write_req {
  uv_write_t req;
  conn_t *conn;
  size_t len;
  char data[];
} write_req_t;

static void on_linger_done(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  if (status != 0 || c->state != ST_LINGER)
    return; /* closed meanwhile (the handle close cancels us) */
  c->shut_done = true;
  /* The client already finished sending: nothing left to linger for. */
  if (c->peer_eof)
    conn_close(c);
  else
    timer_set(c, on_linger_done, LINGER_MS); /* read and discard its last bytes, then close */
}

/* Half-closes our side once every reply is written (LINGER state). */
static void shutdown_when_written(conn_t *c) {
  if (c->shut_down || uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0)
    return;
  c->shut_down = true;
  uv_shutdown_t *sd = malloc(sizeof *sd);
  if (sd)
    sd->data = c;
  if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    free(sd);
    conn_close(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  conn_t *c = w->conn;
  free(w);
  if (c->state == ST_CLOSED)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->state == ST_LINGER) {
    shutdown_when_written(c);
    return;
  }
  /* Parsing may have stopped because the client was not reading replies. */
  if (c->state == ST_IDLE && (c->in_len || c->peer_eof) &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= WRITE_QUEUE_MAX)
    schedule_resume(c);
}

static void write_raw(conn_t *c, const char *text, size_t len) {
  write_req_t *w = malloc(sizeof *w + len);
  if (!w) {
    conn_close(c);
    return;
  }
  w->conn = c;
  w->len = len;
  memcpy(w->data, text, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(w);
    conn_close(c);
  }
}

static void on_linger_done(uv_timer_t *t) { conn_close(t->data); }

void http_reply(http_req_t *req, int status, const char *content_type, const char *headers, const char *body,
                size_t len) {
  conn_t *c = req->_conn;
  assert(c->state == ST_DISPATCHED);
  http_server_t *s = c->srv;
  /* The request is answered: the handler lets go of it now, before any
   * failure below can close the connection (and call the abort callback). */
  req->_abort_cb = NULL;
  if (status >= 100 && status < 600)
    s->stats.by_status[status]++;
  if (s->freeing || !s->listening)
    c->close_after = true; /* shutting down: tell the client not to reuse this */
  bool head = req->method == HTTP_M_HEAD;
  bool http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;

  char head_buf[1024];
  int n = snprintf(head_buf, sizeof head_buf,
                   "HTTP/1.1 %d %s\r\n"
                   "%s%s%s"
                   "Content-Length: %zu\r\n"
                   "%s"
                   "%s"
                   "\r\n",
                   status, status_text(status), content_type ? "Content-Type: " : "", content_type ? content_type : "",
                   content_type ? "\r\n" : "", len, headers ? headers : "",
                   c->close_after ? "Connection: close\r\n" : (http10 ? "Connection: keep-alive\r\n" : ""));
  assert(n > 0 && (size_t)n < sizeof head_buf);
  size_t body_len = head ? 0 : len;
  write_req_t *w = malloc(sizeof *w + (size_t)n + body_len);
  if (!w) {
    conn_close(c);
    return;
  }
  w->conn = c;
  w->len = (size_t)n + body_len;
  memcpy(w->data, head_buf, (size_t)n);
  if (body_len)
    memcpy(w->data + n, body, body_len);

  /* The handler is done with the request: give back a large body buffer now
   * rather than holding it for as long as the connection stays open. */
  if (c->body_cap > BODY_KEEP_MAX) {
    free(c->body);
    c->body = NULL;
    c->body_cap = c->body_len = 0;
  }
  if (c->close_after) {
    c->state = ST_LINGER;
    timer_set(c, on_linger_done, c->srv->cfg.keepalive_timeout_ms); /* for the replies to leave */
  } else {
    c->state = ST_IDLE;
    timer_set(c, on_timeout_close, s->cfg.keepalive_timeout_ms);
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(w);
    conn_close(c);
    return;
  }
  /* A held reply: resume the parser from the loop, not from this call stack. */
  if (c->state == ST_IDLE && !c->parsing && (c->paused_parser || c->in_len || c->peer_eof))
    schedule_resume(c);
}

void http_req_on_abort(http_req_t *req, http_abort_cb cb, void *data) {
  req->_abort_cb = cb;
  req->_abort_data = data;
}

/* ---- the parse loop ---- */

static void dispatch(conn_t *c) {
  http_req_t *r = &c->req;
  c->state = ST_DISPATCHED;
  uv_timer_stop(&c->timer);
  if (!c->url)
    buf_append(&c->url, &c->url_len, &c->url_cap, "", 0);
  if (!c->body)
    buf_append(&c->body, &c->body_len, &c->body_cap, "", 0);
  if (!c->url || !c->body) {
    conn_close(c);
    return;
  }
  char *q = strchr(c->url, '?');
  if (q) {
    *q = '\0';
    r->query = q + 1;
  }
  /* Absolute-form targets ("http://host/path") are legal; route on the path. */
  r->path = c->url;
  if (strncasecmp(c->url, "http://", 7) == 0) {
    char *slash = strchr(c->url + 7, '/');
    r->path = slash ? slash : "/";
  }
  r->body = c->body;
  r->body_len = c->body_len;
  r->content_type = c->has_ctype ? c->ctype : NULL;
  r->method_name = llhttp_method_name((llhttp_method_t)c->parser.method);
  switch (c->parser.method) {
  case HTTP_GET: r->method = HTTP_M_GET; break;
  case HTTP_HEAD: r->method = HTTP_M_HEAD; break;
  case HTTP_POST: r->method = HTTP_M_POST; break;
  case HTTP_PUT: r->method = HTTP_M_PUT; break;
  case HTTP_DELETE: r->method = HTTP_M_DELETE; break;
  case HTTP_PATCH: r->method = HTTP_M_PATCH; break;
  case HTTP_OPTIONS: r->method = HTTP_M_OPTIONS; break;
  default: r->method = HTTP_M_OTHER; break;
  }
  c->srv->cb(r, c->srv->data);
}

/* A request the parser rejected: let the API answer it, then close. */
static void dispatch_error(conn_t *c, http_req_error_t err, const char *detail) {
  request_reset(c);
  c->req.error = err;
  c->req.error_detail = detail;
  c->req.path = "";
  c->req.body = "";
  c->req.method_name = "";
  c->close_after = true;
  c->in_len = 0;
  c->state = ST_DISPATCHED;
  uv_timer_stop(&c->timer);
  c->srv->cb(&c->req, c->srv->data);
}

static void start_reading(conn_t *c);

static void on_linger_done(uv_timer_t *t);

static void process_input(conn_t *c) {
  size_t off = 0;
  int served = 0;
  c->parsing = true;
  while (c->state == ST_IDLE || c->state == ST_HEAD || c->state == ST_BODY) {
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_QUEUE_MAX)
      break; /* on_write resumes us */
    if (served == BURST_MAX && c->state == ST_IDLE) {
      /* A pipelined burst: let other connections in, continue next turn. */
      schedule_resume(c);
      break;
    }
    if (c->paused_parser) {
      llhttp_resume(&c->parser);
      c->paused_parser = false;
    }
    if (off == c->in_len)
      break;
    const char *start = c->in + off;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->in_len - off);
    if (c->state == ST_CLOSED) { /* a write failed inside a callback */
      c->parsing = false;
      return;
    }
    if (e == HPE_OK) {
      off = c->in_len;
      break;
    }
    if (e == HPE_PAUSED) {
      off += (size_t)(llhttp_get_error_pos(&c->parser) - start);
      c->paused_parser = true;
      served++;
      dispatch(c);
      continue;
    }
    if (e == HPE_PAUSED_UPGRADE) {
      /* The upgraded request was answered with Connection: close; drop the rest. */
      off = c->in_len;
      break;
    }
    if (c->err == HTTP_ERR_HEADER_TOO_BIG)
      dispatch_error(c, HTTP_ERR_HEADER_TOO_BIG, "The request's header block is larger than the limit.");
    else if (c->err == HTTP_ERR_BODY_TOO_BIG)
      dispatch_error(c, HTTP_ERR_BODY_TOO_BIG, "The request body is larger than the limit.");
    else
      dispatch_error(c, HTTP_ERR_PARSE, llhttp_errno_name(e));
    c->parsing = false;
    return;
  }
  c->parsing = false;
  if (c->state == ST_CLOSED)
    return;
  if (off) {
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
  }
  if (c->peer_eof && (c->state == ST_HEAD || c->state == ST_BODY)) {
    conn_close(c); /* half-closed in the middle of a request: it can never complete */
    return;
  }
  if (c->peer_eof && c->state == ST_IDLE && !c->resume_pending && c->in_len == 0 &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= WRITE_QUEUE_MAX) {
    /* Everything the half-closed client sent is answered (a partial request
     * can never complete): finish the replies, then close. */
    c->state = ST_LINGER;
    timer_set(c, on_linger_done, c->srv->cfg.keepalive_timeout_ms); /* for the replies to leave */
    shutdown_when_written(c);
    return;
  }
  if (!c->reading && !c->peer_eof && c->in_len < IN_BUF_PAUSED_MAX && c->state != ST_LINGER)
    start_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  *buf = uv_buf_init(c->srv->readbuf, sizeof c->srv->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread == 0)
    return;
  if (nread == UV_EOF && c->state != ST_DISPATCHED) {
    /* A half-close: the client may still read. Answer the complete requests
     * it sent, let every queued reply reach the kernel, then close. (With a
     * held reply pending, EOF means the client left: that request is aborted
     * below.) */
    c->peer_eof = true;
    c->reading = false;
    uv_read_stop(stream);
    if (c->state == ST_LINGER) {
      if (c->shut_done)
        conn_close(c); /* else on_shutdown closes it once the replies are out */
      return;
    }
    process_input(c);
    return;
  }
  if (nread < 0) {
    conn_close(c); /* error, or EOF while a held reply waits: aborted */
    return;
  }
  if (c->state == ST_LINGER)
    return; /* discard */
  if (buf_append(&c->in, &c->in_len, &c->in_cap, buf->base, (size_t)nread) != 0) {
    conn_close(c);
    return;
  }
  if (c->state != ST_DISPATCHED)
    process_input(c);
  /* Parsing is paused (a held reply, or a client not reading its replies):
   * buffer a little, then stop reading until it resumes. */
  if (c->state != ST_CLOSED && c->reading && c->in_len >= IN_BUF_PAUSED_MAX) {
    uv_read_stop(stream);
    c->reading = false;
  }
}

static void start_reading(conn_t *c) {
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->reading = true;
}

/* ---- connections ---- */

static void on_conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->open_handles > 0)
    return;
  free(c->in);
  free(c->url);
  free(c->body);
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->state == ST_CLOSED)
    return;
  bool pending = c->state == ST_DISPATCHED;
  unschedule_resume(c);
  c->state = ST_CLOSED;
  http_server_t *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->stats.connections--;
  if (pending && c->req._abort_cb) {
    http_abort_cb cb = c->req._abort_cb;
    c->req._abort_cb = NULL;
    cb(&c->req, c->req._abort_data);
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_rejected_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *listener, int status) {
  http_server_t *s = listener->data;
  if (status < 0) {
    log_warn("http: accept: %s", uv_strerror(status));
    return;
  }
  if (s->stats.connections >= s->cfg.max_connections) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t)
      return;
    uv_tcp_init(s->loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) == 0)
      s->stats.rejected++;
    uv_close((uv_handle_t *)t, on_rejected_closed);
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  c->state = ST_IDLE;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    c->state = ST_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  request_reset(c);
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->stats.connections++;
  s->stats.accepted++;
  /* The first head must arrive within the request timeout of the opening. */
  timer_set(c, on_timeout_close, s->cfg.request_timeout_ms);
  start_reading(c);
}

/* ---- the server ---- */

http_server_t *http_server_new(uv_loop_t *loop, const http_config_t *cfg, http_request_cb cb, void *data) {
  http_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->cfg = *cfg;
  s->cb = cb;
  s->data = data;
  llhttp_settings_init(&s->settings);
  s->settings.on_message_begin = on_message_begin;
  s->settings.on_url = on_url;
  s->settings.on_header_field = on_header_field;
  s->settings.on_header_field_complete = on_header_field_complete;
  s->settings.on_header_value = on_header_value;
  s->settings.on_header_value_complete = on_header_value_complete;
  s->settings.on_headers_complete = on_headers_complete;
  s->settings.on_body = on_body;
  s->settings.on_message_complete = on_message_complete;
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  uv_idle_init(loop, &s->resume_idle);
  s->resume_idle.data = s;
  s->open_handles = 2;
  return s;
}

int http_server_listen(http_server_t *s, const char *host, int port) {
  struct sockaddr_storage addr;
  int rc;
  if (strchr(host, ':'))
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (rc != 0)
    return rc;
  if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0)) != 0)
    return rc;
  if ((rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection)) != 0)
    return rc;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
  s->listening = true;
  return 0;
}

int http_server_port(const http_server_t *s) { return s->port; }

static void on_server_handle_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  if (--s->open_handles == 0)
    free(s); /* only after http_server_free closed the last one */
}

void http_server_stop_accepting(http_server_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  s->listening = false;
}

void http_server_free(http_server_t *s) {
  s->freeing = true;
  while (s->conns)
    conn_close(s->conns);
  http_server_stop_accepting(s);
  uv_close((uv_handle_t *)&s->resume_idle, on_server_handle_closed);
}

const http_stats_t *http_server_stats(const http_server_t *s) { return &s->stats; }
