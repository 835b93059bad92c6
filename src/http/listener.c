/* http/listener: the server object, the TCP listener, accepting (and
 * shedding) connections, and the TCP transport behind conn_io_t.
 *
 * DESIGN (accepting never stalls): libuv stops watching the listener when
 * its connection callback returns without uv_accept, and only a later
 * uv_accept starts it again. So every path through on_connection accepts:
 * a connection we cannot serve (over --max-connections, no memory for it, a
 * socket option that fails) is accepted into a preallocated spare handle and
 * closed at once, and counted. If the spare is still closing from the
 * previous shed, the connection waits in the backlog until the spare's close
 * callback sheds it (same loop turn).
 *
 * Descriptors: a connection whose descriptor number comes within
 * FD_HEADROOM of RLIMIT_NOFILE (read at each accept: an operator may change
 * it with prlimit) is shed and counted, so the process keeps a few
 * descriptors for its own work. Past that, accept(2) fails with EMFILE and
 * libuv sheds by itself (its reserve-descriptor trick) without telling us
 * unless its trick fails too (then the failed status is counted here). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "http/conn.h"
#include "util/fault.h"
#include "util/log.h"

/* ---- the TCP transport ---- */

typedef struct tcp_conn {
  conn_t conn; /* first: the transport's handle data points here */
  uv_tcp_t tcp;
} tcp_conn_t;

static uv_stream_t *stream_of(const conn_t *c) { return (uv_stream_t *)&((tcp_conn_t *)c)->tcp; }

static void on_tcp_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_write_done(w->conn, w, status);
}

static int tcp_write(conn_t *c, wreq_t *w) { return uv_write(&w->uv, stream_of(c), w->bufs, w->nbufs, on_tcp_write); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  *buf = uv_buf_init(c->srv->readbuf, sizeof c->srv->readbuf);
}

static void on_tcp_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread > 0)
    conn_on_data(c, buf->base, (size_t)nread);
  else if (nread == UV_EOF)
    conn_on_eof(c);
  else if (nread < 0)
    conn_on_read_error(c);
}

static void tcp_read_start(conn_t *c) {
  if (uv_read_start(stream_of(c), on_alloc, on_tcp_read) != 0)
    conn_close(c);
}

static void tcp_read_stop(conn_t *c) { uv_read_stop(stream_of(c)); }

static void on_tcp_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  conn_shutdown_done(c, status);
}

static int tcp_shutdown(conn_t *c) {
  uv_shutdown_t *sd = malloc(sizeof *sd);
  if (!sd)
    return -1;
  sd->data = c;
  if (uv_shutdown(sd, stream_of(c), on_tcp_shutdown) != 0) {
    free(sd);
    return -1;
  }
  return 0;
}

static void on_tcp_closed(uv_handle_t *h) { conn_io_closed(h->data); }

static void tcp_close(conn_t *c) { uv_close((uv_handle_t *)stream_of(c), on_tcp_closed); }

static int tcp_fd(const conn_t *c) {
  uv_os_fd_t fd;
  return uv_fileno((const uv_handle_t *)stream_of(c), &fd) == 0 ? fd : -1;
}

/* libuv's queue plus the kernel's send queue (SIOCOUTQ: bytes the peer has
 * not acknowledged): the kernel buffer can hold megabytes, and libuv writes
 * more into it only once a third of it is free, so a slow reader's progress
 * shows in the kernel's count long before in libuv's. One ioctl, called
 * only when a send timeout fires. */
static size_t tcp_unsent(const conn_t *c) {
  size_t n = uv_stream_get_write_queue_size(stream_of(c));
  int fd = tcp_fd(c), outq = 0;
  if (fd >= 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0)
    n += (size_t)outq;
  return n;
}

static const conn_io_t tcp_io = {tcp_write, tcp_read_start, tcp_read_stop, tcp_shutdown,
                                 tcp_close, tcp_fd,         tcp_unsent};

/* ---- accepting ---- */

#define FD_HEADROOM 2

static bool fd_near_limit(const uv_tcp_t *t) {
  uv_os_fd_t fd;
  struct rlimit rl;
  if (uv_fileno((const uv_handle_t *)t, &fd) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return false;
  return (rlim_t)fd + FD_HEADROOM >= rl.rlim_cur;
}

static void shed(http_server_t *s);

/* The last handle closed: the memory goes. */
static void server_release(http_server_t *s) {
  buf_free(&s->access_line);
  free(s);
}

/* "ADDR:PORT" or "[ADDR]:PORT" of a socket address; "-" when unknown. */
static void addr_text(const struct sockaddr *sa, char *out, size_t size, bool with_port) {
  char ip[INET6_ADDRSTRLEN] = "-";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  }
  bool v6 = sa->sa_family == AF_INET6;
  if (with_port)
    snprintf(out, size, "%s%s%s:%d", v6 ? "[" : "", ip, v6 ? "]" : "", port);
  else
    snprintf(out, size, "%s", ip);
}

static void on_spare_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->spare_busy = false;
  if (--s->open_handles == 0) {
    server_release(s);
    return;
  }
  if (s->shed_waiting && !s->freeing && s->listening) {
    s->shed_waiting = false;
    shed(s);
  }
}

/* Accepts the pending connection into the spare handle and closes it. */
static void shed(http_server_t *s) {
  if (s->spare_busy) {
    s->shed_waiting = true; /* the listener waits (unwatched) for on_spare_closed */
    return;
  }
  s->spare_busy = true;
  s->open_handles++;
  uv_tcp_init(s->loop, &s->spare);
  s->spare.data = s;
  uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->spare);
  uv_close((uv_handle_t *)&s->spare, on_spare_closed);
}

