/* http/headers: the reply header builder.
 *
 * Every header a reply carries goes through http_headers_add, which refuses
 * names that are not RFC 9110 tokens and values holding CR, LF or NUL (or
 * other control bytes but tab), so a client value echoed into a header can
 * never inject another header or split the reply. A refused header is not
 * added and the builder remembers the failure (http_headers_error), so a
 * handler can add several and check once.
 *
 * Threads: the owner's. Ownership: the builder owns its storage; fini frees
 * it. A reply borrows the builder during the call only. */
#ifndef OFFLOAD_HTTP_HEADERS_H
#define OFFLOAD_HTTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

typedef struct http_headers {
  buf_t lines; /* "Name: value\r\n" lines, validated */
  int error;   /* first failure (OFF_EINVAL, OFF_ENOMEM) or 0 */
} http_headers_t;

#define HTTP_HEADERS_INIT ((http_headers_t){BUF_INIT, 0})

/* Returns 0, OFF_EINVAL (bad name or value: nothing added) or OFF_ENOMEM. */
int http_headers_add(http_headers_t *h, const char *name, const char *value);
int http_headers_addf(http_headers_t *h, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int http_headers_error(const http_headers_t *h) { return h->error; }
void http_headers_fini(http_headers_t *h);

/* True when `name` is a token and `value` has no CR, LF, NUL or other
 * control byte but horizontal tab. */
bool http_header_name_ok(const char *name);
bool http_header_token_char(unsigned char c);
bool http_header_value_ok(const char *value);

#endif
