/* util/httpc: see httpc.h. */
#include "util/httpc.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void say(char *err, size_t errlen, const char *msg) {
  if (errlen)
    snprintf(err, errlen, "%s", msg);
}

int httpc_url_parse(const char *text, httpc_url_t *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  u->port = 80;
  const char *p = text;
  if (strncasecmp(p, "https://", 8) == 0) {
    say(err, errlen, "https is not supported: use a plain http:// URL");
    return -1;
  }
  if (strncasecmp(p, "http://", 7) == 0)
    p += 7;
  else if (strstr(p, "://")) {
    say(err, errlen, "only http:// URLs are supported");
    return -1;
  }
  size_t alen = strcspn(p, "/?#");
  if (alen == 0) {
    say(err, errlen, "the URL has no host");
    return -1;
  }
  if (alen >= sizeof u->authority || memchr(p, '@', alen)) {
    say(err, errlen,
        alen >= sizeof u->authority ? "the URL's host is too long" : "user names in URLs are not supported");
    return -1;
  }
  memcpy(u->authority, p, alen);
  const char *port = NULL;
  if (p[0] == '[') { /* [v6]:port */
    const char *rb = memchr(p, ']', alen);
    if (!rb || rb == p + 1) {
      say(err, errlen, "the URL's IPv6 address lacks its closing ]");
      return -1;
    }
    memcpy(u->host, p + 1, (size_t)(rb - p - 1));
    if (rb + 1 < p + alen) {
      if (rb[1] != ':') {
        say(err, errlen, "unexpected text after the URL's IPv6 address");
        return -1;
      }
      port = rb + 2;
    }
  } else {
    const char *colon = memchr(p, ':', alen);
    size_t hlen = colon ? (size_t)(colon - p) : alen;
    if (hlen == 0) {
      say(err, errlen, "the URL has no host");
      return -1;
    }
    memcpy(u->host, p, hlen);
    if (colon)
      port = colon + 1;
  }
  if (port) {
    long v = 0;
    const char *q = port;
    while (q < p + alen && isdigit((unsigned char)*q) && v <= 65535)
      v = v * 10 + (*q++ - '0');
    if (q == port || q != p + alen || v < 1 || v > 65535) {
      say(err, errlen, "the URL's port must be a number from 1 to 65535");
      return -1;
    }
    u->port = (int)v;
  }
  const char *path = p + alen;
  if (strpbrk(path, "?#")) {
    say(err, errlen, "the URL may not have a query or a fragment");
    return -1;
  }
  size_t plen = strlen(path);
  while (plen > 0 && path[plen - 1] == '/')
    plen--;
  if (plen >= sizeof u->base) {
    say(err, errlen, "the URL's path is too long");
    return -1;
  }
  memcpy(u->base, path, plen);
  return 0;
}

/* getaddrinfo's errors as libuv's codes, so one uv_strerror names them all. */
static int resolve_error(int gai) {
  switch (gai) {
  case EAI_NONAME: return UV_EAI_NONAME;
  case EAI_AGAIN: return UV_EAI_AGAIN;
  case EAI_FAMILY: return UV_EAI_FAMILY;
  case EAI_MEMORY: return UV_ENOMEM;
#ifdef EAI_NODATA
  case EAI_NODATA: return UV_EAI_NODATA;
#endif
  case EAI_SYSTEM: return errno ? -errno : UV_EAI_FAIL;
  default: return UV_EAI_FAIL;
  }
}

int httpc_resolve(const httpc_url_t *u, httpc_addrs_t *out) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
  struct addrinfo *res = NULL;
  char port[8];
  snprintf(port, sizeof port, "%d", u->port);
  out->n = 0;
  int gai = getaddrinfo(u->host, port, &hints, &res);
  if (gai != 0)
    return resolve_error(gai);
  for (struct addrinfo *a = res; a && out->n < HTTPC_ADDRS_MAX; a = a->ai_next) {
    if (a->ai_addrlen > sizeof out->addr[0] || (a->ai_family != AF_INET && a->ai_family != AF_INET6))
      continue;
    memcpy(&out->addr[out->n++], a->ai_addr, a->ai_addrlen);
  }
  freeaddrinfo(res);
  return out->n ? 0 : UV_EAI_NONAME;
}

/* ---- connections ---------------------------------------------------- */

static httpc_conn_t *conn_of(llhttp_t *p) { return p->data; }

