/* listener_test: accepting never stalls (http/listener.c), driven by the
 * accept-path fault hooks (util/fault.h): a connection the server cannot
 * set up is accepted and closed at once (the client sees EOF), counted in
 * stats.accept_failures, and the next connection is served. When the spare
 * handle that sheds connections is still closing, the next one to shed
 * waits for it and is shed from its close callback. Listening on a name
 * (localhost) or an IPv6 address (::1), and the errors of a bad host
 * (what was tried); the access log's client address on a real socket.
 *
 * A real listener on 127.0.0.1, port 0, in a private loop. The clients are
 * plain blocking sockets in the test thread: connect(2) completes in the
 * kernel's backlog before the loop runs, so several connections can wait
 * to be accepted in the same pass. Reads poll with MSG_DONTWAIT while the
 * loop runs (util/test_poll.h): conditions, never time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/conn.h" /* white-box: the server's shed_waiting flag */
#include "http/http.h"
#include "http/http_test_env.h"
#include "util/fault.h"
#include "util/logq.h"
#include "util/test_poll.h"

typedef struct env {
  HTTP_TEST_ENV; /* loop, srv (f stays NULL) */
  int port;
  int nreq;
  uv_check_t check; /* runs after the accepts of a pass, before close callbacks */
  bool saw_shed_waiting;
} env_t;

static void on_check(uv_check_t *h) {
  env_t *e = h->data;
  if (e->srv->shed_waiting)
    e->saw_shed_waiting = true;
}

static void on_request(http_req_t *req, void *data) {
  ((env_t *)data)->nreq++;
  http_reply(req, 200, "text/plain", NULL, "hi", 2);
}

static void env_init(env_t *e, size_t max_connections) {
  memset(e, 0, sizeof *e);
  http_config_t cfg = http_test_config();
  cfg.max_body = 1024;
  cfg.max_connections = max_connections;
  http_test_server_open(&e->base, &cfg, NULL, on_request, e);
  assert_int_equal(http_server_listen(e->srv, "127.0.0.1", 0, NULL, 0), 0);
  e->port = http_server_port(e->srv);
  assert_true(e->port > 0);
  uv_check_init(&e->loop, &e->check);
  e->check.data = e;
  uv_check_start(&e->check, on_check);
}

static void env_fini(env_t *e) {
  uv_close((uv_handle_t *)&e->check, NULL);
  http_test_env_close(&e->base); /* no fake: the clients are real sockets */
  for (int p = 0; p < FAULT_NPOINTS; p++)
    fault_arm((fault_point_t)p, 0);
}

static int client_connect(const env_t *e) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0); /* completes in the backlog */
  return fd;
}

/* What a non-blocking read says: 1 EOF, 0 nothing yet, -1 data or an error. */
static int client_state(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  if (n == 0)
    return 1;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  return -1;
}

/* Appends what can be read now; true (for chaining) always. */
static bool read_more(int fd, char *buf, size_t size, size_t *len) {
  ssize_t n = recv(fd, buf + *len, size - 1 - *len, MSG_DONTWAIT);
  if (n > 0)
    *len += (size_t)n;
  buf[*len] = '\0';
  return true;
}

/* Sends a request and reads its whole reply while the loop runs. */
static void client_request(env_t *e, int fd) {
  static const char req[] = "GET / HTTP/1.1\r\n\r\n";
  assert_int_equal(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
  char buf[512];
  size_t len = 0;
  buf[0] = '\0';
  POLL(&e->loop, true, read_more(fd, buf, sizeof buf, &len) && strstr(buf, "\r\n\r\nhi"));
  assert_int_equal(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), 0);
}

static void expect_shed(env_t *e, int fd) {
  POLL(&e->loop, true, client_state(fd) != 0);
  assert_int_equal(client_state(fd), 1); /* a clean EOF */
}

static void accept_fault(fault_point_t point) {
  env_t e;
  env_init(&e, 16);
  fault_arm(point, 1);
  int a = client_connect(&e);
  expect_shed(&e, a);
  assert_int_equal(fault_fired_count(point), 1);
  const http_stats_t *st = http_server_stats(e.srv);
  assert_int_equal(st->accept_failures, 1);
  assert_int_equal(st->accepted, 0);
  assert_int_equal(st->connections, 0);
  assert_false(e.saw_shed_waiting);

  int b = client_connect(&e);
  client_request(&e, b);
  assert_int_equal(e.nreq, 1);
  assert_int_equal(st->accepted, 1);
  assert_int_equal(st->accept_failures, 1);
  close(a);
  close(b);
  env_fini(&e);
}

static void test_accept_alloc_fault(void **state) {
  (void)state;
  accept_fault(FAULT_ACCEPT_ALLOC);
}

static void test_accept_sockopt_fault(void **state) {
  (void)state;
  accept_fault(FAULT_ACCEPT_SOCKOPT);
}

/* Three connections accepted in one pass: the first fails to allocate (shed
 * through the spare, which is then closing), the second is served and fills
 * max_connections, the third is over the limit and must wait for the spare.
 * fault_arm fires once per arming and nothing runs between two accepts of
 * one pass, so the second shed in a row comes from the connection limit. */
static void test_shed_while_spare_busy(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  fault_arm(FAULT_ACCEPT_ALLOC, 1);
  int a = client_connect(&e), b = client_connect(&e), c = client_connect(&e);
  expect_shed(&e, a);
  expect_shed(&e, c);
  client_request(&e, b);
  const http_stats_t *st = http_server_stats(e.srv);
  assert_int_equal(st->accept_failures, 1);
  assert_int_equal(st->rejected, 1);
  assert_int_equal(st->accepted, 1);
  assert_int_equal(st->connections, 1);
  assert_true(e.saw_shed_waiting); /* c waited for the spare */

  /* The listener still accepts: once b leaves, a new client is served. */
  close(b);
  POLL(&e.loop, true, st->connections == 0);
  int d = client_connect(&e);
  client_request(&e, d);
  assert_int_equal(e.nreq, 2);
  close(a);
  close(c);
  close(d);
  env_fini(&e);
}

