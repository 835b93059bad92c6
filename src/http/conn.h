/* http/conn: one client connection — private to src/http.
 *
 * The connection owns an llhttp parser, one timer, its input buffer and the
 * request being read, and talks to its byte transport through conn_io_t:
 * a libuv TCP handle in production (listener.c), an in-memory fake in unit
 * tests (http_fake.c). The transport reports back with conn_on_data/_eof/
 * _read_error, conn_write_done, conn_shutdown_done and conn_io_closed.
 *
 * States and the flags that matter in each:
 *   IDLE        between requests: send timeout while replies are queued,
 *               then the keep-alive timer (or the first head's
 *               deadline); parsing unless out_paused (unsent output over
 *               HTTP_OUT_HIGH_WATER) or a burst yielded (resume_pending)
 *   HEAD, BODY  reading a request: head / body deadline
 *   DISPATCHED  the handler has the request; no timer. A streamed request
 *               body is parsed only while body_reading && !body_paused;
 *               a streamed reply is open while `streaming`
 *   LINGER      the last reply is queued (close_after): send timeout until
 *               it is written, then half-close, read and discard for a
 *               while, then close
 *   CLOSED      the transport is closing; freed when every hold is released
 *
 * Memory: freed only when the timer and the transport are closed and no
 * file read/sendfile is in flight (`holds` counts them), so code that closed
 * it may still look at its flags until it returns to the loop. */
#ifndef OFFLOAD_HTTP_CONN_H
#define OFFLOAD_HTTP_CONN_H

#include <llhttp.h>
#include <stdbool.h>

#include "http/http.h"
#include "util/buf.h"

#define HTTP_READ_BUF_SIZE (64 * 1024)
#define HTTP_IN_PAUSED_MAX (64 * 1024)      /* stop reading past this while not parsing */
#define HTTP_OUT_HIGH_WATER (256 * 1024)    /* stop parsing while more is unsent ... */
#define HTTP_OUT_LOW_WATER (64 * 1024)      /* ... until it drains to this */
#define HTTP_LINGER_MS 2000                 /* read-and-discard before a close */
#define HTTP_BURST_MAX 32                   /* requests per pass ... */
#define HTTP_BURST_BYTES (64 * 1024)        /* ... or reply bytes per pass, before yielding */
#define HTTP_TURN_BYTES (1024 * 1024)       /* reply bytes all resumed connections may produce per loop turn */
#define HTTP_TURN_NS (5u * 1000 * 1000)     /* ... or time they may take */
#define HTTP_BODY_KEEP_MAX (64 * 1024)      /* larger body buffers are freed after each request */

typedef struct conn conn_t;

typedef enum { ST_IDLE, ST_HEAD, ST_BODY, ST_DISPATCHED, ST_LINGER, ST_CLOSED } conn_state_t;

/* Why llhttp_execute returned HPE_PAUSED. */
typedef enum { PAUSE_NONE, PAUSE_HEAD, PAUSE_BODY, PAUSE_END } conn_pause_t;

/* A queued write: the head (and copied bytes) live in data[]. */
typedef struct wreq {
  uv_write_t uv; /* the TCP transport's request */
  conn_t *conn;
  size_t len;        /* bytes in bufs */
  char *owned;       /* a block to free once written (http_reply_take) */
  struct wreq *next; /* the fake transport's queue */
  unsigned nbufs;
  uv_buf_t bufs[2];
  char data[];
} wreq_t;

typedef struct conn_io {
  /* Queues w->bufs; completes later with conn_write_done. 0 or an error. */
  int (*write)(conn_t *c, wreq_t *w);
  void (*read_start)(conn_t *c);
  void (*read_stop)(conn_t *c);
  /* Half-close after the queued writes; completes with conn_shutdown_done. */
  int (*shutdown)(conn_t *c);
  /* Closes; completes once with conn_io_closed. */
  void (*close)(conn_t *c);
  /* The socket for sendfile, or -1. */
  int (*fd)(const conn_t *c);
  /* Bytes queued and not yet taken by the kernel (progress is measured in
   * bytes: one large write completes only when all of it is taken). */
  size_t (*unsent)(const conn_t *c);
} conn_io_t;

