/* cli/top_view: see top_view.h. */
#include "cli/top_view.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void top_view_init(top_view_t *v, const char *url) {
  memset(v, 0, sizeof *v);
  v->url = url;
}

static int64_t num(const json_t *o, const char *a, const char *b) {
  const json_t *x = json_object_get(o, a);
  if (b)
    x = json_object_get(x, b);
  return json_is_integer(x) ? (int64_t)json_integer_value(x) : 0;
}

void top_view_stats(top_view_t *v, const json_t *s) {
  v->have_stats = true;
  v->depth = num(s, "queue", "depth");
  v->capacity = num(s, "queue", "capacity");
  v->total = num(s, "workers", "total");
  v->busy = num(s, "workers", "busy");
  v->have_rates = json_is_number(json_object_get(s, "completedPerSec"));
  v->done_ps = json_number_value(json_object_get(s, "completedPerSec"));
  v->failed_ps = json_number_value(json_object_get(s, "failedPerSec"));
  v->lag_ms = json_number_value(json_object_get(s, "loopLagMs"));
}

static void copy(char *dst, size_t size, const json_t *s) {
  snprintf(dst, size, "%s", json_string_value(s) ? json_string_value(s) : "");
}

static void fill(top_job_t *j, const json_t *o) {
  copy(j->id, sizeof j->id, json_object_get(o, "id"));
  copy(j->task, sizeof j->task, json_object_get(o, "task"));
  copy(j->status, sizeof j->status, json_object_get(o, "status"));
  copy(j->error, sizeof j->error, json_object_get(json_object_get(o, "error"), "code"));
  j->progress = json_number_value(json_object_get(o, "progress"));
  if (!(j->progress >= 0)) /* NaN too: the bar's arithmetic wants 0..1 */
    j->progress = 0;
  if (j->progress > 1)
    j->progress = 1;
  j->created = num(o, "createdAt", NULL);
  j->started = num(o, "startedAt", NULL);
  j->finished = num(o, "finishedAt", NULL);
}

void top_view_job(top_view_t *v, const json_t *o) {
  const char *id = json_string_value(json_object_get(o, "id"));
  if (!id)
    return;
  for (int i = 0; i < v->njobs; i++)
    if (strcmp(v->jobs[i].id, id) == 0) {
      fill(&v->jobs[i], o);
      return;
    }
  /* A job not shown yet: the newest, in front; the oldest shown drops out. */
  int n = v->njobs < TOP_JOBS ? v->njobs : TOP_JOBS - 1;
  memmove(&v->jobs[1], &v->jobs[0], sizeof v->jobs[0] * (size_t)n);
  fill(&v->jobs[0], o);
  v->njobs = n + 1;
}

void top_view_jobs(top_view_t *v, const json_t *reply) {
  size_t i;
  const json_t *o;
  v->njobs = 0;
  json_array_foreach(json_object_get(reply, "jobs"), i, o) {
    if (v->njobs == TOP_JOBS)
      break;
    fill(&v->jobs[v->njobs++], o);
  }
}

/* Appends one screen line: cut to cols (bytes: the text is ASCII but for
 * task names), then cleared to the end. */
static void line(buf_t *out, int cols, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void line(buf_t *out, int cols, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if (n > cols)
    n = cols;
  if ((size_t)n >= sizeof text)
    n = (int)sizeof text - 1;
  buf_append(out, text, (size_t)n);
  buf_puts(out, "\033[K\r\n");
}

static void clock_text(int64_t ms, char *out, size_t size) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  out[0] = '\0';
  if (ms > 0 && localtime_r(&t, &tm))
    strftime(out, size, "%H:%M:%S", &tm);
}

int top_view_render(const top_view_t *v, buf_t *out, int rows, int cols, int64_t now_ms) {
  char now[16], busy[32], rate[64];
  clock_text(now_ms, now, sizeof now);
  buf_puts(out, "\033[H");
  line(out, cols, "offload top  %s  %s  %s   q quits", v->url, v->source, now);
  if (v->have_stats) {
    snprintf(busy, sizeof busy, "%lld of %lld busy", (long long)v->busy, (long long)v->total);
    line(out, cols, "queue    %6lld / %-10lld  workers  %s", (long long)v->depth, (long long)v->capacity, busy);
    if (v->have_rates)
      snprintf(rate, sizeof rate, "%8.1f          failed/s %6.1f      loop lag %.2f ms", v->done_ps, v->failed_ps,
               v->lag_ms);
    else
      snprintf(rate, sizeof rate, "%8s          failed/s %6s      loop lag -", "-", "-");
    line(out, cols, "done/s %s", rate);
  } else {
    line(out, cols, "waiting for the first figures...");
    line(out, cols, "%s", "");
  }
  line(out, cols, "%s", v->note);
  line(out, cols, "%-24s %-16s %-11s %-17s %-9s %s", "ID", "TASK", "STATUS", "PROGRESS", "CREATED", "TIME");
  int room = rows - 6; /* the lines above, and no newline on the last row (it would scroll) */
  for (int i = 0; i < v->njobs && i < room; i++) {
    const top_job_t *j = &v->jobs[i];
    char bar[16], created[16], took[24] = "", state[48];
    int fill = (int)(j->progress * 10 + 1e-9);
    for (int k = 0; k < 10; k++)
      bar[k] = k < fill ? '#' : '.';
    bar[10] = '\0';
    clock_text(j->created, created, sizeof created);
    if (j->finished && j->started)
      snprintf(took, sizeof took, "%.1fs", (double)(j->finished - j->started) / 1000.0);
    else if (j->started && now_ms >= j->started)
      snprintf(took, sizeof took, "%.1fs...", (double)(now_ms - j->started) / 1000.0);
    snprintf(state, sizeof state, "%s%s%s", j->status, j->error[0] ? " " : "", j->error);
    line(out, cols, "%-24s %-16.16s %-11.24s [%s] %3d%% %-9s %s", j->id, j->task, state, bar,
         (int)(j->progress * 100 + 1e-9), created, took);
  }
  buf_puts(out, "\033[J");
  return 0;
}
