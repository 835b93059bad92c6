/* http/reply: the status-line table, reply heads (sized before they are
 * written: no fixed buffer), whole replies, and the write queue.
 *
 * A head is built into the same allocation as its write request: the exact
 * size is computed first from its parts (status text, content type, the
 * validated header lines of an http_headers_t, the framing header, the
 * connection header), then filled in. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/conn.h"
#include "util/err.h"
#include "util/fault.h"
#include "util/log.h"

static const struct {
  int status;
  const char *text;
} status_lines[] = {
    {100, "Continue"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {413, "Content Too Large"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {507, "Insufficient Storage"},
};

const char *http_status_text(int status) {
  for (size_t i = 0; i < sizeof status_lines / sizeof status_lines[0]; i++)
    if (status_lines[i].status == status)
      return status_lines[i].text;
  return "Unknown";
}

wreq_t *conn_wreq_new(conn_t *c, size_t extra) {
  wreq_t *w = FAULT_HIT(FAULT_ALLOC) ? NULL : malloc(sizeof *w + extra);
  if (!w)
    return NULL;
  w->conn = c;
  w->len = 0;
  w->owned = NULL;
  w->next = NULL;
  w->nbufs = 0;
  return w;
}

wreq_t *conn_wreq_text(conn_t *c, const char *text, size_t len) {
  wreq_t *w = conn_wreq_new(c, len);
  if (!w)
    return NULL;
  memcpy(w->data, text, len);
  w->bufs[0] = uv_buf_init(w->data, (unsigned)len);
  w->nbufs = 1;
  w->len = len;
  return w;
}

int conn_write(conn_t *c, wreq_t *w) {
  if (c->state == ST_CLOSED) {
    free(w->owned);
    free(w);
    return OFF_ESTOPPED;
  }
  c->queued += w->len;
  c->req_bytes += w->len;
  c->burst_bytes += w->len;
  c->srv->turn_bytes += w->len;
  int rc = c->io->write(c, w);
  if (rc != 0) {
    c->queued -= w->len;
    free(w->owned);
    free(w);
    conn_close(c);
    return OFF_ESYS;
  }
  return 0;
}

typedef enum { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE } frame_t;

#define HTTP_REPLY_COPY_MAX (16 * 1024) /* bodies up to this are copied behind the head */

/* Builds the head into a new write request with `extra` more bytes of room
 * after it. Sets *head_len. */
static wreq_t *head_new(conn_t *c, int status, const char *ctype, const http_headers_t *h, frame_t frame,
                        uint64_t length, size_t extra, size_t *head_len) {
  const char *text = http_status_text(status);
  const char *conn_hdr = c->close_after ? "Connection: close\r\n"
                         : c->req.http10 ? "Connection: keep-alive\r\n"
                                         : "";
  size_t hl = h ? h->lines.len : 0;
  size_t ctl = ctype ? strlen(ctype) : 0;
  size_t size = 32 + strlen(text) + (ctype ? 16 + ctl : 0) + hl + 48 + strlen(conn_hdr) + 2;
  wreq_t *w = conn_wreq_new(c, size + extra);
  if (!w)
    return NULL;
  char *o = w->data;
  o += sprintf(o, "HTTP/1.1 %d %s\r\n", status, text);
  if (ctype) {
    memcpy(o, "Content-Type: ", 14);
    memcpy(o + 14, ctype, ctl);
    memcpy(o + 14 + ctl, "\r\n", 2);
    o += 16 + ctl;
  }
  if (hl) {
    memcpy(o, h->lines.data, hl);
    o += hl;
  }
  if (frame == FRAME_LENGTH)
    o += sprintf(o, "Content-Length: %" PRIu64 "\r\n", length);
  else if (frame == FRAME_CHUNKED)
    o += sprintf(o, "Transfer-Encoding: chunked\r\n");
  size_t cl = strlen(conn_hdr);
  memcpy(o, conn_hdr, cl);
  o += cl;
  memcpy(o, "\r\n", 2);
  o += 2;
  *head_len = (size_t)(o - w->data);
  return w;
}

/* The reply is starting: count it, and once shutting down tell the client
 * not to reuse the connection. */
static void reply_begin(conn_t *c, int status) {
  http_server_t *s = c->srv;
  if (status >= 100 && status < 600)
    s->stats.by_status[status]++;
  c->req_status = status;
  if (s->freeing || s->stopped)
    c->close_after = true;
  /* A request whose body was not read to its end cannot be followed by
   * another on this connection. */
  if ((c->req.content_length > 0 || c->req.chunked) && !c->msg_complete)
    c->close_after = true;
}

/* `owned`, when not NULL, is `body` handed over (malloc'd). */
static void reply_whole(http_req_t *req, int status, const char *ctype, const http_headers_t *h, const char *body,
                        size_t len, char *owned) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || c->streaming) {
    log_error("http: reply to a request that is not waiting for one (state %d)", (int)c->state);
    free(owned);
    return;
  }
  /* The handler lets go of the request now, before any failure below can
   * close the connection (and call the abort callback). */
  c->abort_cb = NULL;
  reply_begin(c, status);
  size_t body_len = req->method == HTTP_M_HEAD ? 0 : len;
  /* A small body is copied behind the head (one buffer, one plain write);
   * a large one handed over is sent from where it is. */
  bool send_owned = owned && body_len > HTTP_REPLY_COPY_MAX;
  size_t copy = send_owned ? 0 : body_len;
  size_t hlen;
  wreq_t *w = head_new(c, status, ctype, h, FRAME_LENGTH, len, copy, &hlen);
  if (!w) {
    free(owned);
    conn_close(c);
    return;
  }
  if (copy)
    memcpy(w->data + hlen, body, copy);
  w->bufs[0] = uv_buf_init(w->data, (unsigned)(hlen + copy));
  w->nbufs = 1;
  if (send_owned) {
    w->owned = owned;
    w->bufs[1] = uv_buf_init(owned, (unsigned)body_len);
    w->nbufs = 2;
  } else {
    free(owned);
  }
  w->len = hlen + body_len;
  /* The handler is done with the request: give back a large body buffer now
   * rather than holding it for as long as the connection stays open. */
  if (c->body.cap > HTTP_BODY_KEEP_MAX)
    buf_free(&c->body);
  if (conn_write(c, w) != 0)
    return;
  conn_reply_done(c);
}