typedef struct conn_hdr {
  uint32_t name, value; /* offsets into hdr_text */
} conn_hdr_t;

struct conn {
  const conn_io_t *io;
  void *io_data;
  uv_timer_t timer;
  http_server_t *srv;
  llhttp_t parser;
  conn_state_t state;
  int holds; /* timer + transport + file operations in flight */
  conn_t *prev, *next;
  bool listed; /* on the server's connection list (counted) */

  buf_t in; /* unparsed input */
  bool reading;
  bool paused_parser;     /* llhttp is paused (pause_why says where) */
  conn_pause_t pause_why;
  bool resume_pending;    /* on the server's resume list */
  conn_t *rprev, *rnext;  /* resume list links */
  bool parsing;           /* inside conn_process: it continues by itself */
  bool peer_eof;          /* the client half-closed: answer what it sent, then close */
  bool shut_down;         /* shutdown issued (once only) */
  bool shut_done;         /* ... and completed: every reply is in the kernel */
  bool close_after;       /* close once the current reply is written */
  bool out_paused;        /* parsing stopped: unsent output over the high-water mark */
  size_t queued;          /* bytes in writes not yet completed */
  size_t burst_bytes;     /* reply bytes produced in this pass */
  size_t send_mark;       /* io->unsent at the send timeout's last look; SIZE_MAX: none yet */
  uint64_t idle_since;    /* loop time the last write completed (keep-alive counts from it) */

  /* The request being read. */
  http_req_t req;
  http_abort_cb abort_cb;
  void *abort_data;
  buf_t url;
  buf_t body;
  buf_t hdr_text;  /* "name\0value\0..." */
  buf_t hdr_index; /* conn_hdr_t per header */
  size_t nhdrs;
  bool in_field; /* the last header callback was a field */
  size_t head_bytes;
  size_t body_seen; /* body bytes parsed (any mode) */
  http_body_mode_t body_mode;
  size_t body_limit;
  bool continue_sent;
  bool dispatched;   /* the request callback has run for this request */
  bool msg_complete; /* the parser reached this request's end */
  http_req_error_t err;
  const char *err_detail; /* static text for err, or NULL */

  /* A streamed request body. */
  bool body_reading, body_paused;
  http_body_data_cb body_data;
  http_body_end_cb body_end;
  void *body_ud;

  /* A streamed reply. */
  bool streaming;
  bool chunked_out;   /* chunked framing */
  bool no_body_out;   /* HEAD (or a status without a body): writes are swallowed */
  int64_t out_left;   /* Content-Length bytes still owed, or -1 */
  http_drain_cb drain_cb;
  void *drain_data;
  struct file_send *file; /* http_stream_file in progress */

  /* The access log (access.c): one line per dispatched request. */
  char peer[48];       /* the client's address, "-" when unknown */
  uint64_t req_t0;     /* clock_mono_ns() at the request's first byte; 0 before */
  uint64_t req_bytes;  /* bytes written for this request (100 Continue, head, body) */
  int req_status;      /* the reply's status once it began; 0 before */
  bool log_pending;    /* dispatched, not logged yet */
};