/* Every connection shed, several waiting in turn for the spare. */
static void test_shed_back_to_back(void **state) {
  (void)state;
  enum { N = 4 };
  env_t e;
  env_init(&e, 0);
  int fds[N];
  for (int i = 0; i < N; i++)
    fds[i] = client_connect(&e);
  for (int i = 0; i < N; i++)
    expect_shed(&e, fds[i]);
  const http_stats_t *st = http_server_stats(e.srv);
  assert_int_equal(st->rejected, N);
  assert_int_equal(st->accepted, 0);
  assert_int_equal(e.nreq, 0);
  assert_true(e.saw_shed_waiting);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  env_fini(&e);
}

static bool have_ipv6_loopback(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    return false;
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* A fresh server (not listening) in a private loop. */
static void open_server(env_t *e) {
  memset(e, 0, sizeof *e);
  http_config_t cfg = http_test_config();
  http_test_server_open(&e->base, &cfg, NULL, on_request, e);
}

static void test_listen_hosts(void **state) {
  (void)state;
  env_t e;
  char err[512];
  /* A name: its first address that binds. */
  open_server(&e);
  assert_int_equal(http_server_listen(e.srv, "localhost", 0, err, sizeof err), 0);
  assert_string_equal(err, "");
  char want4[64], want6[64];
  snprintf(want4, sizeof want4, "127.0.0.1:%d", http_server_port(e.srv));
  snprintf(want6, sizeof want6, "[::1]:%d", http_server_port(e.srv));
  const char *addr = http_server_address(e.srv);
  if (strcmp(addr, want4) != 0 && strcmp(addr, want6) != 0)
    fail_msg("localhost listens on %s", addr);
  http_test_env_close(&e.base);

  if (have_ipv6_loopback()) {
    open_server(&e);
    assert_int_equal(http_server_listen(e.srv, "::1", 0, err, sizeof err), 0);
    snprintf(want6, sizeof want6, "[::1]:%d", http_server_port(e.srv));
    assert_string_equal(http_server_address(e.srv), want6);
    /* A client over IPv6 is served. */
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_port = htons((uint16_t)http_server_port(e.srv)),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    client_request(&e, fd);
    close(fd);
    http_test_env_close(&e.base);
  }

  /* Bad hosts: nothing bound, and the message says what was tried. A
   * failed try leaves the server as it was: the next one may bind. */
  open_server(&e);
  assert_int_equal(http_server_listen(e.srv, "not an address", 0, err, sizeof err), UV_EINVAL);
  assert_string_equal(err, "\"not an address\" is neither an IPv4 or IPv6 address nor a host name");
  assert_true(http_server_listen(e.srv, "192.0.2.1", 0, err, sizeof err) != 0); /* TEST-NET-1: not ours */
  assert_string_equal(err, "tried 192.0.2.1 (address not available)");
  assert_int_equal(http_server_listen(e.srv, "bad_host!", 0, err, sizeof err), UV_EINVAL); /* no lookup */
  assert_int_equal(http_server_listen(e.srv, "127.0.0.1", 0, NULL, 0), 0);
  int port = http_server_port(e.srv);
  env_t other;
  open_server(&other);
  assert_true(http_server_listen(other.srv, "127.0.0.1", port, err, sizeof err) != 0);
  assert_string_equal(err, "tried 127.0.0.1 (address already in use)");
  http_test_env_close(&other.base);
  http_test_env_close(&e.base);
}

/* Appends what the pipe holds; true once a whole line is there. */
static bool read_line(int fd, char *buf, size_t size, size_t *len) {
  ssize_t n = read(fd, buf + *len, size - 1 - *len);
  if (n > 0)
    *len += (size_t)n;
  buf[*len] = '\0';
  return strchr(buf, '\n') != NULL;
}

/* The access log names the client's address (the fake has none). */
static void test_access_log_remote(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  logq_t *q = logq_new(p[1], 65536);
  assert_non_null(q);
  env_t e;
  memset(&e, 0, sizeof e);
  http_config_t cfg = http_test_config();
  cfg.access_log = q;
  http_test_server_open(&e.base, &cfg, NULL, on_request, &e);
  assert_int_equal(http_server_listen(e.srv, "127.0.0.1", 0, NULL, 0), 0);
  e.port = http_server_port(e.srv);
  int fd = client_connect(&e);
  client_request(&e, fd);
  char line[512] = "";
  size_t len = 0;
  POLL(&e.loop, true, read_line(p[0], line, sizeof line, &len));
  char when[40], remote[64], method[16], path[64];
  int status;
  assert_int_equal(sscanf(line, "%39s %63s %15s %63s %d", when, remote, method, path, &status), 5);
  assert_string_equal(remote, "127.0.0.1");
  assert_string_equal(method, "GET");
  assert_string_equal(path, "/");
  assert_int_equal(status, 200);
  close(fd);
  http_test_env_close(&e.base);
  logq_free(q);
  close(p[0]);
  close(p[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_listen_hosts),          cmocka_unit_test(test_access_log_remote),
      cmocka_unit_test(test_accept_alloc_fault),    cmocka_unit_test(test_accept_sockopt_fault),
      cmocka_unit_test(test_shed_while_spare_busy), cmocka_unit_test(test_shed_back_to_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
