/* pool/wire: what a job and its result look like inside a frame's payload
 * (pool/frame.h carries them between the server and a worker process).
 *
 * Job: {u32 flags, u32 name length, u16 id length, u16 root length, i64
 * input length, u8 input type length, the task's name, the job's id, the
 * files root, the input type, its params as JSON text}. When the JSON is longer than `inline_max` it travels in a memfd
 * passed with the frame instead (flag WIRE_PARAMS_IN_FD), so a large input
 * is never copied through the socket.
 * Result: {u8 kind, u8 failed, u16 code length, u32 message length, i64,
 * f64, the error code, a text: the error message (cut at WIRE_MAX_MESSAGE
 * bytes) or a JSON result's text (at most TASK_RESULT_JSON_MAX), then the
 * output files: {u16 count, then per file u8 name length, u8 type length,
 * i64 bytes, the name, the media type}}.
 *
 * Threads: pure functions. Ownership: every encode returns a malloc'd
 * payload the caller frees, and a descriptor (or -1) the caller closes;
 * decode borrows its input and returns new values the caller owns. */
#ifndef OFFLOAD_POOL_WIRE_H
#define OFFLOAD_POOL_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tasks/context.h"

#define WIRE_PARAMS_IN_FD 1u
#define WIRE_INPUT_IN_FD 2u /* the passed descriptor is the job's input (the params are inline then) */
#define WIRE_INLINE_MAX (48 * 1024)
#define WIRE_MAX_MESSAGE (8 * 1024)

/* Where a job's output files go (tasks/context.h): its id and the files
 * root. Empty strings: nowhere. */
typedef struct wire_where {
  char job_id[24];
  char files_root[1024];
  int64_t input_len;   /* with an input: its size */
  char input_type[128]; /* ... and media type */
  bool has_input;       /* encode: the passed descriptor is input_fd; decode: the frame's fd is the input */
  int input_fd;         /* encode only: the input (the frame takes it; params must fit inline) */
} wire_where_t;

/* Returns 0 or a negative OFF_E* code (OFF_ENOMEM, OFF_ESYS for memfd).
 * `where` may be NULL (nowhere). */
int wire_encode_job(const char *task, const wire_where_t *where, const json_t *params, size_t inline_max,
                    void **payload, size_t *len, int *fd);
/* Fills task[task_cap], *where (when not NULL) and *params (new reference).
 * `fd` is the frame's passed descriptor or -1 (borrowed). Returns 0 or
 * OFF_EINVAL. */
int wire_decode_job(const void *payload, size_t len, int fd, char *task, size_t task_cap, wire_where_t *where,
                    json_t **params);

int wire_encode_result(const task_result_t *r, void **payload, size_t *len);
/* Fills *r (whose err_message it allocates). Returns 0 or OFF_EINVAL / OFF_ENOMEM. */
int wire_decode_result(const void *payload, size_t len, task_result_t *r);

#endif
