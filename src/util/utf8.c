/* util/utf8: see utf8.h. RFC 3629 well-formedness (Table 3-7 of Unicode). */
#include "util/utf8.h"

#include <string.h>

size_t utf8_seq_len(const unsigned char *s, size_t n) {
  if (n == 0)
    return 0;
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0; /* no overlongs */
    else if (c == 0xED)
      hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F; /* <= U+10FFFF */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

bool utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t k = utf8_seq_len(p + i, n - i);
    if (k == 0)
      return false;
    i += k;
  }
  return true;
}

size_t utf8_sanitize(char *dst, size_t size, const char *src, size_t n) {
  static const char repl[] = "\xEF\xBF\xBD"; /* U+FFFD */
  const unsigned char *p = (const unsigned char *)src;
  size_t o = 0, i = 0;
  while (i < n && p[i]) {
    size_t k = utf8_seq_len(p + i, n - i);
    const char *from = k ? src + i : repl;
    size_t len = k ? k : 3;
    if (o + len + 1 > size)
      break;
    memcpy(dst + o, from, len);
    o += len;
    i += k ? k : 1;
  }
  dst[o] = '\0';
  return o;
}
