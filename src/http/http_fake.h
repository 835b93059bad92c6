/* http/http_fake: an in-memory transport for the http layer's unit tests
 * (test-only: linked into every unit test, never into the server).
 *
 * It implements conn_io_t (conn.h) with no socket: a fake connection sits on
 * a real http_server_t that never listens. The test plays the client: it
 * sends bytes (delivered through conn_on_data while the connection reads,
 * kept in order otherwise), half-closes, and looks at every byte the server
 * wrote (appended to an output buffer when the write is issued, the way
 * libuv hands bytes to the kernel at once).
 *
 * Writes complete asynchronously, as libuv's do: each stays pending (its
 * bytes count in the connection's `queued`) until the test calls
 * http_fake_flush, or — while the fake client "is reading" — on the next
 * loop turn. Shutdown completes on a loop turn once no write is pending;
 * close cancels pending writes (UV_ECANCELED) and completes on a loop turn
 * with conn_io_closed. fd() is -1, so http_stream_file takes its read
 * fallback. The loop work is done by one uv_idle_t owned by the fake.
 *
 * Threads: the loop's only. Ownership: the fake allocates its connection,
 * which frees itself once closed; the fake is freed by http_fake_free after
 * its connection closed (the handle's close completes on a loop turn). */
#ifndef OFFLOAD_HTTP_FAKE_H
#define OFFLOAD_HTTP_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "http/http.h"

typedef struct http_fake http_fake_t;

/* A connection on `srv` (started: counted, reading, first-head deadline
 * armed). The client starts out not reading. The fake stands in for the
 * listener: the server counts as accepting (its replies do not say
 * Connection: close) until http_server_stop_accepting. NULL on ENOMEM. */
http_fake_t *http_fake_new(http_server_t *srv);
/* Sends client bytes: delivered now while the connection reads (in pieces
 * of at most HTTP_READ_BUF_SIZE, as a socket would), the rest when it reads
 * again (on a loop turn). Ignored once the connection is closed. */
void http_fake_send(http_fake_t *f, const void *data, size_t n);
void http_fake_send_str(http_fake_t *f, const char *s);
/* The client half-closes (after everything it sent is delivered). */
void http_fake_eof(http_fake_t *f);
/* Completes every write pending now (not those issued meanwhile by drain
 * callbacks). Returns the bytes completed. */
size_t http_fake_flush(http_fake_t *f);
/* While true, pending writes complete on each loop turn. */
void http_fake_set_reading(http_fake_t *f, bool reading);

/* What the server wrote so far, NUL-terminated (bytes may hold NULs). */
const char *http_fake_out(const http_fake_t *f);
size_t http_fake_out_len(const http_fake_t *f);
void http_fake_out_clear(http_fake_t *f);

size_t http_fake_pending(const http_fake_t *f);    /* bytes in writes not completed */
bool http_fake_conn_reading(const http_fake_t *f); /* the connection reads */
bool http_fake_shut(const http_fake_t *f);         /* its half-close completed: the client saw EOF */
bool http_fake_closed(const http_fake_t *f);       /* the transport closed (conn_io_closed done) */

/* Call once http_fake_closed; the memory goes on the next loop turn. */
void http_fake_free(http_fake_t *f);

#endif
