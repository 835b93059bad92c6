/* http/headers: the reply header builder. See headers.h. */
#include "http/headers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
bool http_header_token_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_header_name_ok(const char *name) {
  if (!name || !*name)
    return false;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (!http_header_token_char(*p))
      return false;
  return true;
}

bool http_header_value_ok(const char *value) {
  if (!value)
    return false;
  for (const unsigned char *p = (const unsigned char *)value; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
      return false;
  return true;
}

static int fail(http_headers_t *h, int rc) {
  if (!h->error)
    h->error = rc;
  return rc;
}

int http_headers_add(http_headers_t *h, const char *name, const char *value) {
  if (!http_header_name_ok(name) || !http_header_value_ok(value))
    return fail(h, OFF_EINVAL);
  size_t before = h->lines.len;
  if (buf_puts(&h->lines, name) || buf_append(&h->lines, ": ", 2) || buf_puts(&h->lines, value) ||
      buf_append(&h->lines, "\r\n", 2)) {
    h->lines.len = before; /* nothing half-added */
    if (h->lines.data)
      h->lines.data[before] = '\0';
    return fail(h, OFF_ENOMEM);
  }
  return 0;
}

int http_headers_addf(http_headers_t *h, const char *name, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0 || ((size_t)n < sizeof small && strlen(small) != (size_t)n)) /* a NUL would cut the value */
    return fail(h, OFF_EINVAL);
  if ((size_t)n < sizeof small)
    return http_headers_add(h, name, small);
  char *big = malloc((size_t)n + 1);
  if (!big)
    return fail(h, OFF_ENOMEM);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  int rc = strlen(big) == (size_t)n ? http_headers_add(h, name, big) : fail(h, OFF_EINVAL);
  free(big);
  return rc;
}

void http_headers_fini(http_headers_t *h) {
  buf_free(&h->lines);
  h->error = 0;
}
