/* cli/download: `offload download ID NAME [-o FILE]`: GET
 * /jobs/ID/files/NAME streamed to ./NAME, to FILE, or with `-o -` to
 * stdout. A file is written under a temporary name in its directory and
 * renamed when the whole body has arrived, so a failed download leaves
 * nothing behind (and never half-overwrites an older copy). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "cli/net.h"
#include "cli/params.h"
#include "util/buf.h"

typedef struct sink {
  int fd;
  int err; /* errno of a failed write */
  size_t bytes;
} sink_t;

static int on_piece(void *data, const char *at, size_t n) {
  sink_t *s = data;
  while (n > 0) {
    ssize_t w = write(s->fd, at, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      s->err = w < 0 ? errno : EIO;
      return 1;
    }
    at += w;
    n -= (size_t)w;
    s->bytes += (size_t)w;
  }
  return 0;
}

int cli_cmd_download(cli_ctx_t *ctx) {
  const char *id = ctx->args.pos[0], *name = ctx->args.pos[1];
  const char *dest = cli_opt(ctx, "output");
  if (!dest) {
    const char *slash = strrchr(name, '/');
    dest = slash ? slash + 1 : name;
    if (!*dest || strcmp(dest, ".") == 0 || strcmp(dest, "..") == 0)
      return cli_usage(ctx, "cannot save \"%.60s\" under its own name: give -o FILE", name);
  }
  bool to_stdout = strcmp(dest, "-") == 0;
  buf_t path = BUF_INIT, tmp = BUF_INIT;
  if (buf_puts(&path, "/jobs/") || params_escape(&path, id) || buf_puts(&path, "/files/") ||
      params_escape(&path, name)) {
    buf_free(&path);
    cli_error("out of memory");
    return CLI_HTTP;
  }
  sink_t s = {.fd = STDOUT_FILENO};
  if (!to_stdout) {
    char *dircopy = strdup(dest);
    if (!dircopy || buf_printf(&tmp, "%s/.%s.offload-XXXXXX", dirname(dircopy), "download")) {
      free(dircopy);
      buf_free(&path);
      cli_error("out of memory");
      return CLI_HTTP;
    }
    free(dircopy);
    s.fd = mkostemp(tmp.data, O_CLOEXEC);
    if (s.fd < 0) {
      int e = errno;
      buf_free(&path);
      buf_free(&tmp);
      return cli_usage(ctx, "cannot write %s: %s", dest, strerror(e));
    }
  }
  net_opts_t o = {.on_body = on_piece, .data = &s};
  net_resp_t r;
  int rc = net_fetch(ctx, "GET", path.data, &o, &r);
  int st = CLI_OK;
  if (s.err)
    st = cli_usage(ctx, "cannot write %s: %s", to_stdout ? "stdout" : dest, strerror(s.err));
  else if (rc)
    st = net_unreachable(ctx, rc);
  else if (r.status != 200)
    st = net_http_error(&r);
  if (!to_stdout) {
    /* mkostemp made it 0600; a download gets the usual 0666 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    if (st == CLI_OK && (fchmod(s.fd, 0666 & ~mask) != 0 || fsync(s.fd) != 0))
      st = cli_usage(ctx, "cannot write %s: %s", dest, strerror(errno));
    if (close(s.fd) != 0 && st == CLI_OK)
      st = cli_usage(ctx, "cannot write %s: %s", dest, strerror(errno));
    if (st == CLI_OK) {
      if (rename(tmp.data, dest) != 0)
        st = cli_usage(ctx, "cannot write %s: %s", dest, strerror(errno));
    }
    if (st != CLI_OK)
      unlink(tmp.data);
    else
      fprintf(stderr, "saved %s (%zu bytes)\n", dest, s.bytes);
  }
  net_resp_free(&r);
  buf_free(&path);
  buf_free(&tmp);
  return st;
}
