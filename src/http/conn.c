/* http/conn: the connection state machine. See conn.h for the states.
 *
 * DESIGN: bytes read are appended to the connection's input buffer and
 * parsed from there (conn_process). The parser pauses at the end of a head
 * (the head callback chooses the body plan), at the end of every message
 * (the request is dispatched outside the parser's callbacks) and when a
 * streamed body's handler asks to wait. Parsing resumes only after the reply
 * has ended, so pipelined requests are answered in order even when a reply
 * is held or streamed. While a reply is pending the connection keeps reading
 * (to notice a client that leaves) up to HTTP_IN_PAUSED_MAX, then stops.
 *
 * Fairness and memory: one pass over a connection's input serves at most
 * HTTP_BURST_MAX requests or HTTP_BURST_BYTES of replies, then yields to the
 * others (an idle handle resumes it next loop turn; a zero timer would not
 * do: libuv 1.44 runs a timer re-armed from its own callback again in the
 * same turn). The resumed connections together get HTTP_TURN_BYTES or
 * HTTP_TURN_NS per turn. A connection whose unsent output is over
 * HTTP_OUT_HIGH_WATER parses nothing (and soon reads nothing) until it drains
 * below HTTP_OUT_LOW_WATER, so a client that pipelines and never reads costs
 * at most the high-water mark plus one reply.
 *
 * The one timer serves, by state: the head deadline (from the connection's
 * opening or a request's first byte until its headers are complete), the
 * body deadline (the same length, from the end of the head; for a streamed
 * body, between two pieces, never while the handler paused it), the send
 * timeout (replies queued: restarted by each completed write), the
 * keep-alive idle limit (from the last byte written), and the lingering
 * close. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/conn.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

void conn_set_timer(conn_t *c, uv_timer_cb cb, uint64_t ms) { uv_timer_start(&c->timer, cb, ms, 0); }

static void on_timeout_close(uv_timer_t *t) {
  conn_t *c = t->data;
  log_debug("http: connection timed out in state %d", (int)c->state);
  conn_close(c);
}

static void on_linger_done(uv_timer_t *t) { conn_close(t->data); }

void conn_head_started(conn_t *c) {
  c->state = ST_HEAD;
  c->req_t0 = clock_mono_ns();
  c->req_bytes = 0;
  c->req_status = 0;
  conn_set_timer(c, on_timeout_close, c->srv->cfg.request_timeout_ms);
}

void conn_init(conn_t *c, http_server_t *s, const conn_io_t *io, void *io_data) {
  c->srv = s;
  c->io = io;
  c->io_data = io_data;
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->holds = 2; /* the timer and the transport */
  c->state = ST_IDLE;
  memcpy(c->peer, "-", 2); /* the listener fills in the client's address */
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  parse_request_reset(c);
}

static void start_reading(conn_t *c) {
  if (!c->reading) {
    c->reading = true;
    c->io->read_start(c);
  }
}

static void stop_reading(conn_t *c) {
  if (c->reading) {
    c->reading = false;
    c->io->read_stop(c);
  }
}

void conn_start(conn_t *c) {
  http_server_t *s = c->srv;
  DLIST_APPEND(s->conns_head, s->conns_tail, c, prev, next);
  c->listed = true;
  s->stats.connections++;
  s->stats.accepted++;
  /* The first head must arrive within the request timeout of the opening. */
  conn_set_timer(c, on_timeout_close, s->cfg.request_timeout_ms);
  start_reading(c);
}

void conn_release(conn_t *c) {
  if (--c->holds > 0)
    return;
  buf_free(&c->in);
  buf_free(&c->url);
  buf_free(&c->body);
  buf_free(&c->hdr_text);
  buf_free(&c->hdr_index);
  free(c);
}

static void on_timer_closed(uv_handle_t *h) { conn_release(h->data); }

void conn_io_closed(conn_t *c) { conn_release(c); }

/* ---- the resume list ---- */

