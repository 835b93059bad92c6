/* http/http_fake: see http_fake.h.
 *
 * The fake keeps its own byte buffers with plain realloc rather than buf_t,
 * so a test that arms FAULT_ALLOC hits the code under test, not the fake. */
#include "http/http_fake.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/conn.h"

typedef struct bytes {
  char *data;
  size_t len, cap;
} bytes_t;

struct http_fake {
  conn_t *conn; /* NULL once the transport closed */
  uv_idle_t idle;
  bytes_t out;   /* everything the server wrote */
  bytes_t inbox; /* client bytes not yet delivered */
  wreq_t *wq_head, *wq_tail;
  size_t pending;
  bool eof_pending;
  bool conn_reading;
  bool client_reading;
  bool shutdown_pending, shut;
  bool close_pending, closed;
  bool freeing;
};

static void bytes_add(bytes_t *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      fprintf(stderr, "http_fake: out of memory\n");
      abort();
    }
    b->data = d;
    b->cap = cap;
  }
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void bytes_drop(bytes_t *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

static http_fake_t *fake_of(const conn_t *c) { return c->io_data; }

static void on_turn(uv_idle_t *h);

/* Runs the idle handle while there is something a loop turn would do. */
static void arm(http_fake_t *f) {
  bool need = false;
  if (!f->freeing && f->conn) {
    need = f->close_pending || (f->conn_reading && (f->inbox.len || f->eof_pending)) ||
           (f->client_reading && f->wq_head) || (f->shutdown_pending && !f->wq_head);
  }
  if (need)
    uv_idle_start(&f->idle, on_turn);
  else
    uv_idle_stop(&f->idle);
}

/* ---- conn_io_t ---- */

static int fake_write(conn_t *c, wreq_t *w) {
  http_fake_t *f = fake_of(c);
  assert(!f->close_pending && !f->closed);
  for (unsigned i = 0; i < w->nbufs; i++)
    bytes_add(&f->out, w->bufs[i].base, w->bufs[i].len);
  w->next = NULL;
  if (f->wq_tail)
    f->wq_tail->next = w;
  else
    f->wq_head = w;
  f->wq_tail = w;
  f->pending += w->len;
  arm(f);
  return 0;
}

static void fake_read_start(conn_t *c) {
  http_fake_t *f = fake_of(c);
  f->conn_reading = true;
  arm(f);
}

static void fake_read_stop(conn_t *c) { fake_of(c)->conn_reading = false; }

static int fake_shutdown(conn_t *c) {
  http_fake_t *f = fake_of(c);
  assert(!f->shutdown_pending && !f->shut);
  f->shutdown_pending = true;
  arm(f);
  return 0;
}

static void fake_close(conn_t *c) {
  http_fake_t *f = fake_of(c);
  assert(!f->close_pending && !f->closed);
  f->close_pending = true;
  f->conn_reading = false;
  arm(f);
}

static int fake_fd(const conn_t *c) { return -1; }

static size_t fake_unsent(const conn_t *c) { return fake_of((conn_t *)c)->pending; }

static const conn_io_t fake_io = {fake_write,   fake_read_start, fake_read_stop, fake_shutdown,
                                  fake_close,   fake_fd,         fake_unsent};

/* ---- the client's side ---- */

static wreq_t *pop_write(http_fake_t *f) {
  wreq_t *w = f->wq_head;
  f->wq_head = w->next;
  if (!f->wq_head)
    f->wq_tail = NULL;
  f->pending -= w->len;
  return w;
}

/* Completes up to `count` pending writes; stops if the connection closes
 * meanwhile (the close cancels the rest). */
static size_t complete_writes(http_fake_t *f, size_t count) {
  size_t bytes = 0;
  while (count-- > 0 && f->wq_head && !f->close_pending) {
    wreq_t *w = pop_write(f);
    bytes += w->len;
    conn_write_done(f->conn, w, 0);
  }
  return bytes;
}

static size_t queued_writes(const http_fake_t *f) {
  size_t n = 0;
  for (const wreq_t *w = f->wq_head; w; w = w->next)
    n++;
  return n;
}

/* Hands the inbox to the connection while it reads, then the EOF. */
static void deliver(http_fake_t *f) {
  while (f->conn && f->conn_reading && !f->close_pending && f->inbox.len) {
    size_t n = f->inbox.len < HTTP_READ_BUF_SIZE ? f->inbox.len : HTTP_READ_BUF_SIZE;
    char *piece = malloc(n); /* a socket read's own buffer: the inbox may move */
    assert(piece);
    memcpy(piece, f->inbox.data, n);
    bytes_drop(&f->inbox, n);
    conn_on_data(f->conn, piece, n);
    free(piece);
  }
  if (f->conn && f->conn_reading && !f->close_pending && f->eof_pending && !f->inbox.len) {
    f->eof_pending = false;
    conn_on_eof(f->conn);
  }
}

static void on_turn(uv_idle_t *h) {
  http_fake_t *f = h->data;
  if (f->close_pending) {
    conn_t *c = f->conn;
    while (f->wq_head)
      conn_write_done(c, pop_write(f), UV_ECANCELED);
    if (f->shutdown_pending) {
      f->shutdown_pending = false;
      conn_shutdown_done(c, UV_ECANCELED);
    }
    f->close_pending = false;
    f->closed = true;
    f->conn = NULL;
    conn_io_closed(c);
    arm(f);
    return;
  }
  deliver(f);
  if (f->client_reading && !f->close_pending)
    complete_writes(f, queued_writes(f));
  if (f->shutdown_pending && !f->wq_head && !f->close_pending) {
    f->shutdown_pending = false;
    f->shut = true;
    conn_shutdown_done(f->conn, 0);
  }
  arm(f);
}

http_fake_t *http_fake_new(http_server_t *srv) {
  http_fake_t *f = calloc(1, sizeof *f);
  conn_t *c = calloc(1, sizeof *c);
  if (!f || !c) {
    free(f);
    free(c);
    return NULL;
  }
  uv_idle_init(srv->loop, &f->idle);
  f->idle.data = f;
  f->conn = c;
  conn_init(c, srv, &fake_io, f);
  conn_start(c);
  return f;
}

void http_fake_send(http_fake_t *f, const void *data, size_t n) {
  if (!f->conn || f->close_pending)
    return;
  bytes_add(&f->inbox, data, n);
  deliver(f);
  arm(f);
}

void http_fake_send_str(http_fake_t *f, const char *s) { http_fake_send(f, s, strlen(s)); }

void http_fake_eof(http_fake_t *f) {
  if (!f->conn || f->close_pending)
    return;
  f->eof_pending = true;
  deliver(f);
  arm(f);
}

size_t http_fake_flush(http_fake_t *f) {
  if (!f->conn)
    return 0;
  size_t n = complete_writes(f, queued_writes(f));
  if (f->conn)
    arm(f);
  return n;
}

void http_fake_set_reading(http_fake_t *f, bool reading) {
  f->client_reading = reading;
  arm(f);
}

const char *http_fake_out(const http_fake_t *f) { return f->out.data ? f->out.data : ""; }
size_t http_fake_out_len(const http_fake_t *f) { return f->out.len; }

void http_fake_out_clear(http_fake_t *f) {
  f->out.len = 0;
  if (f->out.data)
    f->out.data[0] = '\0';
}

size_t http_fake_pending(const http_fake_t *f) { return f->pending; }
bool http_fake_conn_reading(const http_fake_t *f) { return f->conn && f->conn_reading; }
bool http_fake_shut(const http_fake_t *f) { return f->shut; }
bool http_fake_closed(const http_fake_t *f) { return f->closed; }

static void on_idle_closed(uv_handle_t *h) {
  http_fake_t *f = h->data;
  free(f->out.data);
  free(f->inbox.data);
  free(f);
}

void http_fake_free(http_fake_t *f) {
  assert(f->closed);
  f->freeing = true;
  uv_close((uv_handle_t *)&f->idle, on_idle_closed);
}
