/* util/utf8: make text safe to echo back in a JSON reply.
 *
 * Client bytes (a path, a query name, a JSON key cut by "%.64s") may be
 * invalid UTF-8 or end in the middle of a character; jansson refuses such
 * strings. utf8_sanitize copies the valid characters and writes U+FFFD for
 * every byte that does not start a valid sequence (truncated sequences,
 * overlongs, surrogates, bytes over U+10FFFF), never splitting a character
 * to fit the destination. Pure functions; any thread. */
#ifndef OFFLOAD_UTIL_UTF8_H
#define OFFLOAD_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
bool utf8_valid(const char *s, size_t n);
/* Writes a NUL-terminated sanitized copy of src[0..n) into dst (size >= 1).
 * Stops at a NUL in src. Returns the bytes written (without the NUL). */
size_t utf8_sanitize(char *dst, size_t size, const char *src, size_t n);

#endif