void conn_schedule_resume(conn_t *c) {
  if (c->resume_pending || c->state == ST_CLOSED)
    return;
  http_server_t *s = c->srv;
  c->resume_pending = true;
  DLIST_APPEND(s->resume_head, s->resume_tail, c, rprev, rnext);
  uv_idle_start(&s->resume_idle, conn_on_resume_idle);
}

static void unschedule_resume(conn_t *c) {
  if (!c->resume_pending)
    return;
  DLIST_UNLINK(c->srv->resume_head, c->srv->resume_tail, c, rprev, rnext);
  c->resume_pending = false;
}

void conn_on_resume_idle(uv_idle_t *h) {
  http_server_t *s = h->data;
  /* Only those scheduled before this turn (a burst re-schedules itself),
   * and only while the turn's budget lasts: the rest go first next turn. */
  conn_t *last = s->resume_tail;
  uint64_t t0 = clock_mono_ns();
  s->turn_bytes = 0;
  while (s->resume_head) {
    conn_t *c = s->resume_head;
    unschedule_resume(c);
    conn_process(c);
    if (c == last || s->turn_bytes >= HTTP_TURN_BYTES || clock_mono_ns() - t0 >= HTTP_TURN_NS)
      break;
  }
  if (!s->resume_head)
    uv_idle_stop(h);
}

/* ---- closing ---- */

void conn_close(conn_t *c) {
  if (c->state == ST_CLOSED)
    return;
  bool pending = c->state == ST_DISPATCHED;
  conn_access_log(c); /* a request that never got its reply's end */
  unschedule_resume(c);
  c->state = ST_CLOSED;
  http_server_t *s = c->srv;
  if (c->listed) {
    DLIST_UNLINK(s->conns_head, s->conns_tail, c, prev, next);
    c->listed = false;
    s->stats.connections--;
  }
  http_abort_cb cb = pending ? c->abort_cb : NULL;
  c->abort_cb = NULL;
  c->body_reading = false;
  c->drain_cb = NULL;
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  /* A file operation in flight still uses the socket and the handler's file
   * descriptor: when it returns, it calls the abort callback (only then may
   * the handler close its file) and closes the transport. */
  if (stream_file_abort(c, cb, c->abort_data))
    return;
  if (cb)
    cb(&c->req, c->abort_data);
  c->io->close(c);
}

static void shutdown_when_written(conn_t *c) {
  if (c->shut_down || c->queued != 0)
    return;
  c->shut_down = true;
  if (c->io->shutdown(c) != 0)
    conn_close(c);
}

void conn_shutdown_done(conn_t *c, int status) {
  if (status != 0 || c->state != ST_LINGER)
    return; /* closed meanwhile (the close cancels us) */
  c->shut_done = true;
  /* The client already finished sending: nothing left to linger for. */
  if (c->peer_eof)
    conn_close(c);
  else
    conn_set_timer(c, on_linger_done, HTTP_LINGER_MS); /* read and discard its last bytes, then close */
}

/* The one timer after a reply (IDLE, or LINGER before the half-close),
 * armed once per reply: no timer work per completed write.
 *  - Replies still queued: a send timeout. Progress is measured in bytes
 *    (our queue plus the kernel's, io->unsent) when it fires, so a slow
 *    reader of a big reply is never cut off; a client that took no byte for
 *    a whole period, counted from the first time it fires, is dropped (after
 *    one to two periods).
 *  - Everything written: the keep-alive idle limit, counted from the moment
 *    the last write completed (idle_since). */
static void on_after_reply(uv_timer_t *t) {
  conn_t *c = t->data;
  uint64_t ms = c->srv->cfg.keepalive_timeout_ms;
  if (c->queued > 0) {
    size_t unsent = c->io->unsent(c);
    if (c->send_mark == SIZE_MAX || unsent < c->send_mark) {
      c->send_mark = unsent; /* first look, or it reads (if slowly) */
      conn_set_timer(c, on_after_reply, ms);
      return;
    }
    c->srv->stats.dropped_slow++;
    log_debug("http: client took no reply bytes for %llu ms; dropped", (unsigned long long)ms);
    conn_close(c);
    return;
  }
  uint64_t idle = uv_now(c->srv->loop) - c->idle_since;
  if (idle < ms) {
    conn_set_timer(c, on_after_reply, ms - idle);
    return;
  }
  log_debug("http: keep-alive connection idle for %llu ms; closed", (unsigned long long)ms);
  conn_close(c);
}

