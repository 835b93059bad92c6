/* util/logfmt: see logfmt.h. */
#include "util/logfmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/utf8.h"

void logfmt_time(char out[LOGFMT_TIME_LEN], int64_t wall_ms) {
  time_t sec = (time_t)(wall_ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  size_t n = strftime(out, LOGFMT_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, LOGFMT_TIME_LEN - n, ".%03dZ", (int)(wall_ms % 1000));
}

static const char hex[] = "0123456789ABCDEF";

int logfmt_text(buf_t *b, const char *s, size_t n) {
  if (n == 0)
    return buf_append(b, "-", 1);
  if (buf_reserve(b, 4 * n) != 0) /* at worst every byte escaped: no check per byte */
    return OFF_ENOMEM;
  char *o = b->data + b->len;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch > ' ' && ch < 0x7f && ch != '"' && ch != '\\') {
      *o++ = (char)ch;
    } else {
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[ch >> 4];
      *o++ = hex[ch & 15];
    }
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}

int logfmt_json(buf_t *b, const char *s, size_t n) {
  /* At worst 6 bytes per input byte (\u00XX), U+FFFD being 3. */
  if (buf_reserve(b, 6 * n + 2) != 0)
    return OFF_ENOMEM;
  char *o = b->data + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n;) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x80) {
      size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
      if (k == 0) {
        memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
        o += 3;
        i++;
      } else {
        memcpy(o, s + i, k);
        o += k;
        i += k;
      }
      continue;
    }
    i++;
    if (ch == '"' || ch == '\\') {
      *o++ = '\\';
      *o++ = (char)ch;
    } else if (ch == '\n') {
      *o++ = '\\';
      *o++ = 'n';
    } else if (ch == '\r') {
      *o++ = '\\';
      *o++ = 'r';
    } else if (ch == '\t') {
      *o++ = '\\';
      *o++ = 't';
    } else if (ch < 0x20 || ch == 0x7f) {
      memcpy(o, "\\u00", 4);
      o[4] = hex[ch >> 4];
      o[5] = hex[ch & 15];
      o += 6;
    } else {
      *o++ = (char)ch;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}
