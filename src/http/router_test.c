/* router_test: the route table matcher (http/router.h): literal, named and
 * star segments, table order, 404 against 405 with the union of methods,
 * parameter copies and the Allow text. Pure functions: no loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "http/router.h"

static const http_route_t routes[] = {
    {HTTP_M_GET | HTTP_M_HEAD, "/jobs", "jobs.list"},
    {HTTP_M_POST, "/jobs", "jobs.create"},
    {HTTP_M_GET, "/jobs/:id", "jobs.get"},
    {HTTP_M_DELETE, "/jobs/:id", "jobs.delete"},
    {HTTP_M_GET, "/jobs/:id/files/:name", "jobs.file"},
    {HTTP_M_GET, "/tasks/reports/start", "reports.start"}, /* literal before the pattern it overlaps */
    {HTTP_M_GET | HTTP_M_POST, "/tasks/reports/:id", "reports.get"},
    {HTTP_M_GET, "/ui/*", "ui"},
    {HTTP_M_GET, "/static/*path", "static"},
    {HTTP_M_GET, "/", "root"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static router_match_t m;

static const char *found(http_method_t method, const char *path) {
  router_result_t r = router_match(routes, NROUTES, method, path, &m);
  if (r != ROUTER_FOUND)
    fail_msg("%s: not found (%d)", path, (int)r);
  return m.route->data;
}

static void expect_param(const char *name, const char *value) {
  char buf[64];
  long n = router_param(&m, name, buf, sizeof buf);
  assert_int_equal(n, (long)strlen(value));
  assert_string_equal(buf, value);
}

static void test_literal_and_named(void **state) {
  (void)state;
  assert_string_equal(found(HTTP_M_GET, "/jobs"), "jobs.list");
  assert_int_equal(m.nparams, 0);
  assert_string_equal(found(HTTP_M_HEAD, "/jobs"), "jobs.list");
  assert_string_equal(found(HTTP_M_POST, "/jobs"), "jobs.create"); /* another route, same pattern */
  assert_string_equal(found(HTTP_M_GET, "/"), "root");

  assert_string_equal(found(HTTP_M_GET, "/jobs/42"), "jobs.get");
  assert_int_equal(m.nparams, 1);
  expect_param("id", "42");
  assert_string_equal(found(HTTP_M_DELETE, "/jobs/abc-def"), "jobs.delete");
  expect_param("id", "abc-def");

  assert_string_equal(found(HTTP_M_GET, "/jobs/7/files/out.csv"), "jobs.file");
  assert_int_equal(m.nparams, 2);
  expect_param("id", "7");
  expect_param("name", "out.csv");

  /* A named segment is one non-empty segment. */
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/jobs/", &m), ROUTER_NOT_FOUND);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/jobs/1/2", &m), ROUTER_NOT_FOUND);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/jobs/7/files/", &m), ROUTER_NOT_FOUND);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/job", &m), ROUTER_NOT_FOUND);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/jobsx", &m), ROUTER_NOT_FOUND);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "", &m), ROUTER_NOT_FOUND);
  assert_null(m.route);
  assert_int_equal(m.allowed, 0);
}

static void test_star(void **state) {
  (void)state;
  assert_string_equal(found(HTTP_M_GET, "/ui/"), "ui");
  assert_int_equal(m.nparams, 1);
  expect_param("*", "");
  assert_string_equal(found(HTTP_M_GET, "/ui/a/b.js"), "ui");
  expect_param("*", "a/b.js");
  assert_string_equal(found(HTTP_M_GET, "/ui/index.html"), "ui");
  expect_param("*", "index.html");
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_GET, "/ui", &m), ROUTER_NOT_FOUND);

  assert_string_equal(found(HTTP_M_GET, "/static/css/site.css"), "static");
  expect_param("path", "css/site.css");
  assert_string_equal(found(HTTP_M_GET, "/static/"), "static");
  expect_param("path", "");
  assert_int_equal(router_param(&m, "*", (char[8]){0}, 8), -1); /* named star: not "*" */
}