static void arm_after_reply(conn_t *c) {
  c->send_mark = SIZE_MAX; /* measured when the timer fires: no syscall per reply */
  c->idle_since = uv_now(c->srv->loop);
  conn_set_timer(c, on_after_reply, c->srv->cfg.keepalive_timeout_ms);
}

static void enter_linger(conn_t *c) {
  c->state = ST_LINGER;
  arm_after_reply(c);
  /* Discard what the client still sends, so the close is not a reset that
   * could destroy the last reply before the client read it. */
  buf_free(&c->in);
  if (!c->peer_eof)
    start_reading(c);
  shutdown_when_written(c);
}

/* ---- replies done, writes done ---- */

void conn_reply_done(conn_t *c) {
  if (c->state == ST_CLOSED)
    return;
  conn_access_log(c);
  c->abort_cb = NULL;
  c->drain_cb = NULL;
  c->body_reading = false; /* a streamed body the handler stopped wanting */
  if (c->close_after) {
    enter_linger(c);
    return;
  }
  c->state = ST_IDLE;
  arm_after_reply(c);
  /* A held reply: resume the parser from the loop, not from this call stack. */
  if (!c->parsing && (c->paused_parser || c->in.len || c->peer_eof))
    conn_schedule_resume(c);
}

void conn_write_done(conn_t *c, wreq_t *w, int status) {
  c->queued -= w->len;
  free(w->owned);
  free(w);
  if (c->state == ST_CLOSED)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->queued == 0)
    c->idle_since = uv_now(c->srv->loop); /* the keep-alive period starts now */
  if (c->state == ST_LINGER) {
    shutdown_when_written(c);
    return;
  }
  if (c->drain_cb && c->queued <= HTTP_STREAM_LOW_WATER) {
    http_drain_cb cb = c->drain_cb;
    c->drain_cb = NULL;
    cb(&c->req, c->drain_data);
    if (c->state == ST_CLOSED)
      return;
  }
  if (c->file)
    stream_file_written(c);
  if (c->out_paused && c->queued <= HTTP_OUT_LOW_WATER)
    c->out_paused = false;
  /* Parsing may have stopped because the client was not reading replies. */
  if (c->state == ST_IDLE && !c->out_paused && (c->in.len || c->peer_eof || c->paused_parser))
    conn_schedule_resume(c);
}

/* ---- dispatch ---- */

static void dispatch(conn_t *c) {
  http_req_t *r = &c->req;
  c->state = ST_DISPATCHED;
  c->dispatched = true;
  c->log_pending = true;
  if (!c->req_t0)
    c->req_t0 = clock_mono_ns();
  uv_timer_stop(&c->timer);
  r->body = c->body.data ? c->body.data : "";
  r->body_len = c->body.len;
  c->srv->cb(r, c->srv->data);
}

/* A request the parser rejected: let the API answer it, then close. */
static void dispatch_error(conn_t *c, http_req_error_t err, const char *detail) {
  parse_request_reset(c);
  c->req.error = err;
  c->req.error_detail = detail;
  c->req.path = "";
  c->req.body = "";
  c->req.method_name = "";
  c->close_after = true;
  c->state = ST_DISPATCHED;
  c->dispatched = true;
  c->log_pending = true;
  if (!c->req_t0)
    c->req_t0 = clock_mono_ns();
  uv_timer_stop(&c->timer);
  c->srv->cb(&c->req, c->srv->data);
}

