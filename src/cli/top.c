/* cli/top: `offload top`, a full-screen live view. It reads the server's
 * event stream GET /events (stats once a second, job events) into a
 * top_view; a server without it (404, 405), or with no stream to spare
 * (503), is polled every second instead:
 * GET /health, then GET /jobs?limit=20. A stream that breaks is opened
 * again a second later, and the trouble is shown meanwhile.
 *
 * The terminal: the alternate screen, no cursor, and stdin without line
 * buffering or echo (termios, kept ISIG so Ctrl-C is still SIGINT), read
 * through a uv_poll for `q`. SIGINT, SIGTERM, SIGHUP and SIGQUIT quit the
 * same way as `q`, and every way out restores the terminal as it was.
 * Redraws are throttled to 10 a second, and happen at least once a second
 * so times move.
 *
 * Threads: main; everything runs on one private loop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "cli/net.h"
#include "cli/sse.h"
#include "cli/top_view.h"
#include "util/buf.h"
#include "util/clock.h"

typedef enum { PH_EVENTS, PH_HEALTH, PH_JOBS } phase_t;

static const int watched_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
#define NSIGNALS (sizeof watched_signals / sizeof watched_signals[0])

typedef struct top {
  cli_ctx_t *ctx;
  uv_loop_t loop;
  httpc_t http;
  httpc_conn_t conn;
  httpc_addrs_t addrs;
  phase_t phase, next;
  unsigned next_delay_ms;
  bool conn_live, quitting, dirty;
  uint64_t drawn_ns;
  uv_poll_t in;
  uv_signal_t sig[NSIGNALS];
  uv_timer_t draw, again;
  sse_t sse;
  struct termios saved;
  top_view_t view;
} top_t;

static void begin(top_t *t, phase_t ph);

static void quit(top_t *t) {
  if (t->quitting)
    return;
  t->quitting = true;
  if (t->conn_live)
    httpc_close(&t->conn, NULL);
  uv_close((uv_handle_t *)&t->in, NULL);
  for (size_t i = 0; i < NSIGNALS; i++)
    uv_close((uv_handle_t *)&t->sig[i], NULL);
  uv_close((uv_handle_t *)&t->draw, NULL);
  uv_close((uv_handle_t *)&t->again, NULL);
}

static void screen_size(int *rows, int *cols) {
  struct winsize ws;
  *rows = 24, *cols = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row >= 8 && ws.ws_col >= 20)
    *rows = ws.ws_row, *cols = ws.ws_col;
}

static void draw(top_t *t) {
  int rows, cols;
  screen_size(&rows, &cols);
  buf_t out = BUF_INIT;
  top_view_render(&t->view, &out, rows, cols, (int64_t)clock_wall_ms());
  if (out.data) {
    size_t off = 0;
    while (off < out.len) {
      ssize_t w = write(STDOUT_FILENO, out.data + off, out.len - off);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break;
      off += (size_t)w;
    }
  }
  buf_free(&out);
  t->dirty = false;
  t->drawn_ns = clock_mono_ns();
}

static void on_draw(uv_timer_t *h) {
  top_t *t = h->data;
  if (t->dirty || clock_mono_ns() - t->drawn_ns >= 1000000000u)
    draw(t);
}

static void on_signal(uv_signal_t *h, int sig) {
  top_t *t = h->data;
  if (sig == SIGWINCH)
    t->dirty = true;
  else
    quit(t);
}

static void on_input(uv_poll_t *h, int status, int events) {
  top_t *t = h->data;
  char buf[64];
  ssize_t n = status == 0 ? read(STDIN_FILENO, buf, sizeof buf) : 0;
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0 || memchr(buf, 'q', (size_t)n) || memchr(buf, 'Q', (size_t)n))
    quit(t);
}

static int on_event(void *data, const char *event, const char *id, const char *payload, size_t len) {
  top_t *t = data;
  json_t *j = json_loadb(payload, len, 0, NULL);
  if (json_is_object(j)) {
    if (strcmp(event, "stats") == 0 || json_object_get(j, "queue"))
      top_view_stats(&t->view, j);
    else if (json_object_get(j, "status"))
      top_view_job(&t->view, j);
    t->dirty = true;
  }
  json_decref(j);
  return 0;
}

static int on_body(httpc_conn_t *c, const char *at, size_t n) {
  top_t *t = c->data;
  if (t->view.note[0]) {
    t->view.note[0] = '\0';
    t->dirty = true;
  }
  return sse_feed(&t->sse, at, n);
}

static void on_again(uv_timer_t *h) {
  top_t *t = h->data;
  begin(t, t->next);
}

static void on_closed(uv_handle_t *h) {
  top_t *t = ((httpc_conn_t *)h->data)->data;
  t->conn_live = false;
  if (t->quitting)
    return;
  if (t->next_delay_ms)
    uv_timer_start(&t->again, on_again, t->next_delay_ms, 0);
  else
    begin(t, t->next);
}

/* Closes the connection; `next` begins after `delay_ms`. */
static void then(top_t *t, phase_t next, unsigned delay_ms) {
  t->next = next;
  t->next_delay_ms = delay_ms;
  httpc_close(&t->conn, on_closed);
}

static void trouble(top_t *t, const char *what, int err) {
  snprintf(t->view.note, sizeof t->view.note, "%s: %s; trying again", what,
           err == UV_EOF ? "the server closed the connection" : uv_strerror(err));
  t->dirty = true;
}

