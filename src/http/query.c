/* http/query: see query.h. */
#include "http/query.h"

#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes raw[0..len) into out; returns the decoded length, -1 on a bad
 * escape or -2 on a decoded NUL (out then holds the text before it). */
static long decode(const char *raw, size_t len, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = raw[i];
    if (ch == '+') {
      ch = ' ';
    } else if (ch == '%') {
      if (i + 2 >= len)
        return -1;
      int hi = hexval(raw[i + 1]), lo = hexval(raw[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      ch = (char)(hi * 16 + lo);
      i += 2;
      if (ch == '\0') {
        out[o] = '\0';
        return -2;
      }
    }
    out[o++] = ch;
  }
  out[o] = '\0';
  return (long)o;
}

bool query_parse(query_t *q, const char *raw) {
  q->n = 0;
  q->bad = "";
  q->err = QUERY_OK;
  if (!raw)
    return true;
  size_t used = 0;
  const char *p = raw;
  while (*p) {
    const char *end = strchr(p, '&');
    size_t seg = end ? (size_t)(end - p) : strlen(p);
    if (seg > 0) {
      const char *eq = memchr(p, '=', seg);
      size_t nlen = eq ? (size_t)(eq - p) : seg;
      size_t vlen = eq ? seg - nlen - 1 : 0;
      if (used + nlen + vlen + 2 > sizeof q->text) {
        q->err = QUERY_TOO_LONG;
        return false;
      }
      char *name = q->text + used;
      long dn = decode(p, nlen, name);
      if (dn < 0) {
        q->err = dn == -2 ? QUERY_NUL : QUERY_BAD_ESCAPE;
        if (dn == -2)
          q->bad = name;
        return false;
      }
      used += (size_t)dn + 1;
      char *value = q->text + used;
      long dv = decode(eq ? eq + 1 : "", vlen, value);
      if (dv < 0) {
        q->err = dv == -2 ? QUERY_NUL : QUERY_BAD_ESCAPE;
        q->bad = name;
        return false;
      }
      used += (size_t)dv + 1;
      query_param_t *dup = NULL;
      for (size_t i = 0; i < q->n && !dup; i++)
        if (strcmp(q->params[i].name, name) == 0)
          dup = &q->params[i];
      if (dup) {
        dup->count++;
      } else {
        if (q->n == QUERY_MAX_PARAMS) {
          q->bad = name;
          q->err = QUERY_TOO_MANY;
          return false;
        }
        q->params[q->n++] = (query_param_t){name, value, (size_t)dv, 1};
      }
    }
    if (!end)
      break;
    p = end + 1;
  }
  return true;
}

const query_param_t *query_get(const query_t *q, const char *name) {
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->params[i].name, name) == 0)
      return &q->params[i];
  return NULL;
}

const query_param_t *query_unknown(const query_t *q, const char *const *allowed) {
  for (size_t i = 0; i < q->n; i++) {
    bool ok = false;
    for (const char *const *a = allowed; *a && !ok; a++)
      ok = strcmp(*a, q->params[i].name) == 0;
    if (!ok)
      return &q->params[i];
  }
  return NULL;
}