/* The head is complete (the parser is paused right after it). */
static void on_head(conn_t *c) {
  http_req_t *r = &c->req;
  if (c->srv->head_cb)
    c->srv->head_cb(r, c->srv->data);
  if (c->state == ST_CLOSED)
    return;
  bool has_body = r->content_length > 0 || r->chunked;
  if (r->content_length > 0 && (uint64_t)r->content_length > c->body_limit) {
    dispatch_error(c, HTTP_ERR_BODY_TOO_BIG, NULL); /* before any 100 Continue */
    return;
  }
  if (c->body_mode == HTTP_BODY_STREAM || (c->body_mode == HTTP_BODY_REFUSE && has_body && r->expect_continue)) {
    dispatch(c); /* the handler takes the body, or it is never read */
    return;
  }
  c->state = ST_BODY;
  if (has_body) { /* (without one the message ends at once: no timer to set) */
    parse_send_continue(c);
    conn_set_timer(c, on_timeout_close, c->srv->cfg.request_timeout_ms);
  }
}

/* The parser reached the end of a message. */
static void on_end(conn_t *c) {
  if (!c->dispatched) {
    dispatch(c);
    return;
  }
  /* A streamed body ended (its request is already with the handler, which
   * has not replied yet: a reply clears body_reading). */
  if (c->state == ST_DISPATCHED && c->body_reading) {
    c->body_reading = false;
    uv_timer_stop(&c->timer);
    c->body_end(&c->req, HTTP_ERR_NONE, c->body_ud);
  }
}

static void on_parse_error(conn_t *c, llhttp_errno_t e) {
  if (c->state == ST_LINGER)
    return; /* a streamed body's handler already replied: we stopped the parser */
  http_req_error_t err = c->err ? c->err : HTTP_ERR_PARSE;
  if (e != HPE_USER || !c->err)
    log_debug("http: parse error: %s (%s)", llhttp_errno_name(e), llhttp_get_error_reason(&c->parser));
  if (c->dispatched && c->state == ST_DISPATCHED) {
    /* A streamed body went wrong: the handler answers; then close. */
    c->close_after = true;
    if (c->body_reading) { /* not replied yet */
      c->body_reading = false;
      uv_timer_stop(&c->timer);
      c->body_end(&c->req, err, c->body_ud);
    }
    return;
  }
  dispatch_error(c, err, c->err_detail ? c->err_detail : err == HTTP_ERR_PARSE ? llhttp_errno_name(e) : NULL);
}

static bool can_parse(const conn_t *c) {
  switch (c->state) {
  case ST_IDLE:
  case ST_HEAD:
  case ST_BODY: return true;
  case ST_DISPATCHED: return c->body_reading && !c->body_paused;
  default: return false;
  }
}

