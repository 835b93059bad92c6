/* cli/net: the client's requests. net_fetch is one blocking request on a
 * private libuv loop (util/httpc): it tries each address of the URL's host
 * in turn, bounds the connect (10 s) and the wait for bytes, and can stream
 * a 2xx body to a callback and tick a timer meanwhile (the progress bar).
 * net_call is the common case on top: a JSON request whose error replies
 * become the one-line message and exit status 4 of docs/CLI.md.
 *
 * Threads: main; no global state. */
#ifndef OFFLOAD_CLI_NET_H
#define OFFLOAD_CLI_NET_H

#include <jansson.h>
#include <stddef.h>

#include "cli/cli_int.h"

typedef struct net_opts {
  const char *headers; /* extra "Name: value\r\n" lines, or NULL */
  const void *body;    /* borrowed */
  size_t body_len;
  unsigned idle_ms; /* give up when the reply (streamed: its next piece) takes this long; 0: 60 s */
  /* Streams a 2xx body: return 0 to go on, else the request stops. */
  int (*on_body)(void *data, const char *at, size_t n);
  void (*on_tick)(void *data); /* every tick_ms while the request runs */
  unsigned tick_ms;
  void *data;
} net_opts_t;

typedef struct net_resp {
  int status;
  char content_type[128];
  char *body; /* gathered (not streamed) body, NUL-terminated or NULL; the caller frees */
  size_t len;
} net_resp_t;

/* Sends `method path` (path gets the URL's base prefix). Returns 0 with the
 * response in `out` (any status), or a negative code: a UV_* error before
 * any response (unreachable, timed out, closed mid-reply), HTTPC_ESTOPPED
 * when on_body stopped it (out->status is then set). */
int net_fetch(const cli_ctx_t *ctx, const char *method, const char *path, const net_opts_t *o, net_resp_t *out);
void net_resp_free(net_resp_t *r);

/* Prints "offload: cannot reach URL: <why>" for a net_fetch error; returns
 * CLI_HTTP. */
int net_unreachable(const cli_ctx_t *ctx, int err);
/* Prints the one-line message of an error reply ("offload: 404 not_found:
 * <message>", or the status line when the body is not the API's error);
 * returns CLI_HTTP. */
int net_http_error(const net_resp_t *r);

/* A JSON request: `body` (borrowed, may be NULL) is sent as
 * application/json. On a 2xx reply whose body is JSON, *out gets it (a new
 * reference) and the call returns 0 (*status, if given, the status).
 * Otherwise the message is printed and it returns CLI_HTTP. */
/* The same with a body of any type: `headers` as in net_opts_t. */
int net_call_body(const cli_ctx_t *ctx, const char *method, const char *path, const char *headers, const void *body,
                  size_t len, json_t **out, int *status);
int net_call(const cli_ctx_t *ctx, const char *method, const char *path, const json_t *body, json_t **out, int *status);

#endif
