/* util/buf: see buf.h. */
#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fault.h"

int buf_reserve(buf_t *b, size_t n) {
  if (b->len + n + 1 <= b->cap)
    return 0;
  if (n > SIZE_MAX / 2 - b->len)
    return OFF_ENOMEM;
  size_t ncap = b->cap ? b->cap : 64;
  while (ncap < b->len + n + 1)
    ncap *= 2;
  char *nd = FAULT_HIT(FAULT_ALLOC) ? NULL : realloc(b->data, ncap);
  if (!nd)
    return OFF_ENOMEM;
  b->data = nd;
  b->cap = ncap;
  return 0;
}

int buf_append(buf_t *b, const void *p, size_t n) {
  if (buf_reserve(b, n) != 0)
    return OFF_ENOMEM;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int buf_puts(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_vprintf(buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return OFF_EINVAL;
  if ((size_t)n < sizeof small)
    return buf_append(b, small, (size_t)n);
  if (buf_reserve(b, (size_t)n) != 0)
    return OFF_ENOMEM;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

void buf_free(buf_t *b) {
  free(b->data);
  *b = BUF_INIT;
}

char *buf_release(buf_t *b) {
  char *d = b->data;
  *b = BUF_INIT;
  return d;
}
