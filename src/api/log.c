/* api/log: GET /jobs/<id>/log, a command job's output (commands/log.h):
 * the last CMDLOG_TAIL bytes of its stdout and stderr as text/plain, and
 * with ?follow=1 every new byte as it comes (chunked) until the job is
 * final.
 *
 * Where the bytes are: a running command's ring (cmdlog_find, copied under
 * its mutex: at most 64 KiB, never a wait), or, once its run ended, the
 * tail the runner saved to <files root>/<id>/CMDLOG_FILE, which is opened,
 * measured and sent on libuv's thread pool (uv_fs_*, http_stream_file):
 * the loop never touches the disk.
 *
 * DESIGN (followers). A follower is a streamed reply, the log it follows
 * (a reference), the position of the next byte to send, and a registry
 * watch while its job is not final. Writers wake the loop with one
 * uv_async_t (the notify hook); every wake-up pumps every follower: it
 * copies what came after its position, or, when the ring overtook it, says
 * how much it skipped and goes on from the oldest byte held. A follower
 * whose client reads slowly (more than half of HTTP_STREAM_MAX_UNSENT
 * queued) skips wake-ups until the drain callback, then catches up: the
 * positions make that one read. State changes that print nothing (a queued
 * job canceled, a run that ended between two wake-ups) come through the
 * watch, so no timer polls. At the final state the follower sends what
 * its log still holds, or the saved file if a run ended before it found
 * that run's log, and ends the body.
 *
 * Ownership: a follower owns itself, its log reference and its file
 * descriptor. It is freed by whichever comes first of: its body ended, a
 * stream call failed (the connection is closed, no abort callback), the
 * client left (the abort callback). While a thread-pool operation is
 * pending a client that leaves only clears `req`; the operation's callback
 * frees. Followers sending a file are off the wake-up list, so they never
 * touch an api_logs_t that may be gone.
 *
 * Threads: loop thread only, except on_notify (any writer thread). */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "commands/log.h"
#include "commands/run.h"
#include "store/files.h"
#include "util/dlist.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define SKIP_MARK_MAX 64

struct api_logs {
  uv_async_t wake;              /* its close callback frees the struct */
  struct follower *head, *tail; /* pumped on every wake-up */
  size_t n;
  bool stopping;
  char buf[CMDLOG_TAIL + SKIP_MARK_MAX]; /* one pump's copy (the loop's only) */
};

typedef struct follower {
  job_watch_t watch; /* first: the registry hands this back */
  api_t *a;
  api_logs_t *logs; /* set while on the list */
  http_req_t *req;  /* NULL once the client left or the reply ended */
  job_t *job;       /* while watching: valid until its final call */
  char id[JOB_ID_LEN + 1];
  bool follow;
  bool watching;
  bool final;     /* the job is final (or gone): end once caught up */
  bool want_file; /* at the end, the saved tail of a run it never saw */
  bool paused;    /* waiting for the drain callback */
  bool fresh;     /* `log` just found: its tail goes without a skip mark */
  cmdlog_t *log;  /* the run being followed (a reference), or NULL */
  uint64_t pos;   /* the position in `log` of the next byte to send */
  int attempt;    /* the job's runs started when `log` was found */
  /* The saved tail. */
  uv_fs_t fs;
  int fd;
  bool fs_busy; /* an open or stat is pending */
  bool sending; /* http_stream_file is sending fd */
  struct follower *prev, *next;
} follower_t;

static bool is_command(const offload_task_def_t *def) { return commands_is_command(def); }

static void pump(follower_t *f);

/* ---- the shared part ---- */

static void on_notify(void *ctx) { uv_async_send(&((api_logs_t *)ctx)->wake); }

static void on_wake(uv_async_t *h) {
  api_logs_t *l = h->data;
  for (follower_t *f = l->head, *next; f; f = next) {
    next = f->next; /* pump may free f, never another follower */
    pump(f);
  }
}

api_logs_t *api_logs_new(uv_loop_t *loop) {
  api_logs_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  if (uv_async_init(loop, &l->wake, on_wake) != 0) {
    free(l);
    return NULL;
  }
  l->wake.data = l;
  cmdlog_set_notify(on_notify, l);
  return l;
}

