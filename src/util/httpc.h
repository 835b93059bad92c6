/* util/httpc: the project's HTTP/1.1 client, on libuv and llhttp (response
 * mode, the parser the server uses). One request at a time per connection,
 * keep-alive, a response body either gathered whole (Content-Length, chunked
 * or read to EOF) or handed over piece by piece. Plain http:// only: no TLS,
 * no redirects, no proxies. Used by the load generator (bench/loadgen.c: many
 * connections on one loop) and by the command-line client (src/cli: a
 * blocking request on a private loop, and the event streams).
 *
 * Threads: a client, its connections and their callbacks belong to the
 * thread that runs their loop. httpc_url_parse and httpc_resolve have no
 * state and may run anywhere (httpc_resolve blocks in getaddrinfo).
 *
 * DESIGN: the parser stops (HPE_PAUSED) at the end of each response, so the
 * done callback always runs outside llhttp: it may send the next request on
 * the connection, or close it. Reads go into one 64 KiB buffer per client,
 * shared by its connections (a read is parsed before the next one starts). */
#ifndef OFFLOAD_UTIL_HTTPC_H
#define OFFLOAD_UTIL_HTTPC_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Errors a request can end with besides libuv's (UV_ECONNREFUSED, UV_EOF,
 * ...): the reply was not HTTP, or a body callback asked to stop. */
#define HTTPC_EPROTO UV_EPROTO
#define HTTPC_ESTOPPED UV_ECANCELED

/* A parsed http:// URL: http://HOST[:PORT][/BASE]. */
typedef struct httpc_url {
  char host[272];      /* a name or an address; an IPv6 address without its brackets */
  char authority[272]; /* the Host header: the host as written, ":PORT" when the URL gave one */
  char base[256];      /* a path prefix for every request: "" or "/x" (no trailing slash) */
  int port;            /* 80 unless the URL says */
} httpc_url_t;

/* Parses `text` ("http://" may be left out). Returns 0, or -1 with a
 * sentence in `err` (https, a query or fragment, a bad port, too long). */
int httpc_url_parse(const char *text, httpc_url_t *u, char *err, size_t errlen);

#define HTTPC_ADDRS_MAX 8

typedef struct httpc_addrs {
  struct sockaddr_storage addr[HTTPC_ADDRS_MAX];
  int n;
} httpc_addrs_t;

/* Resolves u->host:u->port (IPv4, IPv6 or a name, in getaddrinfo's order).
 * Blocks. Returns 0 (out->n >= 1) or a negative UV_EAI_* code. */
int httpc_resolve(const httpc_url_t *u, httpc_addrs_t *out);

/* One per loop: what its connections share. */
typedef struct httpc {
  uv_loop_t *loop;
  const char *authority; /* borrowed: the Host header of every request */
  const char *token;     /* borrowed, may be NULL: sent as "Authorization: Bearer <token>" */
  llhttp_settings_t _settings;
  char _readbuf[65536];
} httpc_t;

/* Never fails. `authority` and `token` must outlive the client. */
void httpc_init(httpc_t *cl, uv_loop_t *loop, const char *authority, const char *token);

typedef struct httpc_conn httpc_conn_t;

/* The connection is open (status 0) or could not be (a negative UV_* code:
 * the connection must still be closed with httpc_close). */
typedef void (*httpc_connect_cb)(httpc_conn_t *c, int status);
/* The request is over. status 0: a whole response is in c->status,
 * c->content_type and (unless it was streamed) c->body. Else a negative code
 * (UV_EOF: the server closed before the response ended; HTTPC_EPROTO;
 * HTTPC_ESTOPPED; a write or read error) and the connection is unusable. Runs
 * outside the parser: it may call httpc_request again (if c->keep_alive) or
 * httpc_close. */
typedef void (*httpc_done_cb)(httpc_conn_t *c, int status);
/* A piece of a 2xx response's body, when the request asked for pieces (other
 * statuses are gathered into c->body, so an error reply can be read).
 * Returns 0 to go on, anything else to stop: the request then ends with
 * HTTPC_ESTOPPED. */
typedef int (*httpc_body_cb)(httpc_conn_t *c, const char *at, size_t n);

struct httpc_conn {
  uv_tcp_t tcp;
  void *data; /* the user's */
  /* The last response; valid in the done callback and until the next request. */
  int status;
  char content_type[128]; /* "" when absent; cut at 127 bytes */
  char *body;             /* NUL-terminated, NULL when nothing was gathered; owned by the connection */
  size_t body_len;
  bool keep_alive; /* the connection may carry another request */
  /* private */
  httpc_t *_cl;
  uv_connect_t _connect;
  uv_write_t _write;
  llhttp_t _parser;
  httpc_connect_cb _on_connect;
  httpc_done_cb _on_done;
  httpc_body_cb _on_body;
  uv_close_cb _on_close;
  char *_req;
  size_t _req_cap, _body_cap;
  char _field[16];
  size_t _field_len;
  bool _in_ct, _streaming, _complete, _busy, _open, _dead, _closing;
};

/* Prepares a connection of `cl`. Returns 0 or a negative UV_* code. */
int httpc_conn_init(httpc_t *cl, httpc_conn_t *c);
/* Connects to `addr`; `cb` runs once, unless the connection is closed
 * first. Returns 0 or a negative UV_* code (then `cb` never runs). */
int httpc_connect(httpc_conn_t *c, const struct sockaddr *addr, httpc_connect_cb cb);
/* Sends one request: "METHOD TARGET HTTP/1.1", Host, Authorization when the
 * client has a token, `headers` (complete "Name: value\r\n" lines, may be
 * NULL), Content-Length when there is a body or the method is POST or PUT,
 * then `body`. `body` is borrowed until `done` runs. `on_body` NULL gathers
 * the body into c->body. Returns 0 (then `done` runs once) or a negative
 * code: UV_EBUSY (a request is in flight), UV_ENOTCONN, UV_ENOMEM. */
int httpc_request(httpc_conn_t *c, const char *method, const char *target, const char *headers, const void *body,
                  size_t body_len, httpc_done_cb done, httpc_body_cb on_body);
/* Hands the gathered body to the caller (free() it); c->body is NULL after. */
char *httpc_take_body(httpc_conn_t *c, size_t *len);
/* Closes the connection: a request in flight is dropped without its done
 * callback. `cb` (may be NULL) runs when the memory of `c` may be reused. */
void httpc_close(httpc_conn_t *c, uv_close_cb cb);

#endif
