/* cli/sse: see sse.h. */
#include "cli/sse.h"

#include <string.h>

#include "util/err.h"

void sse_init(sse_t *s, sse_event_cb cb, void *cb_data) {
  memset(s, 0, sizeof *s);
  s->cb = cb;
  s->cb_data = cb_data;
}

void sse_fini(sse_t *s) {
  buf_free(&s->_line);
  buf_free(&s->_data);
}

static void copy_field(char *dst, size_t size, const char *v, size_t n) {
  if (n >= size)
    n = size - 1;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

/* One complete line (without its end). */
static int line(sse_t *s, const char *l, size_t n) {
  if (n == 0) { /* dispatch */
    int rc = 0;
    if (s->_data.len > 0) {
      s->_data.len--; /* the "\n" after the last data line */
      s->_data.data[s->_data.len] = '\0';
      rc = s->cb(s->cb_data, s->_event[0] ? s->_event : "message", s->_id, s->_data.data, s->_data.len);
    }
    buf_reset(&s->_data);
    s->_event[0] = '\0';
    return rc;
  }
  if (l[0] == ':')
    return 0; /* a comment: keep-alive */
  const char *colon = memchr(l, ':', n);
  size_t flen = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vlen = (size_t)(l + n - v);
  if (vlen > 0 && v[0] == ' ')
    v++, vlen--;
  if (flen == 4 && memcmp(l, "data", 4) == 0) {
    if (s->_data.len + vlen + 1 > SSE_MAX)
      return OFF_EINVAL;
    if (buf_append(&s->_data, v, vlen) || buf_append(&s->_data, "\n", 1))
      return OFF_ENOMEM;
  } else if (flen == 5 && memcmp(l, "event", 5) == 0) {
    copy_field(s->_event, sizeof s->_event, v, vlen);
  } else if (flen == 2 && memcmp(l, "id", 2) == 0) {
    if (!memchr(v, '\0', vlen))
      copy_field(s->_id, sizeof s->_id, v, vlen);
  }
  return 0; /* retry and unknown fields: ignored */
}

int sse_feed(sse_t *s, const char *p, size_t n) {
  if (!s->_bom && n > 0) {
    /* A UTF-8 BOM may open the stream; it can arrive split, but in practice
     * never does, so only a whole one at the start is dropped. */
    if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
      p += 3, n -= 3;
    s->_bom = 1;
  }
  while (n > 0) {
    if (s->_last_cr) {
      s->_last_cr = 0;
      if (p[0] == '\n') {
        p++, n--;
        continue;
      }
    }
    size_t k = 0;
    while (k < n && p[k] != '\n' && p[k] != '\r')
      k++;
    if (k == n) { /* no line end yet: keep the piece */
      if (s->_line.len + n > SSE_MAX)
        return OFF_EINVAL;
      return buf_append(&s->_line, p, n) ? OFF_ENOMEM : 0;
    }
    int rc;
    if (s->_line.len) {
      if (s->_line.len + k > SSE_MAX)
        return OFF_EINVAL;
      if (buf_append(&s->_line, p, k))
        return OFF_ENOMEM;
      rc = line(s, s->_line.data, s->_line.len);
      buf_reset(&s->_line);
    } else {
      rc = line(s, p, k);
    }
    if (p[k] == '\r')
      s->_last_cr = 1;
    p += k + 1;
    n -= k + 1;
    if (rc)
      return rc;
  }
  return 0;
}
