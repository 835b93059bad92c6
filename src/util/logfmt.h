/* util/logfmt: the pieces of a log line that util/log.c and the access log
 * (http/access.c) share: a UTC timestamp with milliseconds, and client
 * bytes made safe for one line of text or a JSON string. Pure functions;
 * any thread. */
#ifndef OFFLOAD_UTIL_LOGFMT_H
#define OFFLOAD_UTIL_LOGFMT_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define LOGFMT_TIME_LEN 32

/* "2026-11-29T16:00:00.123Z" for `wall_ms` (ms since the epoch). */
void logfmt_time(char out[LOGFMT_TIME_LEN], int64_t wall_ms);
/* Appends s[0..n) as one space-free field: bytes outside '!'..'~', and
 * '"' and '\\', as \xHH; an empty field as "-". 0 or OFF_ENOMEM. */
int logfmt_text(buf_t *b, const char *s, size_t n);
/* Appends s[0..n) as a JSON string, quotes included: '"', '\\' and control
 * characters escaped, valid UTF-8 kept, every other byte U+FFFD (as the
 * API's error replies do). 0 or OFF_ENOMEM. */
int logfmt_json(buf_t *b, const char *s, size_t n);

#endif