static void on_connection(uv_stream_t *listener, int status) {
  http_server_t *s = listener->data;
  if (status < 0) {
    /* EMFILE/ENFILE: libuv already accepted and closed what it could. */
    s->stats.accept_failures++;
    log_warn("http: accept: %s", uv_strerror(status));
    return;
  }
  if (s->stats.connections >= s->cfg.max_connections) {
    s->stats.rejected++;
    shed(s);
    return;
  }
  tcp_conn_t *t = FAULT_HIT(FAULT_ACCEPT_ALLOC) ? NULL : calloc(1, sizeof *t);
  if (!t) {
    s->stats.accept_failures++;
    shed(s);
    return;
  }
  conn_t *c = &t->conn;
  conn_init(c, s, &tcp_io, t);
  uv_tcp_init(s->loop, &t->tcp);
  t->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *)&t->tcp) != 0 || fd_near_limit(&t->tcp) || FAULT_HIT(FAULT_ACCEPT_SOCKOPT) ||
      uv_tcp_nodelay(&t->tcp, 1) != 0) {
    s->stats.accept_failures++;
    conn_close(c);
    return;
  }
  if (s->cfg.access_log) { /* the client's address, for its lines */
    struct sockaddr_storage peer;
    int len = sizeof peer;
    if (uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&peer, &len) == 0)
      addr_text((const struct sockaddr *)&peer, c->peer, sizeof c->peer, false);
  }
  conn_start(c);
}

/* ---- the server ---- */

http_server_t *http_server_new(uv_loop_t *loop, const http_config_t *cfg, http_head_cb head, http_request_cb cb,
                               void *data) {
  http_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->cfg = *cfg;
  s->head_cb = head;
  s->cb = cb;
  s->data = data;
  parse_settings_init(&s->settings);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  uv_idle_init(loop, &s->resume_idle);
  s->resume_idle.data = s;
  s->open_handles = 2;
  return s;
}

/* Binds and listens on one address with a socket of our own, so a failure
 * leaves the listener handle untouched for the next address (a libuv handle
 * keeps the socket, and its family, of a failed bind). SO_REUSEADDR as
 * uv_tcp_bind sets it. Returns 0 or a negative errno. */
static int bind_one(http_server_t *s, const struct sockaddr *sa, socklen_t salen) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 || bind(fd, sa, salen) != 0 ||
      listen(fd, 1024) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  int rc = uv_tcp_open(&s->listener, fd);
  if (rc != 0)
    close(fd);
  return rc;
}

/* Host names are looked up; anything else that is not an address is
 * refused before a lookup (which could wait on DNS for a typo). */
static bool looks_like_name(const char *host) {
  size_t n = strlen(host);
  if (n == 0 || n > 253)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = host[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
          ch == '_'))
      return false;
  }
  return true;
}

int http_server_listen(http_server_t *s, const char *host, int port, char *err, size_t errsize) {
  char dummy[8];
  if (!err) {
    err = dummy;
    errsize = sizeof dummy;
  }
  err[0] = '\0';
  /* An address is taken as it is (an IPv6 one may carry a %zone); a name
   * is looked up. */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  hints.ai_flags |= AI_NUMERICHOST;
  int g = getaddrinfo(host, portstr, &hints, &res);
  if (g != 0) {
    if (!looks_like_name(host)) {
      snprintf(err, errsize, "\"%s\" is neither an IPv4 or IPv6 address nor a host name", host);
      return UV_EINVAL;
    }
    hints.ai_flags &= ~AI_NUMERICHOST;
    g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
      snprintf(err, errsize, "looked up the name \"%s\": %s", host,
               g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
      return UV_EAI_NONAME;
    }
  }
  /* Each address in the resolver's order until one binds; the message
   * lists every one tried. */
  int rc = UV_EADDRNOTAVAIL;
  size_t used = (size_t)snprintf(err, errsize, "tried");
  int tried = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    rc = bind_one(s, ai->ai_addr, ai->ai_addrlen);
    if (rc == 0)
      break;
    char a[INET6_ADDRSTRLEN + 8];
    addr_text(ai->ai_addr, a, sizeof a, false);
    if (used < errsize)
      used += (size_t)snprintf(err + used, errsize - used, "%s %s (%s)", tried ? "," : "", a, uv_strerror(rc));
    tried++;
  }
  freeaddrinfo(res);
  if (rc != 0 && tried == 0)
    snprintf(err, errsize, "\"%s\" has no IPv4 or IPv6 address", host);
  if (rc != 0)
    return rc;
  if ((rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection)) != 0) {
    snprintf(err, errsize, "listen: %s", uv_strerror(rc));
    return rc;
  }
  err[0] = '\0';
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
  addr_text((const struct sockaddr *)&bound, s->bound, sizeof s->bound, true);
  s->listening = true;
  return 0;
}

const char *http_server_address(const http_server_t *s) { return s->bound; }

int http_server_port(const http_server_t *s) { return s->port; }

static void on_server_handle_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  if (--s->open_handles == 0)
    server_release(s); /* only after http_server_free closed the last one */
}

void http_server_stop_accepting(http_server_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  s->listening = false;
  s->stopped = true;
}

void http_server_free(http_server_t *s) {
  s->freeing = true;
  while (s->conns_head)
    conn_close(s->conns_head);
  http_server_stop_accepting(s);
  uv_close((uv_handle_t *)&s->resume_idle, on_server_handle_closed);
}

const http_stats_t *http_server_stats(const http_server_t *s) { return &s->stats; }
