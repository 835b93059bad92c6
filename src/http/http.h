/* http: the front door. A libuv TCP listener, its connections, llhttp glue,
 * limits and timeouts, request bodies (buffered or streamed) and replies
 * (whole, or streamed from memory or a file descriptor). It knows nothing
 * about jobs.
 *
 * Threads: loop thread only.
 *
 * A request's life, as the user of this header sees it:
 *  1. Head complete: the head callback runs (method, path, query, headers are
 *     set; no body byte has been read and no "100 Continue" sent). It chooses
 *     how the body is taken with http_req_plan: buffered in memory up to a
 *     limit (the default, with the server's max_body), streamed to the
 *     handler, or refused (the route or method does not exist: the request is
 *     handed over at once, without its body, and the connection closes after
 *     the reply if a body was announced). A declared Content-Length over the
 *     limit is refused with HTTP_ERR_BODY_TOO_BIG before any "100 Continue".
 *  2. The request callback runs once: for buffered bodies after the whole
 *     body arrived (req->body), for streamed ones right after the head — the
 *     handler then calls http_body_read to receive the chunks (that call
 *     sends "100 Continue" when the client asked for it), or replies at once
 *     (the unread body is then dropped with the connection).
 *  3. The handler answers once, now or later (a held reply): http_reply for
 *     a whole body, or http_stream_start + http_stream_write/_file + _end.
 *     Until the reply ends the connection parses no further request
 *     (pipelined ones wait, in order) but keeps reading a little, so a client
 *     that goes away is noticed: then the abort callback set with
 *     http_req_on_abort fires and the request must not be touched again.
 * Requests the http layer rejects itself (parse error, header block or body
 * too large) reach the request callback with `error` set, so the API layer
 * stays the one place that turns errors into statuses; the connection closes
 * after that reply.
 *
 * Ownership: the http_req_t and everything it points to belong to the
 * connection; valid from the head callback until the reply ends (http_reply,
 * http_stream_end) or the abort callback returns. */
#ifndef OFFLOAD_HTTP_H
#define OFFLOAD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/headers.h"
#include "util/logq.h"

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;
typedef void (*http_head_cb)(http_req_t *req, void *data);
typedef void (*http_request_cb)(http_req_t *req, void *data);
typedef void (*http_abort_cb)(http_req_t *req, void *data);

typedef enum {
  HTTP_ERR_NONE = 0,
  HTTP_ERR_PARSE,          /* malformed request: 400 */
  HTTP_ERR_HEADER_TOO_BIG, /* header block over the limit: 431 */
  HTTP_ERR_BODY_TOO_BIG,   /* body over the limit: 413 */
} http_req_error_t;

/* Methods, as bits so a route can hold a set of them. */
typedef enum {
  HTTP_M_OTHER = 1u << 0,
  HTTP_M_GET = 1u << 1,
  HTTP_M_HEAD = 1u << 2,
  HTTP_M_POST = 1u << 3,
  HTTP_M_PUT = 1u << 4,
  HTTP_M_DELETE = 1u << 5,
  HTTP_M_PATCH = 1u << 6,
  HTTP_M_OPTIONS = 1u << 7,
} http_method_t;

typedef enum {
  HTTP_BODY_BUFFER = 0, /* whole body in req->body before the request callback */
  HTTP_BODY_STREAM,     /* request callback after the head; chunks via http_body_read */
  HTTP_BODY_REFUSE,     /* no handler wants it: dispatch now, never read it */
} http_body_mode_t;

struct http_req {
  http_method_t method;
  const char *method_name; /* "GET", ... */
  const char *path;        /* raw (undecoded), NUL-terminated, starts with '/' unless malformed */
  const char *query;       /* raw text after '?', NUL-terminated; NULL when there is none */
  const char *body;        /* buffered mode: NUL-terminated for convenience; body_len bytes */
  size_t body_len;
  int64_t content_length;   /* declared, or -1 (none, or chunked) */
  bool chunked;             /* Transfer-Encoding: chunked */
  bool expect_continue;     /* the client sent Expect: 100-continue */
  bool http10;              /* HTTP/1.0 */
  const char *content_type; /* header value or NULL */
  http_req_error_t error;
  const char *error_detail; /* static text naming a parse error, else NULL */
  void *user; /* the head callback's to set (e.g. the matched route); NULL before */

