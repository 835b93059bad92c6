/* commands/log: a running command's output, the last CMDLOG_TAIL bytes of
 * its stdout and stderr as they came, shared by the worker thread that
 * runs it (the writer) and the loop (GET /jobs/<id>/log readers and
 * followers). Memory is bounded: one ring of CMDLOG_TAIL bytes per running
 * command, however much it prints.
 *
 * Positions are byte offsets into everything the command printed (a
 * `total` that only grows), so a follower asks for "what came after
 * position p" and learns what it missed when the ring overtook it.
 *
 * Threads: every function may be called from any thread; one mutex per
 * log, held only to copy at most CMDLOG_TAIL bytes, and one for the table
 * of logs by job id (held for a lookup). The notify hook runs on the
 * writer's thread, outside both locks (it is uv_async_send in the server).
 * Ownership: reference counted. cmdlog_open returns the writer's
 * reference; cmdlog_find gives the caller one more; each is dropped with
 * cmdlog_unref. A log leaves the table when its writer closes it (readers
 * holding it may still read it; newcomers read the file the runner saved,
 * CMDLOG_FILE in the job's directory). */
#ifndef OFFLOAD_COMMANDS_LOG_H
#define OFFLOAD_COMMANDS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMDLOG_TAIL (64 * 1024)
/* The saved tail in <files root>/<job id>/ once the run ends (a dotfile:
 * never listed among the job's files). */
#define CMDLOG_FILE ".log"

typedef struct cmdlog cmdlog_t;

/* The hook every write and close calls (any thread; NULL = none). Set once
 * at start, before any command runs. */
void cmdlog_set_notify(void (*fn)(void *ctx), void *ctx);

/* Writer: a new log for job `job_id`, in the table (replacing none: a job
 * runs once at a time). NULL without memory. */
cmdlog_t *cmdlog_open(const char *job_id);
void cmdlog_write(cmdlog_t *l, const void *data, size_t len);
/* Writer: the run ended; the log leaves the table and is marked done.
 * Drops the writer's reference. */
void cmdlog_close(cmdlog_t *l);

/* Reader: job `job_id`'s running log with a reference, or NULL. */
cmdlog_t *cmdlog_find(const char *job_id);
cmdlog_t *cmdlog_ref(cmdlog_t *l);
void cmdlog_unref(cmdlog_t *l);

/* Reader: copies what the log holds from position `from` on (from the
 * oldest byte it still holds, if `from` is older) into buf, at most `cap`
 * bytes. *start is the position of buf[0], *total everything printed so
 * far, *done whether the writer closed it. Returns the bytes copied. */
size_t cmdlog_read(cmdlog_t *l, uint64_t from, char *buf, size_t cap, uint64_t *start, uint64_t *total, bool *done);

/* Writer side helper: the tail, as cmdlog_read(l, 0, ...) would give it,
 * written to `path` (created or truncated, mode 0600). 0 or -1 (errno). */
int cmdlog_save(cmdlog_t *l, const char *path);

#endif
