/* api/files: GET /jobs/<id>/files/<name>, one output file of a complete
 * job, streamed from disk with its Content-Length, Content-Type and an
 * ETag (files never change once their job completed, so the ETag is the
 * job id, the name and the size; If-None-Match gets 304).
 *
 * The loop never touches the disk: the open and close run on libuv's
 * thread pool (uv_fs_*) and the body goes out with http_stream_file
 * (sendfile on the thread pool).
 *
 * Ownership: a download owns its descriptor and itself. While the open is
 * pending a client that leaves only marks it (the open's callback closes
 * and frees); once sending, the abort callback (which http runs only when
 * no thread-pool operation uses the descriptor) or the sent callback
 * closes and frees. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "store/files.h"

typedef struct download {
  uv_fs_t fs;
  api_t *a;
  http_req_t *req; /* NULL once the client left */
  char etag[128];
  char content_type[128];
  int64_t bytes;
  int fd;
  bool sending;
} download_t;

static void on_closed(uv_fs_t *fs) {
  uv_fs_req_cleanup(fs);
  free(fs->data);
}

/* Closes the descriptor on the thread pool, then frees. */
static void finish(download_t *d) {
  uv_fs_req_cleanup(&d->fs);
  if (d->fd < 0 || uv_fs_close(d->a->loop, &d->fs, d->fd, on_closed) != 0)
    free(d);
}

static void on_abort(http_req_t *req, void *data) {
  (void)req;
  download_t *d = data;
  d->req = NULL;
  if (d->sending)
    finish(d); /* http promises no thread-pool work uses fd now */
}

static void on_sent(http_req_t *req, int status, void *data) {
  download_t *d = data;
  if (status == 0)
    http_stream_end(req); /* on failure http closed the connection itself */
  d->req = NULL;
  finish(d);
}

static void on_open(uv_fs_t *fs) {
  download_t *d = fs->data;
  int fd = (int)fs->result;
  d->fd = fd;
  if (!d->req) { /* the client left while the file opened */
    finish(d);
    return;
  }
  if (fd < 0) {
    api_error(d->req, API_E_NOT_FOUND, NULL, NULL, "The file is listed but no longer on disk.");
    d->req = NULL;
    finish(d);
    return;
  }
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "ETag", d->etag);
  int rc = http_stream_start(d->req, 200, d->content_type, &h, d->bytes);
  http_headers_fini(&h);
  if (rc != 0) { /* the connection is closed (no abort callback) */
    d->req = NULL;
    finish(d);
    return;
  }
  d->sending = true;
  if (http_stream_file(d->req, fd, 0, (uint64_t)d->bytes, on_sent, d) != 0) {
    d->sending = false;
    http_stream_end(d->req);
    d->req = NULL;
    finish(d);
  }
}

void h_job_file(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  if (api_remote_try(a, req, m, API_REMOTE_FILE, 0))
    return; /* another node's job (cluster): the node that ran it has the file */
  job_t *j = api_find_job_or_404(a, req, m);
  if (!j)
    return;
  char name[FILES_NAME_MAX + 2];
  long n = router_param(m, "name", name, sizeof name);
  const store_file_t *f = NULL;
  for (size_t i = 0; n >= 0 && (size_t)n < sizeof name && i < j->nfiles && !f; i++)
    if (strcmp(j->files[i].name, name) == 0)
      f = &j->files[i];
  char path[4096];
  if (!f || !a->files_root || files_path(a->files_root, j->id, f->name, path, sizeof path) != 0) {
    api_error(req, API_E_NOT_FOUND, NULL, NULL,
              j->status == JOB_COMPLETE ? "The job has no file of that name."
                                        : "The job has no files: it is %s, and only a complete job keeps its files.",
              job_status_name(j->status));
    return;
  }
  api_send_file(a, req, j, f);
}

void api_send_file(api_t *a, http_req_t *req, const job_t *j, const store_file_t *f) {
  char path[4096];
  if (!a->files_root || files_path(a->files_root, j->id, f->name, path, sizeof path) != 0) {
    api_error(req, API_E_NOT_FOUND, NULL, NULL, "The job has no file of that name.");
    return;
  }
  download_t *d = calloc(1, sizeof *d);
  if (!d) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  d->a = a;
  d->req = req;
  d->fd = -1;
  d->bytes = f->bytes;
  snprintf(d->etag, sizeof d->etag, "\"%s-%s-%lld\"", j->id, f->name, (long long)f->bytes);
  snprintf(d->content_type, sizeof d->content_type, "%s", f->content_type);
  const char *inm = http_req_header(req, "If-None-Match");
  if (inm && (strcmp(inm, d->etag) == 0 || strcmp(inm, "*") == 0)) {
    http_headers_t h = HTTP_HEADERS_INIT;
    http_headers_add(&h, "ETag", d->etag);
    http_reply_take(req, 304, NULL, &h, NULL, 0);
    http_headers_fini(&h);
    free(d);
    return;
  }
  d->fs.data = d;
  http_req_on_abort(req, on_abort, d);
  if (uv_fs_open(a->loop, &d->fs, path, O_RDONLY | O_CLOEXEC, 0, on_open) != 0) {
    api_error(req, API_E_INTERNAL, NULL, NULL, "The file could not be opened.");
    free(d);
  }
}
