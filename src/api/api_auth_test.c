/* api_auth_test: bearer tokens (api/auth.c) and the check in front of
 * every route (api/routes.c). The token file: comments, blank lines, CRLF,
 * spaces around a token, the 32-character minimum (the error names the
 * line and never the token), bad characters, no token at all, a file that
 * cannot be read. The check: every token of the file, the scheme in any
 * case, wrong and near-miss tokens. On fake connections
 * (api/api_test_env.h): 401 unauthorized with WWW-Authenticate: Bearer
 * before any route (an unknown path too), GET/HEAD /health open, /metrics
 * per metrics_public, an upload refused at its head (no 100 Continue, its
 * body never read), no token echoed, and nothing changed without one.
 *
 * Each test owns a private loop; waits are on conditions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <unistd.h>

#include "api/api_test_env.h"
#include "util/err.h"

#define TOKEN_A "A-token-that-is-long-enough-0123456789"
#define TOKEN_B "B-token-that-is-long-enough-abcdefghij"
#define TOKEN_32 "0123456789abcdef0123456789abcdef"

static int parse(api_auth_t *a, const char *text, char *err, size_t size) {
  err[0] = '\0';
  return api_auth_parse(a, text, strlen(text), "tokens.txt", err, size);
}

static void expect_parse_error(const char *text, const char *want_in_err) {
  api_auth_t a;
  char err[256];
  assert_int_equal(parse(&a, text, err, sizeof err), OFF_EINVAL);
  if (!strstr(err, want_in_err))
    fail_msg("error \"%s\" lacks \"%s\"", err, want_in_err);
  assert_int_equal(a.n, 0);
  assert_null(a.digests);
}

static void test_parse(void **state) {
  (void)state;
  api_auth_t a;
  char err[256];
  assert_int_equal(parse(&a,
                         "# offload tokens\n"
                         "\n"
                         "   \t\n" TOKEN_A "\r\n"
                         "  # indented comment\n"
                         "\t " TOKEN_B "  \n" TOKEN_32,
                         err, sizeof err),
                   0);
  assert_int_equal(a.n, 3);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_A), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_B), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_32), API_AUTH_OK); /* the last line, no newline */
  api_auth_fini(&a);
  assert_int_equal(a.n, 0);
  api_auth_fini(&a); /* harmless twice */

  /* 31 characters: the line is named, the token is not. */
  expect_parse_error("# c\n" TOKEN_A "\n\n0123456789abcdef0123456789abcde\n" TOKEN_B "\n",
                     "tokens.txt:4: the token is 31 characters long; a token needs at least 32");
  assert_int_equal(parse(&a, "x\n", err, sizeof err), OFF_EINVAL);
  assert_null(strstr(err, "x\n"));
  expect_parse_error("short\n", "tokens.txt:1:");
  expect_parse_error(TOKEN_A " " TOKEN_B "\n", "tokens.txt:1: a token holds a space");
  expect_parse_error(TOKEN_A "\n" TOKEN_32 "\x01\n", "tokens.txt:2:");
  expect_parse_error(TOKEN_32 "\xc3\xa9\n", "tokens.txt:1:");
  expect_parse_error("", "no token");
  expect_parse_error("# nothing\n\n   \n", "tokens.txt: no token");
  /* A NUL inside a line is a control character. */
  api_auth_t z;
  const char nul[] = TOKEN_32 "\0" TOKEN_32 "\n";
  assert_int_equal(api_auth_parse(&z, nul, sizeof nul - 1, "f", err, sizeof err), OFF_EINVAL);
  assert_non_null(strstr(err, "f:1:"));
}

static void test_load(void **state) {
  (void)state;
  char path[] = "/tmp/api_auth_test_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char text[] = "# ci\n" TOKEN_A "\n";
  assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
  close(fd);
  api_auth_t a;
  char err[512];
  assert_int_equal(api_auth_load(&a, path, err, sizeof err), 0);
  assert_int_equal(a.n, 1);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_A), API_AUTH_OK);
  api_auth_fini(&a);
  unlink(path);
  assert_int_equal(api_auth_load(&a, path, err, sizeof err), OFF_ESYS);
  assert_non_null(strstr(err, path));
  assert_int_equal(api_auth_load(&a, "/tmp", err, sizeof err), OFF_EINVAL); /* a directory */
  assert_non_null(strstr(err, "not a regular file"));
}