size_t api_logs_followers(const api_logs_t *l) { return l ? l->n : 0; }

static void on_logs_closed(uv_handle_t *h) { free(h->data); }

void api_logs_free(api_logs_t *l) {
  if (!l)
    return;
  assert(!l->head); /* the connections closed first: every follower is gone */
  cmdlog_set_notify(NULL, NULL);
  uv_close((uv_handle_t *)&l->wake, on_logs_closed);
}

static void unlist(follower_t *f) {
  if (!f->logs)
    return;
  DLIST_UNLINK(f->logs->head, f->logs->tail, f, prev, next);
  f->logs->n--;
  f->logs = NULL;
}

/* ---- one follower's end ---- */

static void on_fd_closed(uv_fs_t *fs) {
  uv_fs_req_cleanup(fs);
  free(fs->data);
}

/* Frees the follower (its request is no longer touched): off the list, its
 * watch and log dropped, its descriptor closed on the thread pool. */
static void release(follower_t *f) {
  assert(!f->fs_busy);
  unlist(f);
  if (f->watching)
    registry_unwatch(f->job, &f->watch);
  f->watching = false;
  cmdlog_unref(f->log);
  f->log = NULL;
  if (f->fd >= 0 && uv_fs_close(f->a->loop, &f->fs, f->fd, on_fd_closed) == 0)
    return;
  free(f);
}

/* The body is complete: the last chunk, then free. */
static void finish(follower_t *f) {
  if (f->req)
    http_stream_end(f->req);
  f->req = NULL;
  release(f);
}

/* A stream call failed: the connection is closed and no abort comes. */
static void lost(follower_t *f) {
  f->req = NULL;
  release(f);
}

static void on_abort(http_req_t *req, void *data) {
  (void)req;
  follower_t *f = data;
  f->req = NULL;
  if (!f->fs_busy) /* http runs this once no thread-pool work uses fd */
    release(f);
}

void api_logs_stop(api_logs_t *l) {
  if (!l)
    return;
  l->stopping = true;
  for (follower_t *f = l->head, *next; f; f = next) {
    next = f->next;
    finish(f);
  }
}

/* ---- the saved tail: open, measure, send, on the thread pool ---- */

static void on_file_sent(http_req_t *req, int status, void *data) {
  follower_t *f = data;
  f->sending = false;
  if (status != 0) { /* http closed the connection itself */
    lost(f);
    return;
  }
  (void)req;
  finish(f);
}

static http_headers_t text_headers(void) {
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "Cache-Control", "no-store");
  return h;
}

/* A reply without follow: the whole body now (owned), or nothing to say. */
static void reply_text(http_req_t *req, char *body, size_t len) {
  http_headers_t h = text_headers();
  http_reply_take(req, 200, TEXT_PLAIN, &h, body, len);
  http_headers_fini(&h);
}

static void on_file_stat(uv_fs_t *fs) {
  follower_t *f = fs->data;
  f->fs_busy = false;
  int64_t size = fs->result == 0 ? (int64_t)fs->statbuf.st_size : 0;
  uv_fs_req_cleanup(fs);
  if (!f->req) { /* the client left meanwhile */
    release(f);
    return;
  }
  if (!f->follow) {
    http_headers_t h = text_headers();
    int rc = http_stream_start(f->req, 200, TEXT_PLAIN, &h, size);
    http_headers_fini(&h);
    if (rc != 0) {
      lost(f);
      return;
    }
  }
  if (size == 0) {
    finish(f);
    return;
  }
  f->sending = true;
  if (http_stream_file(f->req, f->fd, 0, (uint64_t)size, on_file_sent, f) != 0) {
    f->sending = false;
    finish(f);
  }
}

