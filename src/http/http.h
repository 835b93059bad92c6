/* http: the front door. A libuv TCP listener, its connections, llhttp glue,
 * limits and timeouts, and writing replies. It knows nothing about jobs.
 *
 * Threads: loop thread only.
 *
 * A complete request is handed to the request callback. The handler answers
 * with http_reply, at once or later (a held reply). Until it does, the
 * connection parses no further request (pipelined ones wait, in order) but
 * keeps reading, so a client that goes away is noticed: then the abort
 * callback set with http_req_on_abort fires and the request must not be
 * replied to. Requests the http layer rejects itself (parse error, header
 * block or body too large) are handed over too, with `error` set, so the API
 * layer stays the one place that turns errors into statuses; the connection
 * closes after that reply.
 *
 * Ownership: the http_req_t and everything it points to belong to the
 * connection; valid from the request callback until http_reply or the abort
 * callback. */
#ifndef OFFLOAD_HTTP_H
#define OFFLOAD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;
typedef void (*http_request_cb)(http_req_t *req, void *data);
typedef void (*http_abort_cb)(http_req_t *req, void *data);

typedef enum {
  HTTP_ERR_NONE = 0,
  HTTP_ERR_PARSE,          /* malformed request: 400 */
  HTTP_ERR_HEADER_TOO_BIG, /* header block over the limit: 431 */
  HTTP_ERR_BODY_TOO_BIG,   /* body over the limit: 413 */
} http_req_error_t;

enum {
  HTTP_M_OTHER = 0,
  HTTP_M_GET,
  HTTP_M_HEAD,
  HTTP_M_POST,
  HTTP_M_PUT,
  HTTP_M_DELETE,
  HTTP_M_PATCH,
  HTTP_M_OPTIONS
};

struct http_req {
  int method;              /* HTTP_M_* */
  const char *method_name; /* "GET", ... */
  const char *path;        /* raw (undecoded), NUL-terminated, starts with '/' unless malformed */
  const char *query;       /* raw text after '?', NUL-terminated; NULL when there is none */
  const char *body;        /* NUL-terminated for convenience; body_len bytes */
  size_t body_len;
  const char *content_type; /* header value or NULL */
  http_req_error_t error;
  const char *error_detail; /* static text for errors, else NULL */

  /* Private to the http layer. */
  void *_conn;
  http_abort_cb _abort_cb;
  void *_abort_data;
};

typedef struct http_config {
  size_t max_header_bytes;       /* request line + headers */
  size_t max_body;               /* bytes */
  uint64_t request_timeout_ms;   /* head within this of its first byte (or of the
                                    connection opening); the body within as long again */
  uint64_t keepalive_timeout_ms; /* idle connection closed after this */
  size_t max_connections;
} http_config_t;

/* Returns NULL on allocation failure. */
http_server_t *http_server_new(uv_loop_t *loop, const http_config_t *cfg, http_request_cb cb, void *data);
/* Binds and listens. Returns 0 or a libuv error code (negative errno). */
int http_server_listen(http_server_t *s, const char *host, int port);
/* The port actually bound (useful with port 0). */
int http_server_port(const http_server_t *s);
/* Closes the listener; open connections keep being served. */
void http_server_stop_accepting(http_server_t *s);
/* Closes every connection (pending requests get their abort callback) and
 * the listener, and frees the server once libuv has closed the handles. */
void http_server_free(http_server_t *s);

/* Sends the reply. `content_type` may be NULL for no body type; `headers` is
 * NULL or extra header lines, each ending in "\r\n". The body is copied. For
 * HEAD requests the body is left out but its length is announced. */
void http_reply(http_req_t *req, int status, const char *content_type, const char *headers, const char *body,
                size_t len);

void http_req_on_abort(http_req_t *req, http_abort_cb cb, void *data);

typedef struct http_stats {
  uint64_t by_status[600]; /* replies sent, by status code */
  size_t connections;      /* open now */
  uint64_t accepted, rejected;
} http_stats_t;

const http_stats_t *http_server_stats(const http_server_t *s);

#endif