  /* Private to the http layer. */
  void *_conn;
};

/* Chooses how the body is taken (head callback only). `limit` is the most
 * bytes accepted (0 = the server's max_body). */
void http_req_plan(http_req_t *req, http_body_mode_t mode, size_t limit);

/* A request header's value (first occurrence, case-insensitive name), or
 * NULL. Every header is kept (the whole head is at most the server's
 * header limit). */
const char *http_req_header(const http_req_t *req, const char *name);

typedef struct http_config {
  size_t max_header_bytes;       /* request line + headers */
  size_t max_body;               /* bytes; the default body limit */
  uint64_t request_timeout_ms;   /* head within this of its first byte (or of the
                                    connection opening); the body within as long again */
  uint64_t keepalive_timeout_ms; /* idle connection closed after this */
  size_t max_connections;
  /* The access log: one line per request handed to the request callback,
   * written when its reply ends (or its connection closes first), formatted
   * on the loop and written off it. NULL: none. Borrowed: outlives the
   * server. */
  logq_t *access_log;
  bool access_log_json; /* one JSON object per line, else text */
} http_config_t;

/* Returns NULL on allocation failure. `head` may be NULL (every body is
 * buffered up to max_body). */
http_server_t *http_server_new(uv_loop_t *loop, const http_config_t *cfg, http_head_cb head, http_request_cb cb,
                               void *data);
/* Binds and listens on `host`: an IPv4 or IPv6 address, or a host name
 * looked up with getaddrinfo, whose addresses are tried in its order until
 * one binds. The lookup blocks: call at start-up, before the loop serves.
 * Returns 0, or a libuv error code (negative errno) with `err` (may be NULL)
 * saying what was tried and why each failed. */
int http_server_listen(http_server_t *s, const char *host, int port, char *err, size_t errsize);
/* The port actually bound (useful with port 0). */
int http_server_port(const http_server_t *s);
/* The address listened on: "127.0.0.1:3000", "[::1]:3000". */
const char *http_server_address(const http_server_t *s);
/* Closes the listener; open connections keep being served, and every reply
 * from now on says Connection: close. */
void http_server_stop_accepting(http_server_t *s);
/* Closes every connection (pending requests get their abort callback) and
 * the listener, and frees the server once libuv has closed the handles. */
void http_server_free(http_server_t *s);

/* ---- whole replies ---- */

/* Sends the reply. `content_type` may be NULL for no body type; `headers`
 * NULL or extra headers (borrowed; already validated by the builder). The
 * body is copied. For HEAD requests the body is left out but its length is
 * announced. */
void http_reply(http_req_t *req, int status, const char *content_type, const http_headers_t *headers,
                const char *body, size_t len);
/* As http_reply, but takes ownership of `body` (a malloc'd block), saving a
 * copy of large replies. */
void http_reply_take(http_req_t *req, int status, const char *content_type, const http_headers_t *headers, char *body,
                     size_t len);

void http_req_on_abort(http_req_t *req, http_abort_cb cb, void *data);

/* ---- streamed replies ----
 * Backpressure: http_stream_unsent tells how much is queued and not yet in
 * the kernel; http_stream_on_drain asks for one callback once that falls to
 * HTTP_STREAM_LOW_WATER or below. A writer that queues more than
 * HTTP_STREAM_MAX_UNSENT has a client that stopped reading: the next write
 * drops the connection (counted in stats.dropped_slow) and returns
 * OFF_EFULL; so a client costs at most that much plus one write. A reply
 * whose bytes stay queued for a keep-alive period without progress after it
 * ended is dropped too (counted the same way).
 *
 * Failures: a stream call that fails closes the connection WITHOUT calling
 * the abort callback (the writer learns it from the return value, inside
 * its own call, and must not be called back into); the request is gone.
 * A client that leaves between calls is reported, as for any request, by
 * the abort callback (and a pending http_stream_file's callback never runs). */

#define HTTP_LEN_UNKNOWN (-1)
#define HTTP_STREAM_LOW_WATER (64 * 1024)
#define HTTP_STREAM_MAX_UNSENT (1024 * 1024)