static void test_order(void **state) {
  (void)state;
  /* The literal comes first in the table: it wins over the pattern. */
  assert_string_equal(found(HTTP_M_GET, "/tasks/reports/start"), "reports.start");
  assert_int_equal(m.nparams, 0);
  assert_string_equal(found(HTTP_M_GET, "/tasks/reports/9"), "reports.get");
  expect_param("id", "9");

  /* The other way round the pattern shadows the literal. */
  static const http_route_t shadowed[] = {
      {HTTP_M_GET, "/r/:id", "pattern"},
      {HTTP_M_GET, "/r/start", "literal"},
  };
  assert_int_equal(router_match(shadowed, 2, HTTP_M_GET, "/r/start", &m), ROUTER_FOUND);
  assert_string_equal(m.route->data, "pattern");
  expect_param("id", "start");
}

static void test_not_allowed(void **state) {
  (void)state;
  /* Every route with the matching pattern contributes its methods. */
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_PUT, "/jobs", &m), ROUTER_NOT_ALLOWED);
  assert_int_equal(m.allowed, HTTP_M_GET | HTTP_M_HEAD | HTTP_M_POST);
  assert_null(m.route);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_PATCH, "/jobs/3", &m), ROUTER_NOT_ALLOWED);
  assert_int_equal(m.allowed, HTTP_M_GET | HTTP_M_DELETE);
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_OTHER, "/ui/x", &m), ROUTER_NOT_ALLOWED);
  assert_int_equal(m.allowed, HTTP_M_GET);
  /* The first matching pattern decides: the overlapping pattern behind the
   * literal does not lend it its methods. */
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_POST, "/tasks/reports/start", &m), ROUTER_NOT_ALLOWED);
  assert_int_equal(m.allowed, HTTP_M_GET);
  char allow[64];
  router_allow_text(m.allowed, allow, sizeof allow);
  assert_string_equal(allow, "GET");
  /* Not found at all: nothing allowed. */
  assert_int_equal(router_match(routes, NROUTES, HTTP_M_PUT, "/nope", &m), ROUTER_NOT_FOUND);
  assert_int_equal(m.allowed, 0);
}

static void test_param_cut(void **state) {
  (void)state;
  assert_string_equal(found(HTTP_M_GET, "/jobs/abcdefghij/files/n"), "jobs.file");
  char buf[4];
  assert_int_equal(router_param(&m, "id", buf, sizeof buf), 10); /* full length */
  assert_string_equal(buf, "abc");                                 /* cut to fit */
  char one[1] = {'x'};
  assert_int_equal(router_param(&m, "id", one, sizeof one), 10);
  assert_int_equal(one[0], '\0');
  assert_int_equal(router_param(&m, "name", buf, sizeof buf), 1);
  assert_string_equal(buf, "n");
  assert_int_equal(router_param(&m, "nam", buf, sizeof buf), -1); /* whole names only */
  assert_int_equal(router_param(&m, "missing", buf, sizeof buf), -1);
}

static void test_allow_text(void **state) {
  (void)state;
  char buf[128];
  router_allow_text(HTTP_M_OPTIONS | HTTP_M_POST | HTTP_M_GET | HTTP_M_HEAD, buf, sizeof buf);
  assert_string_equal(buf, "GET, HEAD, POST, OPTIONS");
  router_allow_text(HTTP_M_DELETE | HTTP_M_PATCH | HTTP_M_PUT, buf, sizeof buf);
  assert_string_equal(buf, "PUT, DELETE, PATCH");
  router_allow_text(HTTP_M_OTHER, buf, sizeof buf); /* not a nameable method */
  assert_string_equal(buf, "");
  router_allow_text(0, buf, sizeof buf);
  assert_string_equal(buf, "");
  unsigned all = HTTP_M_GET | HTTP_M_HEAD | HTTP_M_POST | HTTP_M_PUT | HTTP_M_DELETE | HTTP_M_PATCH | HTTP_M_OPTIONS;
  router_allow_text(all, buf, sizeof buf);
  assert_string_equal(buf, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
  /* A small buffer stays terminated and within its size. */
  char small[8];
  memset(small, 'x', sizeof small);
  router_allow_text(all, small, sizeof small);
  assert_true(memchr(small, '\0', sizeof small) != NULL);
  assert_int_equal(strncmp(small, "GET, HEAD", strlen(small)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_literal_and_named), cmocka_unit_test(test_star),     cmocka_unit_test(test_order),
      cmocka_unit_test(test_not_allowed),       cmocka_unit_test(test_param_cut), cmocka_unit_test(test_allow_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
