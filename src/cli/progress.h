/* cli/progress: the live progress bar of `wait` and `submit --wait`, on
 * stderr and only when stderr is a terminal:
 *     [##########..........]  42%  spin  3.2s
 * redrawn in place with "\r" at most 10 times a second, and erased before
 * the summary line. The elapsed time is the client's own (since the wait
 * began), so clocks need not agree.
 *
 * Threads: main. One global: the "a bar is on screen" flag that the SIGINT
 * handler reads to move the shell's prompt to a clean line. */
#ifndef OFFLOAD_CLI_PROGRESS_H
#define OFFLOAD_CLI_PROGRESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct progress {
  bool on; /* stderr is a terminal */
  uint64_t start_ns, drawn_ns;
  double frac;
  char task[48], status[16];
  long queue_pos; /* 0 when not queued */
  bool shown;     /* a bar is on screen */
} progress_t;

/* `on`: draw at all (stderr is a terminal). */
void progress_init(progress_t *p, bool on);
/* Takes the job's task, status, progress and queue place; redraws if the
 * last drawing is 100 ms old. */
void progress_job(progress_t *p, const json_t *job);
/* Redraws when due (the elapsed time moves on even without news). */
void progress_tick(progress_t *p);
/* Erases the bar, if one is on screen. */
void progress_clear(progress_t *p);
/* Formats one bar into out (at most `cols` columns wide, cols >= 20):
 * [####......]  42%  task  [status]  3.2s. Returns its length. */
size_t progress_format(char *out, size_t size, int cols, double frac, const char *task, const char *status,
                       long queue_pos, double secs);

#endif