static void on_file_open(uv_fs_t *fs) {
  follower_t *f = fs->data;
  f->fs_busy = false;
  f->fd = fs->result >= 0 ? (int)fs->result : -1;
  uv_fs_req_cleanup(fs);
  if (!f->req) {
    release(f);
    return;
  }
  if (f->fd < 0) { /* no saved tail (e.g. the run was canceled before it printed) */
    if (f->follow) {
      finish(f);
    } else {
      reply_text(f->req, NULL, 0);
      f->req = NULL;
      release(f);
    }
    return;
  }
  f->fs_busy = true;
  if (uv_fs_fstat(f->a->loop, &f->fs, f->fd, on_file_stat) != 0) {
    f->fs.result = -1; /* sent as empty */
    on_file_stat(&f->fs);
  }
}

/* Sends the saved tail, then ends the body. Off the wake-up list: nothing
 * but the thread pool's callbacks and the client's leaving moves it now. */
static void send_file(follower_t *f) {
  unlist(f);
  char path[4096];
  const char *root = f->a->files_root;
  f->fs.data = f;
  f->fs_busy = true;
  if (root && files_path(root, f->id, NULL, path, sizeof path) == 0 &&
      strlen(path) + sizeof "/" CMDLOG_FILE <= sizeof path) {
    strcat(path, "/" CMDLOG_FILE);
    if (uv_fs_open(f->a->loop, &f->fs, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0, on_file_open) == 0)
      return;
  }
  f->fs.result = -1; /* as if it were not there */
  on_file_open(&f->fs);
}

/* ---- following ---- */

static void on_drain(http_req_t *req, void *data) {
  (void)req;
  follower_t *f = data;
  f->paused = false;
  pump(f);
}

/* Takes the log of the job's current run, if one is open. */
static bool attach(follower_t *f) {
  f->log = cmdlog_find(f->id);
  if (!f->log)
    return false;
  f->pos = 0;
  f->fresh = true;
  if (f->watching) { /* a run is on: its start is counted once refreshed */
    registry_refresh(f->a->reg, f->job);
    f->attempt = f->job->attempts;
  }
  return true;
}

/* Sends what the log holds past f->pos, then (final) ends. May free f. */
static void pump(follower_t *f) {
  if (!f->req || f->fs_busy || f->sending || f->paused || !f->logs)
    return;
  char *buf = f->logs->buf;
  while (f->log || (!f->final && attach(f))) {
    if (http_stream_unsent(f->req) > HTTP_STREAM_MAX_UNSENT / 2) {
      f->paused = true; /* the drain callback catches up */
      http_stream_on_drain(f->req, on_drain, f);
      return;
    }
    uint64_t start, total;
    bool done;
    char *data = buf + SKIP_MARK_MAX; /* room for a skip mark before the bytes */
    size_t n = cmdlog_read(f->log, f->pos, data, CMDLOG_TAIL, &start, &total, &done);
    size_t len = n;
    if (start > f->pos && !f->fresh) { /* the ring overtook this reader */
      char mark[SKIP_MARK_MAX];
      int m = snprintf(mark, sizeof mark, "\n[offload: %llu bytes skipped]\n", (unsigned long long)(start - f->pos));
      data -= m;
      memcpy(data, mark, (size_t)m);
      len += (size_t)m;
    }
    f->fresh = false;
    f->pos = start + n;
    if (len > 0 && http_stream_write(f->req, data, len) != 0) {
      lost(f);
      return;
    }
    if (f->pos < total)
      continue; /* more came meanwhile */
    if (!done && !f->final)
      return;             /* the run goes on: the next write wakes us */
    cmdlog_unref(f->log); /* this run is over (or the job is): all of it is sent */
    f->log = NULL;
    if (f->final)
      break;
  }
  if (!f->final)
    return;
  if (f->want_file) {
    f->want_file = false;
    send_file(f);
    return;
  }
  finish(f);
}

/* The job is final (j valid for the call) or gone (NULL). */
static void follow_final(follower_t *f, const job_t *j) {
  f->final = true;
  if (!f->log && !attach(f)) /* an orphaned run may still be printing */
    f->want_file = j && j->attempts > f->attempt;
  else
    f->want_file = false;
  pump(f);
}

static void on_job_final(job_t *j, job_watch_t *w) {
  follower_t *f = (follower_t *)w;
  f->watching = false; /* the registry removed the watch */
  f->job = NULL;
  follow_final(f, j);
}

