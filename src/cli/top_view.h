/* cli/top_view: what `offload top` shows and how: the latest figures (from
 * stats events, or GET /health when polling), the newest jobs (from job
 * events, or GET /jobs), and the screen drawn from them with ANSI escapes.
 * No I/O: cli/top feeds it and writes the text, so it is tested alone.
 *
 * Threads: the owner's; no global state. */
#ifndef OFFLOAD_CLI_TOP_VIEW_H
#define OFFLOAD_CLI_TOP_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"

#define TOP_JOBS 64

typedef struct top_job {
  char id[40], task[32], status[12], error[32];
  double progress;
  int64_t created, started, finished; /* ms since the epoch, 0 when null */
} top_job_t;

typedef struct top_view {
  const char *url;
  bool have_stats, have_rates;
  int64_t depth, capacity, total, busy;
  double done_ps, failed_ps, lag_ms;
  top_job_t jobs[TOP_JOBS]; /* newest first */
  int njobs;
  char source[64]; /* how the figures arrive */
  char note[160];  /* a problem to show, "" when none */
} top_view_t;

void top_view_init(top_view_t *v, const char *url);
/* A stats event, or GET /health's reply (no rates: they show as "-"). */
void top_view_stats(top_view_t *v, const json_t *stats);
/* A job event: the job is updated, or added as the newest. */
void top_view_job(top_view_t *v, const json_t *job);
/* GET /jobs's reply: the list replaces the jobs shown. */
void top_view_jobs(top_view_t *v, const json_t *reply);
/* The whole screen for a rows x cols terminal: from the top-left corner,
 * every line cut to cols and cleared to its end. */
int top_view_render(const top_view_t *v, buf_t *out, int rows, int cols, int64_t now_ms);

#endif
