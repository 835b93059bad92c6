/* http/stream: a reply body sent from a file descriptor (http_stream_file).
 *
 * DESIGN: the loop never touches the disk. While nothing else is queued on
 * the connection, sendfile(2) runs on libuv's thread pool (uv_queue_work)
 * against the non-blocking socket: the kernel copies file pages straight to
 * the socket, with no copy through our heap. When the socket is full
 * (EAGAIN), or the transport has no socket (the unit tests' fake), one piece
 * is read on the thread pool (uv_fs_read) straight into a write request and
 * queued like any other write: its completion is the "socket writable again"
 * signal that libuv otherwise gives us no way to wait for. Then sendfile is
 * tried again. (libuv's own uv_fs_sendfile is not used: on a socket it falls
 * back to an emulation that blocks a pool thread in poll() for as long as
 * the client does not read.)
 *
 * Lifetime: while a pool operation is in flight the connection holds one
 * reference and keeps its socket open; if the connection is closed meanwhile
 * (the client left), the operation's completion closes the transport. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>

#include "http/conn.h"
#include "util/err.h"
#include "util/log.h"

#define FILE_PIECE (64 * 1024)           /* bytes per read when sendfile cannot go on */
#define SENDFILE_MAX (1024 * 1024)       /* bytes per sendfile call */

typedef struct file_send {
  conn_t *conn;
  int fd;
  int64_t offset;
  uint64_t left;
  http_sent_cb cb;
  void *data;
  bool busy;        /* a pool operation is in flight */
  bool aborted;     /* the connection closed meanwhile */
  bool no_sendfile; /* sendfile refused this pair of descriptors */
  bool trailer;     /* chunked: "\r\n" after the bytes */
  http_abort_cb abort_cb; /* aborted while busy: the request's abort callback, run on return */
  void *abort_data;
  uv_work_t work;
  int sock;
  ssize_t sent;
  int sent_errno;
  uv_fs_t fs;
  wreq_t *piece; /* the read fallback's write request */
} file_send_t;

static void pump(file_send_t *f);

static void finish(file_send_t *f, int status) {
  conn_t *c = f->conn;
  c->file = NULL;
  if (status == 0 && f->trailer) {
    http_abort_cb keep = c->abort_cb; /* a failure is reported through cb alone */
    c->abort_cb = NULL;
    wreq_t *w = conn_wreq_text(c, "\r\n", 2);
    if (!w)
      status = OFF_ENOMEM;
    else if (conn_write(c, w) != 0)
      status = OFF_ESYS;
    c->abort_cb = keep;
  }
  http_sent_cb cb = f->cb;
  void *data = f->data;
  free(f);
  if (status != 0) {
    c->abort_cb = NULL; /* the sender learns it from its callback */
    conn_close(c);
  }
  cb(&c->req, status, data);
}

/* The pool operation returned: release the connection's hold, and if it was
 * closed meanwhile close the transport now that the socket is unused.
 * Returns true when the send goes on. */
static bool op_returned(file_send_t *f) {
  conn_t *c = f->conn;
  f->busy = false;
  if (f->aborted) {
    /* The connection closed while we used its socket and the handler's
     * file: only now may the handler hear of it (and close the file). */
    free(f->piece ? f->piece->owned : NULL);
    free(f->piece);
    if (f->abort_cb)
      f->abort_cb(&c->req, f->abort_data);
    free(f);
    c->io->close(c);
    conn_release(c);
    return false;
  }
  conn_release(c);
  return true;
}

static void sendfile_work(uv_work_t *req) {
  file_send_t *f = req->data;
  off_t off = (off_t)f->offset;
  size_t n = f->left < SENDFILE_MAX ? (size_t)f->left : SENDFILE_MAX;
  f->sent = sendfile(f->sock, f->fd, &off, n);
  f->sent_errno = f->sent < 0 ? errno : 0;
}

static void read_piece(file_send_t *f);

static void sendfile_done(uv_work_t *req, int status) {
  file_send_t *f = req->data;
  if (!op_returned(f))
    return;
  if (status == 0 && f->sent > 0) {
    f->conn->req_bytes += (uint64_t)f->sent; /* the access log's bytes */
    f->offset += f->sent;
    f->left -= (uint64_t)f->sent;
    pump(f);
    return;
  }
  if (status == 0 && f->sent == 0) {
    finish(f, OFF_ESYS); /* the file is shorter than promised */
    return;
  }
  if (status == 0 && f->sent_errno != EAGAIN && f->sent_errno != EINVAL && f->sent_errno != ENOSYS) {
    log_debug("http: sendfile: %s", strerror(f->sent_errno));
    finish(f, OFF_ESYS);
    return;
  }
  if (status == 0 && f->sent_errno != EAGAIN)
    f->no_sendfile = true;
  read_piece(f); /* socket full (or no sendfile): one piece through a write */
}