static void test_check(void **state) {
  (void)state;
  api_auth_t a;
  char err[256];
  assert_int_equal(parse(&a, TOKEN_A "\n" TOKEN_B "\n", err, sizeof err), 0);
  assert_int_equal(api_auth_check(&a, NULL), API_AUTH_MISSING);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_A), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_B), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "bearer " TOKEN_B), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "BEARER\t " TOKEN_A " \t"), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "  Bearer " TOKEN_A), API_AUTH_OK);
  assert_int_equal(api_auth_check(&a, "Basic " TOKEN_A), API_AUTH_NOT_BEARER);
  assert_int_equal(api_auth_check(&a, TOKEN_A), API_AUTH_NOT_BEARER);
  assert_int_equal(api_auth_check(&a, "Bearer"), API_AUTH_NOT_BEARER);
  assert_int_equal(api_auth_check(&a, "Bearer" TOKEN_A), API_AUTH_NOT_BEARER);
  assert_int_equal(api_auth_check(&a, ""), API_AUTH_NOT_BEARER);
  assert_int_equal(api_auth_check(&a, "Bearer "), API_AUTH_WRONG);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_32), API_AUTH_WRONG);
  /* Near misses: a prefix, one more character, one changed, the case. */
  char t[128];
  snprintf(t, sizeof t, "Bearer %.*s", (int)strlen(TOKEN_A) - 1, TOKEN_A);
  assert_int_equal(api_auth_check(&a, t), API_AUTH_WRONG);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_A "0"), API_AUTH_WRONG);
  snprintf(t, sizeof t, "Bearer %s", TOKEN_A);
  t[10] ^= 1;
  assert_int_equal(api_auth_check(&a, t), API_AUTH_WRONG);
  assert_int_equal(api_auth_check(&a, "Bearer a-token-that-is-long-enough-0123456789"), API_AUTH_WRONG);
  assert_int_equal(api_auth_check(&a, "Bearer " TOKEN_A " " TOKEN_B), API_AUTH_WRONG);
  /* Only digests are kept: no token's bytes are in the set. */
  assert_null(memmem(a.digests, a.n * sizeof *a.digests, "token-that", 10));
  api_auth_fini(&a);
}

/* ---- in front of the routes ---- */

static api_auth_t env_auth;

static void env_init_auth(env_t *e) {
  env_init(e, 1);
  char err[256];
  assert_int_equal(parse(&env_auth, TOKEN_A "\n" TOKEN_B "\n", err, sizeof err), 0);
  e->api.auth = &env_auth;
}

static void env_fini_auth(env_t *e) {
  env_fini(e);
  api_auth_fini(&env_auth);
}

/* "METHOD target" with an Authorization header (NULL: none), on client i. */
static reply_t *areq(env_t *e, int i, const char *method, const char *target, const char *authorization) {
  char raw[1024];
  int n =
      snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", method, target,
               authorization ? "Authorization: " : "", authorization ? authorization : "", authorization ? "\r\n" : "");
  assert_true(n > 0 && (size_t)n < sizeof raw);
  return client_raw(e, &e->c[i], raw, (size_t)n);
}

static void check_401(const reply_t *r, bool head) {
  if (r->status != 401)
    fail_msg("status %d, want 401: %s", r->status, r->body);
  const char *w = rheader(r, "WWW-Authenticate");
  assert_non_null(w);
  assert_string_equal(w, "Bearer");
  if (!head)
    check_error(r, 401, "unauthorized", NULL);
}

