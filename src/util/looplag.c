/* util/looplag: see looplag.h. */
#include "util/looplag.h"

static const double lag_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

static void on_tick(uv_timer_t *t) {
  looplag_t *l = t->data;
  uint64_t now = uv_hrtime();
  double lag = now > l->due_ns ? (double)(now - l->due_ns) / 1e9 : 0.0;
  hist_observe(&l->hist, lag);
  if (lag > l->max_s)
    l->max_s = lag;
  l->due_ns = now + l->interval_ms * 1000000u;
  uv_timer_start(&l->timer, on_tick, l->interval_ms, 0);
}

void looplag_start(looplag_t *l, uv_loop_t *loop, uint64_t interval_ms) {
  hist_init(&l->hist, lag_bounds, sizeof lag_bounds / sizeof lag_bounds[0]);
  l->max_s = 0;
  l->interval_ms = interval_ms;
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  l->due_ns = uv_hrtime() + interval_ms * 1000000u;
  uv_timer_start(&l->timer, on_tick, interval_ms, 0);
  uv_unref((uv_handle_t *)&l->timer);
}

void looplag_stop(looplag_t *l) { uv_close((uv_handle_t *)&l->timer, NULL); }