/* A job whose row the store was keeping: rc < 0 means it is gone now. */
static void on_job_accepted(job_t *j, job_watch_t *w, int rc) {
  (void)j;
  follower_t *f = (follower_t *)w;
  if (rc == 0)
    return;
  f->watching = false;
  f->job = NULL;
  follow_final(f, NULL);
}

static follower_t *follower_new(api_t *a, http_req_t *req, const job_t *j, bool follow) {
  follower_t *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->a = a;
  f->req = req;
  f->fd = -1;
  f->follow = follow;
  memcpy(f->id, j->id, JOB_ID_LEN + 1);
  return f;
}

static void start_follow(api_t *a, http_req_t *req, job_t *j) {
  api_logs_t *l = a->logs;
  follower_t *f = follower_new(a, req, j, true);
  if (!f) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  http_headers_t h = text_headers();
  int rc = http_stream_start(req, 200, TEXT_PLAIN, &h, HTTP_LEN_UNKNOWN);
  http_headers_fini(&h);
  if (rc != 0) { /* the connection is closed */
    free(f);
    return;
  }
  http_req_on_abort(req, on_abort, f);
  DLIST_APPEND(l->head, l->tail, f, prev, next);
  l->n++;
  f->logs = l;
  if (job_is_final(j)) {
    follow_final(f, j);
    return;
  }
  f->watch.cb = on_job_final;
  f->watch.accepted = on_job_accepted;
  f->job = j;
  f->watching = true;
  registry_watch(j, &f->watch);
  pump(f);
}

/* ---- without follow ---- */

static void reply_now(api_t *a, http_req_t *req, job_t *j) {
  cmdlog_t *log = j->status == JOB_QUEUED ? NULL : cmdlog_find(j->id);
  if (log) { /* running (or an orphaned run still printing): its ring */
    char *buf = malloc(CMDLOG_TAIL);
    size_t n = buf ? cmdlog_read(log, 0, buf, CMDLOG_TAIL, NULL, NULL, NULL) : 0;
    cmdlog_unref(log);
    if (!buf) {
      api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
      return;
    }
    reply_text(req, buf, n);
    return;
  }
  if (j->status == JOB_QUEUED || j->attempts == 0) { /* nothing ran: nothing printed */
    reply_text(req, NULL, 0);
    return;
  }
  follower_t *f = follower_new(a, req, j, false);
  if (!f) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  http_req_on_abort(req, on_abort, f);
  send_file(f);
}

void h_job_log(api_t *a, http_req_t *req, const router_match_t *m) {
  static const char *const allowed[] = {"follow", NULL};
  query_t q;
  if (!api_parse_query(req, &q, allowed))
    return;
  bool follow = false;
  const query_param_t *fp = query_get(&q, "follow");
  if (fp) {
    if (strcmp(fp->value, "1") == 0 || strcmp(fp->value, "true") == 0) {
      follow = true;
    } else if (strcmp(fp->value, "0") != 0 && strcmp(fp->value, "false") != 0) {
      api_error(req, API_E_INVALID_PARAM, NULL, "follow", "follow must be 1, true, 0 or false; got \"%.40s\".",
                fp->value);
      return;
    }
  }
  if (api_remote_try(a, req, m, API_REMOTE_LOG, 0))
    return; /* another node's job (cluster): the node that runs it has the log */
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  if (!is_command(j->def)) {
    api_error(req, API_E_NO_LOG, NULL, NULL,
              "The %s task keeps no log: only command tasks (--commands) keep their program's output.", j->def->name);
    return;
  }
  if (follow && req->method == HTTP_M_HEAD) { /* the headers of the stream, no body */
    http_headers_t h = text_headers();
    if (http_stream_start(req, 200, TEXT_PLAIN, &h, HTTP_LEN_UNKNOWN) == 0)
      http_stream_end(req);
    http_headers_fini(&h);
    return;
  }
  /* Shutting down (or no hook): the log as it is now. */
  if (follow && a->logs && !a->logs->stopping)
    start_follow(a, req, j);
  else
    reply_now(a, req, j);
}