void conn_process(conn_t *c) {
  if (c->parsing)
    return; /* called back from inside a pass: it continues by itself */
  size_t off = 0;
  int served = 0;
  c->parsing = true;
  c->burst_bytes = 0;
  while (can_parse(c)) {
    if (c->state == ST_IDLE) {
      if (c->queued > HTTP_OUT_HIGH_WATER) {
        if (!c->out_paused)
          c->srv->stats.paused_output++;
        c->out_paused = true;
        break; /* conn_write_done resumes us */
      }
      if (served >= HTTP_BURST_MAX || c->burst_bytes >= HTTP_BURST_BYTES) {
        conn_schedule_resume(c); /* let other connections in */
        break;
      }
    }
    bool resumed = c->paused_parser;
    if (resumed) {
      llhttp_resume(&c->parser);
      c->paused_parser = false;
    }
    /* Just resumed, the parser may finish a message with no more input (a
     * head without a body ends there): run it even on zero bytes. */
    if (off == c->in.len && !resumed)
      break;
    const char *start = c->in.data ? c->in.data + off : "";
    c->pause_why = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->in.len - off);
    if (c->state == ST_CLOSED)
      break;
    if (e == HPE_OK) {
      off = c->in.len;
      continue;
    }
    if (e == HPE_PAUSED) {
      off += (size_t)(llhttp_get_error_pos(&c->parser) - start);
      c->paused_parser = true;
      if (c->pause_why == PAUSE_HEAD) {
        on_head(c);
      } else if (c->pause_why == PAUSE_BODY) {
        c->body_paused = true;
        uv_timer_stop(&c->timer); /* the handler's own wait is not the client's fault */
      } else if (c->pause_why == PAUSE_END) {
        served++;
        on_end(c);
      }
      continue;
    }
    if (e == HPE_PAUSED_UPGRADE) {
      /* The upgraded request was answered with Connection: close; drop the rest. */
      off = c->in.len;
      break;
    }
    off = c->in.len; /* nothing after a malformed request is served */
    on_parse_error(c, e);
    break;
  }
  c->parsing = false;
  if (c->state == ST_CLOSED)
    return;
  buf_consume(&c->in, off);
  if (c->state == ST_DISPATCHED && c->body_reading && !c->body_paused && c->in.len == 0)
    conn_set_timer(c, on_timeout_close, c->srv->cfg.request_timeout_ms); /* next piece within the deadline */
  if (c->peer_eof && (c->state == ST_HEAD || c->state == ST_BODY)) {
    conn_close(c); /* half-closed in the middle of a request: it can never complete */
    return;
  }
  if (c->peer_eof && c->state == ST_IDLE && !c->resume_pending && c->in.len == 0 && !c->out_paused) {
    /* Everything the half-closed client sent is answered (a partial request
     * can never complete): finish the replies, then close. */
    enter_linger(c);
    return;
  }
  if (!c->peer_eof && c->in.len < HTTP_IN_PAUSED_MAX && c->state != ST_LINGER)
    start_reading(c);
}

/* ---- what the transport reports ---- */

void conn_on_data(conn_t *c, const char *data, size_t n) {
  if (c->state == ST_LINGER || c->state == ST_CLOSED)
    return; /* discard */
  if (buf_append(&c->in, data, n) != 0) {
    conn_close(c);
    return;
  }
  if (can_parse(c))
    conn_process(c);
  /* Parsing is paused (a held reply, or a client not reading its replies):
   * buffer a little, then stop reading until it resumes. */
  if (c->state != ST_CLOSED && c->in.len >= HTTP_IN_PAUSED_MAX)
    stop_reading(c);
}

void conn_on_eof(conn_t *c) {
  if (c->state == ST_DISPATCHED) {
    conn_close(c); /* EOF while a held reply waits (or mid-body): the client left */
    return;
  }
  /* A half-close: the client may still read. Answer the complete requests
   * it sent, let every queued reply reach the kernel, then close. */
  c->peer_eof = true;
  stop_reading(c);
  if (c->state == ST_LINGER) {
    if (c->shut_done)
      conn_close(c); /* else conn_shutdown_done closes it once the replies are out */
    return;
  }
  conn_process(c);
}

void conn_on_read_error(conn_t *c) { conn_close(c); }

/* ---- streamed request bodies ---- */

int http_body_read(http_req_t *req, http_body_data_cb on_data, http_body_end_cb on_end_cb, void *ud) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || c->body_mode != HTTP_BODY_STREAM || c->body_data)
    return OFF_EINVAL;
  c->body_data = on_data;
  c->body_end = on_end_cb;
  c->body_ud = ud;
  c->body_reading = true;
  c->body_paused = false;
  /* A failure here is reported by the return value, not the abort callback. */
  http_abort_cb cb = c->abort_cb;
  c->abort_cb = NULL;
  parse_send_continue(c);
  if (c->state == ST_CLOSED)
    return OFF_ESYS;
  c->abort_cb = cb;
  conn_set_timer(c, on_timeout_close, c->srv->cfg.request_timeout_ms);
  conn_schedule_resume(c);
  return 0;
}

void http_body_resume(http_req_t *req) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || !c->body_reading || !c->body_paused)
    return;
  c->body_paused = false;
  conn_set_timer(c, on_timeout_close, c->srv->cfg.request_timeout_ms); /* waiting on the client again */
  conn_schedule_resume(c);
}