static void on_done(httpc_conn_t *c, int status) {
  top_t *t = c->data;
  if (t->phase == PH_EVENTS) {
    /* No stream here, or none to spare (503 too_many_streams): polls. */
    if (status == 0 && (c->status == 404 || c->status == 405 || c->status == 501 || c->status == 503)) {
      snprintf(t->view.source, sizeof t->view.source, "polling every 1 s");
      then(t, PH_HEALTH, 0);
      return;
    }
    if (status == 0 && c->status == 200)
      trouble(t, "the event stream ended", UV_EOF);
    else if (status == 0)
      snprintf(t->view.note, sizeof t->view.note, "GET /events: HTTP %d; trying again", c->status);
    else
      trouble(t, "GET /events", status);
    t->dirty = true;
    then(t, PH_EVENTS, 1000);
    return;
  }
  json_t *j = status == 0 && c->status == 200 && c->body ? json_loadb(c->body, c->body_len, 0, NULL) : NULL;
  if (!j) {
    if (status)
      trouble(t, t->phase == PH_HEALTH ? "GET /health" : "GET /jobs", status);
    else
      snprintf(t->view.note, sizeof t->view.note, "%s: HTTP %d; trying again",
               t->phase == PH_HEALTH ? "GET /health" : "GET /jobs", c->status);
    t->dirty = true;
    then(t, PH_HEALTH, 1000);
    return;
  }
  t->view.note[0] = '\0';
  if (t->phase == PH_HEALTH)
    top_view_stats(&t->view, j);
  else
    top_view_jobs(&t->view, j);
  json_decref(j);
  t->dirty = true;
  then(t, t->phase == PH_HEALTH ? PH_JOBS : PH_HEALTH, t->phase == PH_HEALTH ? 0 : 1000);
}

static void on_connect(httpc_conn_t *c, int status) {
  top_t *t = c->data;
  if (status == 0) {
    static const char *const paths[] = {"/events", "/health", "/jobs?limit=20"};
    char target[512];
    snprintf(target, sizeof target, "%s%s", t->ctx->url.base, paths[t->phase]);
    status = httpc_request(c, "GET", target, t->phase == PH_EVENTS ? "Accept: text/event-stream\r\n" : NULL, NULL, 0,
                           on_done, t->phase == PH_EVENTS ? on_body : NULL);
    if (status == 0)
      return;
  }
  trouble(t, "cannot reach the server", status);
  then(t, t->phase, 1000);
}

static void begin(top_t *t, phase_t ph) {
  if (t->quitting)
    return;
  t->phase = ph;
  if (ph == PH_EVENTS) {
    sse_fini(&t->sse);
    sse_init(&t->sse, on_event, t);
  }
  int rc = httpc_conn_init(&t->http, &t->conn);
  if (rc == 0) {
    t->conn.data = t;
    t->conn_live = true;
    /* The first address only: the one the blocking check reached is the
     * usual first, and a second try comes a second later anyway. */
    rc = httpc_connect(&t->conn, (const struct sockaddr *)&t->addrs.addr[0], on_connect);
    if (rc == 0)
      return;
    trouble(t, "cannot reach the server", rc);
    then(t, ph, 1000);
    return;
  }
  trouble(t, "cannot reach the server", rc);
  uv_timer_start(&t->again, on_again, 1000, 0);
  t->next = ph;
}

static void screen_enter(top_t *t) {
  struct termios raw = t->saved;
  raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
  fflush(stdout);
}

static void screen_leave(top_t *t) {
  fputs("\033[?25h\033[?1049l", stdout);
  fflush(stdout);
  tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
}

int cli_cmd_top(cli_ctx_t *ctx) {
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
    return cli_usage(ctx, "top draws a full screen: run it on a terminal");
  /* One blocking request first: an unreachable server is exit 4, not a
   * screen that says so. */
  json_t *jobs;
  int rc = net_call(ctx, "GET", "/jobs?limit=20", NULL, &jobs, NULL);
  if (rc)
    return rc;
  top_t *t = calloc(1, sizeof *t);
  if (!t) {
    json_decref(jobs);
    cli_error("out of memory");
    return CLI_HTTP;
  }
  t->ctx = ctx;
  top_view_init(&t->view, ctx->url_text);
  top_view_jobs(&t->view, jobs);
  json_decref(jobs);
  snprintf(t->view.source, sizeof t->view.source, "live (GET /events)");
  rc = httpc_resolve(&ctx->url, &t->addrs);
  if (rc == 0)
    rc = uv_loop_init(&t->loop);
  if (rc == 0 && tcgetattr(STDIN_FILENO, &t->saved) != 0)
    rc = -errno;
  if (rc) {
    free(t);
    return net_unreachable(ctx, rc);
  }
  httpc_init(&t->http, &t->loop, ctx->url.authority, ctx->token);
  uv_poll_init(&t->loop, &t->in, STDIN_FILENO);
  uv_timer_init(&t->loop, &t->draw);
  uv_timer_init(&t->loop, &t->again);
  t->in.data = t->draw.data = t->again.data = t;
  for (size_t i = 0; i < NSIGNALS; i++) {
    uv_signal_init(&t->loop, &t->sig[i]);
    t->sig[i].data = t;
    uv_signal_start(&t->sig[i], on_signal, watched_signals[i]);
  }
  screen_enter(t);
  uv_poll_start(&t->in, UV_READABLE, on_input);
  uv_timer_start(&t->draw, on_draw, 100, 100);
  t->dirty = true;
  begin(t, PH_EVENTS);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  screen_leave(t);
  sse_fini(&t->sse);
  uv_loop_close(&t->loop);
  free(t);
  return CLI_OK;
}
