/* util/buf: a growable byte buffer, always NUL-terminated after `len` bytes
 * (so text can be handed to C string functions), never shrinking until
 * buf_free or buf_release.
 *
 * Threads: none of its own; the owner's. Ownership: the buf_t owns `data`;
 * buf_release hands it to the caller. */
#ifndef OFFLOAD_UTIL_BUF_H
#define OFFLOAD_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
  char *data; /* NULL until the first append */
  size_t len, cap;
} buf_t;

#define BUF_INIT ((buf_t){NULL, 0, 0})

/* Appends n bytes. Returns 0 or OFF_ENOMEM (the buffer is unchanged). */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Makes room for n more bytes; returns 0 or OFF_ENOMEM. */
int buf_reserve(buf_t *b, size_t n);
/* Drops the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
static inline void buf_reset(buf_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}
/* Frees the storage; the buffer is empty and reusable. */
void buf_free(buf_t *b);
/* Hands the storage (NUL-terminated, `len` bytes) to the caller, who frees
 * it; the buffer is left empty. Returns NULL when nothing was ever appended. */
char *buf_release(buf_t *b);

#endif