static void read_done(uv_fs_t *req) {
  file_send_t *f = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (!op_returned(f))
    return;
  wreq_t *w = f->piece;
  f->piece = NULL;
  if (n <= 0) {
    free(w);
    finish(f, OFF_ESYS); /* read error, or the file is shorter than promised */
    return;
  }
  w->bufs[0] = uv_buf_init(w->data, (unsigned)n);
  w->nbufs = 1;
  w->len = (size_t)n;
  f->offset += n;
  f->left -= (uint64_t)n;
  http_abort_cb keep = f->conn->abort_cb;
  f->conn->abort_cb = NULL;
  if (conn_write(f->conn, w) != 0)
    return; /* closed: the sender's abort is over with the connection */
  f->conn->abort_cb = keep;
  /* conn_write_done → stream_file_written → pump */
}

static void read_piece(file_send_t *f) {
  size_t n = f->left < FILE_PIECE ? (size_t)f->left : FILE_PIECE;
  wreq_t *w = conn_wreq_new(f->conn, n);
  if (!w) {
    finish(f, OFF_ENOMEM);
    return;
  }
  f->piece = w;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  f->fs.data = f;
  if (uv_fs_read(f->conn->srv->loop, &f->fs, f->fd, &b, 1, f->offset, read_done) != 0) {
    f->piece = NULL;
    free(w);
    finish(f, OFF_ESYS);
    return;
  }
  f->busy = true;
  f->conn->holds++;
}

static void pump(file_send_t *f) {
  conn_t *c = f->conn;
  if (f->busy)
    return;
  if (f->left == 0) {
    finish(f, 0);
    return;
  }
  if (c->queued > 0)
    return; /* sendfile only on an empty queue: conn_write_done calls us again */
  f->sock = f->no_sendfile ? -1 : c->io->fd(c);
  if (f->sock < 0) {
    read_piece(f);
    return;
  }
  f->work.data = f;
  if (uv_queue_work(c->srv->loop, &f->work, sendfile_work, sendfile_done) != 0) {
    finish(f, OFF_ESYS);
    return;
  }
  f->busy = true;
  c->holds++;
}

void stream_file_written(conn_t *c) {
  if (c->file)
    pump(c->file);
}

bool stream_file_abort(conn_t *c, http_abort_cb cb, void *data) {
  file_send_t *f = c->file;
  if (!f)
    return false;
  c->file = NULL;
  if (f->busy) {
    f->aborted = true; /* its completion calls cb and closes the transport */
    f->abort_cb = cb;
    f->abort_data = data;
    return true;
  }
  free(f);
  return false;
}

int http_stream_file(http_req_t *req, int fd, int64_t offset, uint64_t len, http_sent_cb cb, void *data) {
  conn_t *c = req->_conn;
  if (c->state != ST_DISPATCHED || !c->streaming || c->file || fd < 0 || offset < 0)
    return OFF_EINVAL;
  if (c->out_left >= 0 && len > (uint64_t)c->out_left)
    return OFF_EINVAL;
  if (c->no_body_out || len == 0) {
    cb(req, 0, data);
    return 0;
  }
  file_send_t *f = calloc(1, sizeof *f);
  if (!f)
    return OFF_ENOMEM;
  f->conn = c;
  f->fd = fd;
  f->offset = offset;
  f->left = len;
  f->cb = cb;
  f->data = data;
  if (c->out_left >= 0)
    c->out_left -= (int64_t)len;
  if (c->chunked_out) {
    char size_line[24];
    int n = snprintf(size_line, sizeof size_line, "%llx\r\n", (unsigned long long)len);
    wreq_t *w = conn_wreq_text(c, size_line, (size_t)n);
    if (!w) {
      free(f);
      return OFF_ENOMEM;
    }
    f->trailer = true;
    http_abort_cb keep = c->abort_cb;
    c->abort_cb = NULL;
    if (conn_write(c, w) != 0) {
      free(f);
      return OFF_ESYS;
    }
    c->abort_cb = keep;
  }
  c->file = f;
  pump(f);
  return 0;
}
