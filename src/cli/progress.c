/* cli/progress: see progress.h. */
#include "cli/progress.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/clock.h"

#define REDRAW_NS 100000000u /* 10 redraws a second at most */

static volatile sig_atomic_t bar_on_screen;

/* SIGINT while a bar is up: put the cursor on a clean line, then die of the
 * signal as if nothing had been caught. */
static void on_sigint(int sig) {
  if (bar_on_screen) {
    static const char nl[] = "\r\033[K";
    ssize_t w = write(STDERR_FILENO, nl, sizeof nl - 1);
    (void)w;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static int columns(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
    return ws.ws_col;
  return 80;
}

size_t progress_format(char *out, size_t size, int cols, double frac, const char *task, const char *status,
                       long queue_pos, double secs) {
  if (frac < 0 || frac != frac)
    frac = 0;
  if (frac > 1)
    frac = 1;
  char tail[160];
  char state[40] = "";
  if (queue_pos > 0)
    snprintf(state, sizeof state, "  %s #%ld", status, queue_pos);
  else if (strcmp(status, "processing") != 0 && status[0])
    snprintf(state, sizeof state, "  %s", status);
  int tl = snprintf(tail, sizeof tail, " %3d%%  %.40s%s  %.1fs", (int)(frac * 100), task, state, secs);
  if (tl < 0)
    tl = 0;
  int width = cols - 1 - 2 - tl; /* one column spare: no wrap on the last one */
  if (width > 40)
    width = 40;
  if (width < 5)
    width = 5;
  int fill = (int)(frac * width + 1e-9);
  size_t n = 0;
  if (size < (size_t)width + (size_t)tl + 3)
    return 0;
  out[n++] = '[';
  for (int i = 0; i < width; i++)
    out[n++] = i < fill ? '#' : '.';
  out[n++] = ']';
  memcpy(out + n, tail, (size_t)tl);
  n += (size_t)tl;
  out[n] = '\0';
  return n;
}

void progress_init(progress_t *p, bool on) {
  memset(p, 0, sizeof *p);
  p->on = on;
  p->start_ns = clock_mono_ns();
  if (on)
    signal(SIGINT, on_sigint);
}

static void draw(progress_t *p) {
  char line[512];
  double secs = (double)(clock_mono_ns() - p->start_ns) / 1e9;
  if (progress_format(line, sizeof line, columns(), p->frac, p->task, p->status, p->queue_pos, secs) == 0)
    return;
  fprintf(stderr, "\r%s\033[K", line);
  fflush(stderr);
  p->drawn_ns = clock_mono_ns();
  p->shown = true;
  bar_on_screen = 1;
}

void progress_job(progress_t *p, const json_t *job) {
  const char *task = json_string_value(json_object_get(job, "task"));
  const char *status = json_string_value(json_object_get(job, "status"));
  json_t *qp = json_object_get(job, "queuePosition");
  snprintf(p->task, sizeof p->task, "%s", task ? task : "");
  snprintf(p->status, sizeof p->status, "%s", status ? status : "");
  double f = json_number_value(json_object_get(job, "progress"));
  if (f > p->frac || (status && strcmp(status, "queued") == 0))
    p->frac = f; /* a retry goes back to queued; otherwise progress only grows */
  p->queue_pos = json_is_integer(qp) ? (long)json_integer_value(qp) : 0;
  progress_tick(p);
}

void progress_tick(progress_t *p) {
  if (!p->on || !p->task[0])
    return;
  if (clock_mono_ns() - p->drawn_ns >= REDRAW_NS)
    draw(p);
}

void progress_clear(progress_t *p) {
  if (!p->on || !p->shown)
    return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  p->shown = false;
  bar_on_screen = 0;
}
