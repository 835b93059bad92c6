/* http/headers: the reply header builder. See headers.h. */
#include "http/headers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. A table: the
 * parser asks for every byte of every request header name. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1,
    ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool http_header_token_char(unsigned char c) { return tchar[c]; }

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
  size_t nl = strlen(name), vl = strlen(value);
  if (buf_reserve(&h->lines, nl + vl + 4) != 0)
    return fail(h, OFF_ENOMEM); /* nothing half-added */
  char *o = h->lines.data + h->lines.len;
  memcpy(o, name, nl);
  memcpy(o + nl, ": ", 2);
  memcpy(o + nl + 2, value, vl);
  memcpy(o + nl + 2 + vl, "\r\n", 3); /* and the NUL */
  h->lines.len += nl + vl + 4;
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