static void test_routes(void **state) {
  (void)state;
  env_t e;
  env_init_auth(&e);
  static const char *const bad[] = {NULL, "Bearer wrong", "Basic " TOKEN_A, "Bearer " TOKEN_A "x", "bearer"};
  static const struct {
    const char *method, *target;
  } routes[] = {{"GET", "/jobs"},         {"GET", "/tasks"},
                {"GET", "/workers"},      {"GET", "/metrics"},
                {"POST", "/health"},      {"DELETE", "/jobs/abc"},
                {"GET", "/no/such/path"}, {"PUT", "/jobs"},
                {"GET", "/fibonacci/5"},  {"GET", "/tasks/reports/start?heavyIterations=5"},
                {"GET", "/jobs?x=1"}};
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
      reply_t *r = areq(&e, 0, routes[i].method, routes[i].target, bad[b]);
      check_401(r, false);
      if (bad[b] && strlen(bad[b]) > 7)
        assert_null(strstr(r->body, bad[b] + 7)); /* never echoed */
    }
    check_401(areq(&e, 0, "HEAD", "/jobs", bad[b]), true);
  }
  assert_non_null(strstr(err_message(areq(&e, 0, "GET", "/jobs", NULL)), "Authorization: Bearer <token>"));
  assert_int_equal(registry_stats(e.reg)->submitted, 0); /* nothing started */

  /* GET and HEAD /health are open, with or without a header. */
  assert_int_equal(areq(&e, 0, "GET", "/health", NULL)->status, 200);
  assert_int_equal(areq(&e, 0, "HEAD", "/health", NULL)->status, 200);
  assert_int_equal(areq(&e, 0, "GET", "/health", "Bearer wrong")->status, 200);
  check_error(areq(&e, 0, "GET", "/health?x=1", NULL), 400, "unknown_param", "x");

  /* With a token: as without authentication. */
  assert_int_equal(areq(&e, 0, "GET", "/jobs", "Bearer " TOKEN_A)->status, 200);
  assert_int_equal(areq(&e, 0, "GET", "/metrics", "bearer " TOKEN_B)->status, 200);
  check_error(areq(&e, 0, "GET", "/no/such/path", "Bearer " TOKEN_B), 404, "not_found", NULL);
  check_error(areq(&e, 0, "PUT", "/jobs", "Bearer " TOKEN_B), 405, "method_not_allowed", NULL);
  char raw[512];
  const char body[] = "{\"task\":\"spin\",\"params\":{\"ms\":1}}";
  int n = snprintf(raw, sizeof raw,
                   "POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN_A
                   "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   sizeof body - 1, body);
  assert_int_equal(client_raw(&e, &e.c[0], raw, (size_t)n)->status, 202);
  /* Without one, the same POST (a small body) is refused, its body read and
   * dropped: the connection goes on. */
  n = snprintf(raw, sizeof raw,
               "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
               sizeof body - 1, body);
  check_401(client_raw(&e, &e.c[0], raw, (size_t)n), false);
  assert_int_equal(registry_stats(e.reg)->submitted, 1);

  /* /metrics is open with metrics_public, and only /metrics. */
  e.api.metrics_public = true;
  assert_int_equal(areq(&e, 0, "GET", "/metrics", NULL)->status, 200);
  assert_int_equal(areq(&e, 0, "HEAD", "/metrics", NULL)->status, 200);
  check_401(areq(&e, 0, "GET", "/jobs", NULL), false);
  check_401(areq(&e, 0, "POST", "/metrics", NULL), false);
  e.api.metrics_public = false;
  check_401(areq(&e, 0, "GET", "/metrics", NULL), false);

  /* No token anywhere in what the server wrote. */
  assert_null(memmem(http_fake_out(e.c[0].f), http_fake_out_len(e.c[0].f), TOKEN_A, strlen(TOKEN_A)));
  assert_null(memmem(http_fake_out(e.c[0].f), http_fake_out_len(e.c[0].f), TOKEN_B, strlen(TOKEN_B)));
  env_fini_auth(&e);
}

/* An upload without a token: 401 at its head, before any 100 Continue,
 * however large it says it is; its body is never read (the connection
 * closes after the 401). */
static void test_upload_refused_at_head(void **state) {
  (void)state;
  env_t e;
  env_init_auth(&e);
  e.api.max_upload = 1024;
  static const char *const heads[] = {
      "POST /jobs/stats HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 50000000\r\nExpect: "
      "100-continue\r\n\r\n",
      "POST /jobs/stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
      "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9999999\r\n\r\n{",
  };
  for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
    client_t *c = &e.c[1];
    env_open(&e, 1);
    reply_t *r = client_raw(&e, c, heads[i], strlen(heads[i]));
    check_401(r, false); /* not 413, not 100 Continue */
    assert_null(strstr(http_fake_out(c->f), "100 Continue"));
    assert_non_null(strstr(r->head, "Connection: close"));
    POLL(&e.loop, true, http_fake_shut(c->f));
    http_fake_eof(c->f);
    POLL(&e.loop, true, http_fake_closed(c->f));
    http_fake_free(c->f);
    reply_free(&c->r);
    memset(c, 0, sizeof *c);
  }
  assert_int_equal(registry_stats(e.reg)->submitted, 0);
  env_fini_auth(&e);
}

/* Without --auth-token-file nothing changes: every endpoint is open. */
static void test_open_without_tokens(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  assert_int_equal(req(&e, "GET", "/jobs")->status, 200);
  assert_int_equal(req(&e, "GET", "/metrics")->status, 200);
  assert_int_equal(areq(&e, 0, "GET", "/jobs", "Bearer whatever")->status, 200);
  check_error(req(&e, "GET", "/nope"), 404, "not_found", NULL);
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_load),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_routes),
      cmocka_unit_test(test_upload_refused_at_head),
      cmocka_unit_test(test_open_without_tokens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
