/* util/logq: log lines written off the caller's thread. A queue owns one
 * writer thread and a bounded buffer of pending lines; callers append whole
 * lines and never wait for the file descriptor, which may be a pipe nobody
 * reads (a full stderr pipe must not stop the event loop). A line that does
 * not fit is dropped and counted.
 *
 * Threads: logq_push, logq_drop and logq_stats from any thread (one mutex,
 * held for a memcpy, never across a write); logq_new and logq_free from the
 * owner's thread. The writer thread only writes.
 *
 * Ownership: the descriptor is borrowed: the caller closes it after
 * logq_free. At most 2 x max_pending bytes of lines are held: the pending
 * buffer, and the one the writer is writing. */
#ifndef OFFLOAD_UTIL_LOGQ_H
#define OFFLOAD_UTIL_LOGQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct logq logq_t;

#define LOGQ_MAX_PENDING_DEFAULT (1024 * 1024)
/* How long logq_free lets the writer finish when the descriptor takes
 * nothing (a stuck reader): then what is left is dropped (counted). */
#define LOGQ_FLUSH_MS 2000

typedef struct logq_stats {
  uint64_t lines;   /* lines written whole */
  uint64_t dropped; /* lines dropped: the queue was full, the descriptor failed, or it never took them */
} logq_stats_t;

/* A queue writing to `fd` (borrowed), holding at most `max_pending` bytes
 * of pending lines (its buffers are allocated now: a push never allocates).
 * NULL on ENOMEM or when the thread cannot start. */
logq_t *logq_new(int fd, size_t max_pending);
/* Appends one line of `len` bytes (the caller ends it with '\n'). Returns 0,
 * or OFF_EFULL when it does not fit: the line is dropped and counted. Never
 * blocks on the descriptor. */
int logq_push(logq_t *q, const char *line, size_t len);
/* Counts a line the caller could not build (out of memory). */
void logq_drop(logq_t *q);
void logq_stats(const logq_t *q, logq_stats_t *out);
/* Stops the writer once it wrote what is pending (giving it at most
 * LOGQ_FLUSH_MS: then the rest is dropped, counted), joins it and frees the
 * queue. No push may run during or after it. NULL is ignored. */
void logq_free(logq_t *q);

#endif