typedef void (*http_drain_cb)(http_req_t *req, void *data);
/* status 0: every byte is queued for the socket; else an OFF_E* code. */
typedef void (*http_sent_cb)(http_req_t *req, int status, void *data);

/* Sends the head. content_length >= 0 announces the length; HTTP_LEN_UNKNOWN
 * uses chunked transfer encoding on HTTP/1.1 and a close-delimited body on
 * HTTP/1.0 (the connection closes at the end). Returns 0, or OFF_ENOMEM /
 * OFF_ESYS (closed, see Failures). */
int http_stream_start(http_req_t *req, int status, const char *content_type, const http_headers_t *headers,
                      int64_t content_length);
/* Queues `len` bytes (copied) as the next piece of the body. Returns 0,
 * OFF_EFULL (dropped: see above), OFF_ENOMEM or OFF_ESYS (closed), or
 * OFF_EINVAL (no streamed reply is open, or a file send is in progress:
 * nothing happened). */
int http_stream_write(http_req_t *req, const void *data, size_t len);
/* Sends `len` bytes of `fd` from `offset`: sendfile(2) on libuv's thread
 * pool while the socket takes them, reads on the thread pool otherwise; the
 * loop never touches the disk. `fd` is borrowed until `cb`, which runs once
 * every byte is queued (status 0) or on a read/send failure (then the
 * connection is closed; the abort callback does not run). If the client
 * leaves meanwhile, `cb` never runs and the abort callback is the signal,
 * delayed until no thread-pool operation uses `fd`: close `fd` in `cb` or
 * in the abort callback, never earlier. It may run before
 * this call returns (nothing to send: a HEAD request, len 0). Returns 0 or,
 * with nothing started and no callback, OFF_EINVAL / OFF_ENOMEM. No other
 * write may be issued on this request until `cb`. */
int http_stream_file(http_req_t *req, int fd, int64_t offset, uint64_t len, http_sent_cb cb, void *data);
size_t http_stream_unsent(const http_req_t *req);
void http_stream_on_drain(http_req_t *req, http_drain_cb cb, void *data);
/* Ends the body (the last chunk on chunked replies) and the request:
 * pipelined requests behind it are parsed next. */
void http_stream_end(http_req_t *req);

/* ---- streamed request bodies (HTTP_BODY_STREAM) ---- */

#define HTTP_BODY_PAUSE 1
/* One piece of the body, valid during the call. Return 0 for more, or
 * HTTP_BODY_PAUSE to stop reading until http_body_resume. */
typedef int (*http_body_data_cb)(http_req_t *req, const char *data, size_t len, void *ud);
/* The body ended: status 0, or HTTP_ERR_BODY_TOO_BIG / HTTP_ERR_PARSE (the
 * connection closes after the reply). The handler replies after this (or
 * already did). */
typedef void (*http_body_end_cb)(http_req_t *req, http_req_error_t status, void *ud);

/* Starts delivering the body (sends 100 Continue if it was asked for).
 * Once the handler replies, no more pieces and no end callback come (the
 * connection closes after the reply if the body was not read to its end).
 * Returns 0, OFF_EINVAL (not a streamed-body request, or already reading)
 * or OFF_ESYS (the connection failed and is closed; the abort callback does
 * not run). */
int http_body_read(http_req_t *req, http_body_data_cb on_data, http_body_end_cb on_end, void *ud);
void http_body_resume(http_req_t *req);

typedef struct http_stats {
  uint64_t by_status[600]; /* replies sent, by status code */
  size_t connections;      /* open now */
  uint64_t accepted;       /* connections accepted and served */
  uint64_t rejected;       /* closed at once: over max_connections */
  uint64_t accept_failures; /* accepted and closed at once: no memory, EMFILE/ENFILE, a socket option */
  uint64_t dropped_slow;   /* dropped: a streamed reply's client stopped reading */
  uint64_t paused_output;  /* times a connection stopped parsing: its unsent output was over the high-water mark */
} http_stats_t;

/* Valid until http_server_free. */
const http_stats_t *http_server_stats(const http_server_t *s);

#endif