void http_reply(http_req_t *req, int status, const char *content_type, const http_headers_t *headers,
                const char *body, size_t len) {
  reply_whole(req, status, content_type, headers, body, len, NULL);
}

void http_reply_take(http_req_t *req, int status, const char *content_type, const http_headers_t *headers, char *body,
                     size_t len) {
  reply_whole(req, status, content_type, headers, body, len, body);
}

void http_req_on_abort(http_req_t *req, http_abort_cb cb, void *data) {
  conn_t *c = req->_conn;
  c->abort_cb = cb;
  c->abort_data = data;
}

/* ---- streamed replies (the head and memory pieces; files in stream.c) ---- */

/* Queues a piece of a streamed reply. A failure closes the connection
 * without calling the abort callback: the writer learns it from the return
 * value, inside its own call, and must not be called back into. */
static int stream_queue(conn_t *c, wreq_t *w) {
  http_abort_cb cb = c->abort_cb;
  c->abort_cb = NULL;
  if (conn_write(c, w) != 0)
    return OFF_ESYS;
  c->abort_cb = cb;
  return 0;
}

int http_stream_start(http_req_t *req, int status, const char *content_type, const http_headers_t *headers,
                      int64_t content_length) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || c->streaming)
    return OFF_EINVAL;
  reply_begin(c, status);
  c->no_body_out = req->method == HTTP_M_HEAD || status == 204 || status == 304 || status < 200;
  frame_t frame = FRAME_LENGTH;
  if (content_length < 0) {
    if (c->no_body_out || req->http10) {
      frame = FRAME_CLOSE;
      c->close_after = true; /* HTTP/1.0: the end of the body is the close */
    } else {
      frame = FRAME_CHUNKED;
    }
  }
  size_t hlen;
  wreq_t *w = head_new(c, status, content_type, headers, frame, content_length < 0 ? 0 : (uint64_t)content_length, 0,
                       &hlen);
  if (!w) {
    c->abort_cb = NULL;
    conn_close(c);
    return OFF_ENOMEM;
  }
  w->bufs[0] = uv_buf_init(w->data, (unsigned)hlen);
  w->nbufs = 1;
  w->len = hlen;
  c->streaming = true;
  c->chunked_out = frame == FRAME_CHUNKED && !c->no_body_out;
  c->out_left = frame == FRAME_LENGTH ? content_length : -1;
  return stream_queue(c, w);
}

int http_stream_write(http_req_t *req, const void *data, size_t len) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || !c->streaming || c->file)
    return OFF_EINVAL;
  if (c->no_body_out || len == 0)
    return 0;
  if (c->out_left >= 0 && (uint64_t)len > (uint64_t)c->out_left) {
    log_error("http: streamed reply longer than its Content-Length; truncated");
    len = (size_t)c->out_left;
    if (len == 0)
      return 0;
  }
  if (c->queued > HTTP_STREAM_MAX_UNSENT) {
    c->srv->stats.dropped_slow++;
    c->abort_cb = NULL; /* the writer learns it from the return value */
    conn_close(c);
    return OFF_EFULL;
  }
  char frame[24];
  size_t flen = c->chunked_out ? (size_t)sprintf(frame, "%zx\r\n", len) : 0;
  wreq_t *w = conn_wreq_new(c, flen + len + 2);
  if (!w) {
    c->abort_cb = NULL;
    conn_close(c);
    return OFF_ENOMEM;
  }
  memcpy(w->data, frame, flen);
  memcpy(w->data + flen, data, len);
  size_t total = flen + len;
  if (c->chunked_out) {
    memcpy(w->data + total, "\r\n", 2);
    total += 2;
  }
  w->bufs[0] = uv_buf_init(w->data, (unsigned)total);
  w->nbufs = 1;
  w->len = total;
  if (c->out_left >= 0)
    c->out_left -= (int64_t)len;
  return stream_queue(c, w);
}

size_t http_stream_unsent(const http_req_t *req) { return ((const conn_t *)req->_conn)->queued; }

void http_stream_on_drain(http_req_t *req, http_drain_cb cb, void *data) {
  conn_t *c = req->_conn;
  c->drain_cb = cb;
  c->drain_data = data;
}

void http_stream_end(http_req_t *req) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || !c->streaming || c->file)
    return;
  c->drain_cb = NULL;
  if (c->out_left > 0 && !c->no_body_out) { /* HEAD, 204, 304: no body is owed */
    log_error("http: streamed reply ended %" PRId64 " bytes short of its Content-Length; closing", c->out_left);
    c->close_after = true;
  }
  if (c->chunked_out) {
    static const char last[] = "0\r\n\r\n";
    wreq_t *w = conn_wreq_text(c, last, sizeof last - 1);
    if (!w) {
      c->abort_cb = NULL;
      conn_close(c);
      return;
    }
    if (stream_queue(c, w) != 0)
      return;
  }
  c->abort_cb = NULL; /* answered */
  c->streaming = false;
  conn_reply_done(c);
}