static int gather(httpc_conn_t *c, const char *at, size_t n) {
  if (c->body_len + n + 1 > c->_body_cap) {
    size_t cap = c->_body_cap ? c->_body_cap : 1024;
    while (cap < c->body_len + n + 1)
      cap *= 2;
    char *nb = realloc(c->body, cap);
    if (!nb)
      return -1;
    c->body = nb;
    c->_body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  c->body[c->body_len] = '\0';
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  httpc_conn_t *c = conn_of(p);
  c->status = 0;
  c->content_type[0] = '\0';
  c->body_len = 0;
  if (c->body)
    c->body[0] = '\0';
  c->_field_len = 0;
  c->_in_ct = c->_streaming = false;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  httpc_conn_t *c = conn_of(p);
  /* Only Content-Type matters: longer names need not be kept whole. */
  size_t room = sizeof c->_field - 1 - c->_field_len;
  size_t k = n < room ? n : room;
  memcpy(c->_field + c->_field_len, at, k);
  c->_field_len += k;
  if (k < n)
    c->_field_len = sizeof c->_field - 1; /* too long: never "content-type" */
  c->_field[c->_field_len] = '\0';
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  httpc_conn_t *c = conn_of(p);
  c->_in_ct = c->_field_len == 12 && strcasecmp(c->_field, "content-type") == 0;
  c->_field_len = 0;
  if (c->_in_ct)
    c->content_type[0] = '\0';
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  httpc_conn_t *c = conn_of(p);
  if (!c->_in_ct)
    return 0;
  size_t have = strlen(c->content_type), room = sizeof c->content_type - 1 - have;
  size_t k = n < room ? n : room;
  memcpy(c->content_type + have, at, k);
  c->content_type[have + k] = '\0';
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  conn_of(p)->_in_ct = false;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  httpc_conn_t *c = conn_of(p);
  c->status = p->status_code;
  c->_streaming = c->_on_body && c->status >= 200 && c->status < 300;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  httpc_conn_t *c = conn_of(p);
  if (c->_streaming)
    return c->_on_body(c, at, n) ? HPE_USER : 0;
  return gather(c, at, n) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
  httpc_conn_t *c = conn_of(p);
  if (p->status_code < 200)
    return 0; /* an interim reply (100 Continue): the real one follows */
  c->keep_alive = llhttp_should_keep_alive(p) != 0;
  c->_complete = true;
  return HPE_PAUSED; /* the done callback runs outside the parser */
}

void httpc_init(httpc_t *cl, uv_loop_t *loop, const char *authority, const char *token) {
  cl->loop = loop;
  cl->authority = authority;
  cl->token = token;
  llhttp_settings_init(&cl->_settings);
  cl->_settings.on_message_begin = on_message_begin;
  cl->_settings.on_header_field = on_header_field;
  cl->_settings.on_header_field_complete = on_header_field_complete;
  cl->_settings.on_header_value = on_header_value;
  cl->_settings.on_header_value_complete = on_header_value_complete;
  cl->_settings.on_headers_complete = on_headers_complete;
  cl->_settings.on_body = on_body;
  cl->_settings.on_message_complete = on_message_complete;
}

int httpc_conn_init(httpc_t *cl, httpc_conn_t *c) {
  memset(c, 0, sizeof *c);
  c->_cl = cl;
  int rc = uv_tcp_init(cl->loop, &c->tcp);
  if (rc)
    return rc;
  c->tcp.data = c;
  llhttp_init(&c->_parser, HTTP_RESPONSE, &cl->_settings);
  c->_parser.data = c;
  return 0;
}

/* Ends the request in flight with `status`; an error leaves the connection
 * unusable. */
static void finish(httpc_conn_t *c, int status) {
  if (!c->_busy || c->_closing)
    return;
  c->_busy = false;
  if (status != 0) {
    c->_dead = true;
    c->keep_alive = false;
    uv_read_stop((uv_stream_t *)&c->tcp);
  } else if (!c->keep_alive) {
    c->_dead = true;
  }
  c->_on_done(c, status);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
  httpc_conn_t *c = h->data;
  *b = uv_buf_init(c->_cl->_readbuf, sizeof c->_cl->_readbuf);
}

/* Parses what arrived; each response that completes ends its request. */
static void feed(httpc_conn_t *c, const char *data, size_t len) {
  while (len > 0 && !c->_closing) {
    if (!c->_busy) {
      /* Bytes nobody asked for: the connection is no longer in step. */
      c->_dead = true;
      uv_read_stop((uv_stream_t *)&c->tcp);
      return;
    }
    llhttp_errno_t e = llhttp_execute(&c->_parser, data, len);
    if (e == HPE_OK)
      return;
    if (e == HPE_PAUSED) {
      size_t used = (size_t)(llhttp_get_error_pos(&c->_parser) - data);
      llhttp_resume(&c->_parser);
      data += used;
      len -= used;
      c->_complete = false;
      finish(c, 0);
      continue;
    }
    finish(c, e == HPE_USER && c->_streaming ? HTTPC_ESTOPPED : e == HPE_USER ? UV_ENOMEM : HTTPC_EPROTO);
    return;
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  httpc_conn_t *c = s->data;
  if (n > 0) {
    feed(c, b->base, (size_t)n);
    return;
  }
  if (n == 0)
    return;
  c->_dead = true;
  uv_read_stop(s);
  if (!c->_busy)
    return;
  if (n == UV_EOF) {
    /* A body that runs to the end of the connection ends here. */
    llhttp_errno_t e = llhttp_finish(&c->_parser);
    if (c->_complete && (e == HPE_OK || e == HPE_PAUSED)) {
      c->_complete = false;
      c->keep_alive = false;
      finish(c, 0);
      return;
    }
  }
  finish(c, (int)n);
}

static void on_connected(uv_connect_t *req, int status) {
  httpc_conn_t *c = req->data;
  if (c->_closing)
    return;
  if (status == 0) {
    c->_open = true;
    uv_tcp_nodelay(&c->tcp, 1);
    status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (status)
      c->_dead = true;
  }
  c->_on_connect(c, status);
}

int httpc_connect(httpc_conn_t *c, const struct sockaddr *addr, httpc_connect_cb cb) {
  c->_on_connect = cb;
  c->_connect.data = c;
  return uv_tcp_connect(&c->_connect, &c->tcp, addr, on_connected);
}

static void on_written(uv_write_t *w, int status) {
  httpc_conn_t *c = w->data;
  if (status < 0 && !c->_closing)
    finish(c, status);
}

int httpc_request(httpc_conn_t *c, const char *method, const char *target, const char *headers, const void *body,
                  size_t body_len, httpc_done_cb done, httpc_body_cb on_body_cb) {
  if (c->_busy)
    return UV_EBUSY;
  if (!c->_open || c->_dead || c->_closing)
    return UV_ENOTCONN;
  httpc_t *cl = c->_cl;
  bool has_len = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
  for (;;) {
    int n = snprintf(c->_req, c->_req_cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s", method, target, cl->authority,
                     cl->token ? "Authorization: Bearer " : "", cl->token ? cl->token : "", cl->token ? "\r\n" : "",
                     headers ? headers : "");
    if (n < 0)
      return UV_EINVAL;
    size_t need = (size_t)n + 48;
    if (need <= c->_req_cap) {
      if (has_len)
        n += snprintf(c->_req + n, c->_req_cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
      memcpy(c->_req + n, "\r\n", 2);
      n += 2;
      if (body_len > UINT32_MAX)
        return UV_E2BIG;
      uv_buf_t bufs[2] = {uv_buf_init(c->_req, (unsigned)n), uv_buf_init((char *)body, (unsigned)body_len)};
      c->_on_done = done;
      c->_on_body = on_body_cb;
      c->_complete = false;
      c->_write.data = c;
      int rc = uv_write(&c->_write, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_written);
      if (rc)
        return rc;
      c->_busy = true;
      return 0;
    }
    char *nr = realloc(c->_req, need);
    if (!nr)
      return UV_ENOMEM;
    c->_req = nr;
    c->_req_cap = need;
  }
}

char *httpc_take_body(httpc_conn_t *c, size_t *len) {
  char *b = c->body;
  if (len)
    *len = c->body_len;
  c->body = NULL;
  c->body_len = c->_body_cap = 0;
  return b;
}

static void on_closed(uv_handle_t *h) {
  httpc_conn_t *c = h->data;
  free(c->body);
  free(c->_req);
  c->body = c->_req = NULL;
  c->body_len = c->_body_cap = c->_req_cap = 0;
  if (c->_on_close)
    c->_on_close(h);
}

void httpc_close(httpc_conn_t *c, uv_close_cb cb) {
  if (c->_closing)
    return;
  c->_closing = true;
  c->_busy = false;
  c->_on_close = cb;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}