/* conn.c */
void conn_init(conn_t *c, http_server_t *s, const conn_io_t *io, void *io_data);
void conn_start(conn_t *c); /* registered and counted: start reading */
void conn_close(conn_t *c);
void conn_process(conn_t *c);
void conn_schedule_resume(conn_t *c);
void conn_on_resume_idle(uv_idle_t *h);
void conn_set_timer(conn_t *c, uv_timer_cb cb, uint64_t ms);
/* A request's first byte arrived: HEAD state, with the head deadline. */
void conn_head_started(conn_t *c);
void conn_on_data(conn_t *c, const char *data, size_t n);
void conn_on_eof(conn_t *c);
void conn_on_read_error(conn_t *c);
void conn_write_done(conn_t *c, wreq_t *w, int status);
void conn_shutdown_done(conn_t *c, int status);
void conn_io_closed(conn_t *c);
void conn_release(conn_t *c); /* drops one hold; frees at zero */
/* The request's reply is complete: move to IDLE (keep-alive) or LINGER. */
void conn_reply_done(conn_t *c);
/* Queues a write; on failure closes the connection and returns the error. */
int conn_write(conn_t *c, wreq_t *w);
/* A write request with room for `extra` bytes in data[]. NULL on ENOMEM. */
wreq_t *conn_wreq_new(conn_t *c, size_t extra);
/* A write request holding a copy of `text`. NULL on ENOMEM. */
wreq_t *conn_wreq_text(conn_t *c, const char *text, size_t len);

/* parse.c */
void parse_settings_init(llhttp_settings_t *s);
void parse_request_reset(conn_t *c);
/* Fills req's method/path/query/body fields before dispatch; false on ENOMEM. */
bool parse_finish_request(conn_t *c);
/* Sends "100 Continue" once if the client asked for it. */
void parse_send_continue(conn_t *c);

/* reply.c */
const char *http_status_text(int status);

/* access.c */
/* One access-log record. Strings are borrowed; "" prints as "-". */
typedef struct http_access {
  int64_t wall_ms;      /* when the request ended (ms since the epoch) */
  const char *remote;   /* the client's address */
  const char *method;
  const char *path;     /* raw, without the query string */
  int status;
  uint64_t bytes;       /* bytes sent for it */
  uint64_t duration_us; /* from its first byte to its end */
} http_access_t;
/* Appends the record's line, '\n' included: text ("TIME REMOTE METHOD PATH
 * STATUS BYTES DURATIONus", client bytes escaped as \xHH) or one JSON
 * object. Returns 0 or OFF_ENOMEM. */
int http_access_format(buf_t *out, bool json, const http_access_t *a);
/* The request ended (replied, or its connection closed first: then status
 * 499 if no reply began): logs it once, if the server keeps an access log. */
void conn_access_log(conn_t *c);

/* stream.c */
/* The connection closes: forget the file send. True when a pool operation
 * still uses the socket and the file: when it returns it calls `cb` (the
 * request's abort callback, may be NULL) and closes the transport; the
 * caller does neither. */
bool stream_file_abort(conn_t *c, http_abort_cb cb, void *data);
/* A write completed: the file send may go on. */
void stream_file_written(conn_t *c);

/* listener.c (server internals the connection needs) */
struct http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bool listening;
  bool stopped; /* http_server_stop_accepting ran: replies say Connection: close */
  bool freeing;
  http_config_t cfg;
  http_head_cb head_cb;
  http_request_cb cb;
  void *data;
  llhttp_settings_t settings;
  conn_t *conns_head, *conns_tail;
  conn_t *resume_head, *resume_tail; /* connections to parse again next loop turn */
  uv_idle_t resume_idle;
  int open_handles; /* listener, resume_idle, spare */
  int port;
  uv_tcp_t spare;     /* accepts-and-closes a connection we cannot serve */
  bool spare_busy;    /* closing: not reusable yet */
  bool shed_waiting;  /* a connection waits for the spare to shed it */
  size_t turn_bytes;  /* reply bytes produced in the current resume turn */
  http_stats_t stats;
  buf_t access_line;  /* the access-log line being built (reused) */
  char bound[64];     /* the address listened on, "ADDR:PORT" or "[ADDR]:PORT" */
  char readbuf[HTTP_READ_BUF_SIZE]; /* reads are delivered one at a time */
};

#endif
