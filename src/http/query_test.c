/* query_test: splitting and percent-decoding of URL query strings
 * (http/query.h). Pure functions: no loop, no threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/query.h"

static query_t q; /* big (2 KB of text); one per test process is enough */

static void expect_param(const char *name, const char *value, int count) {
  const query_param_t *p = query_get(&q, name);
  if (!p)
    fail_msg("no parameter \"%s\"", name);
  assert_string_equal(p->name, name);
  assert_string_equal(p->value, value);
  assert_int_equal(p->value_len, strlen(value));
  assert_int_equal(p->count, count);
}

static void test_empty(void **state) {
  (void)state;
  assert_true(query_parse(&q, NULL));
  assert_int_equal(q.n, 0);
  assert_true(query_parse(&q, ""));
  assert_int_equal(q.n, 0);
  assert_null(query_get(&q, "a"));
  assert_true(query_parse(&q, "&&&"));
  assert_int_equal(q.n, 0);
}

static void test_simple(void **state) {
  (void)state;
  assert_true(query_parse(&q, "a=1"));
  assert_int_equal(q.n, 1);
  expect_param("a", "1", 1);
  assert_null(query_get(&q, "b"));
  assert_null(query_get(&q, "A"));

  assert_true(query_parse(&q, "a=1&b=2"));
  assert_int_equal(q.n, 2);
  expect_param("a", "1", 1);
  expect_param("b", "2", 1);
  assert_string_equal(q.params[0].name, "a"); /* kept in order */
  assert_string_equal(q.params[1].name, "b");

  assert_true(query_parse(&q, "a"));
  assert_int_equal(q.n, 1);
  expect_param("a", "", 1);

  assert_true(query_parse(&q, "a="));
  assert_int_equal(q.n, 1);
  expect_param("a", "", 1);

  assert_true(query_parse(&q, "a=1&&b=2&"));
  assert_int_equal(q.n, 2);
  expect_param("a", "1", 1);
  expect_param("b", "2", 1);

  assert_true(query_parse(&q, "a=b=c"));
  expect_param("a", "b=c", 1);

  /* Parsing again forgets the previous result. */
  assert_true(query_parse(&q, "z=9"));
  assert_int_equal(q.n, 1);
  assert_null(query_get(&q, "a"));
}

static void test_repeated(void **state) {
  (void)state;
  assert_true(query_parse(&q, "a=1&a=2"));
  assert_int_equal(q.n, 1);
  const query_param_t *p = query_get(&q, "a");
  assert_non_null(p);
  assert_int_equal(p->count, 2);

  assert_true(query_parse(&q, "a=1&b=2&a=3&a"));
  assert_int_equal(q.n, 2);
  assert_int_equal(query_get(&q, "a")->count, 3);
  assert_int_equal(query_get(&q, "b")->count, 1);
}

static void test_decoding(void **state) {
  (void)state;
  assert_true(query_parse(&q, "%41=%62"));
  expect_param("A", "b", 1);

  assert_true(query_parse(&q, "x=a+b"));
  expect_param("x", "a b", 1);

  assert_true(query_parse(&q, "a+b=%2B%26%3d%25"));
  expect_param("a b", "+&=%", 1);

  assert_true(query_parse(&q, "v=%e2%82%AC"));
  expect_param("v", "\xe2\x82\xac", 1);

  /* %00 would decode to a NUL that hides the rest of a name or value from C
   * string code ("status=queued%00junk" read as "queued"): refused, naming
   * the parameter (issue 6). */
  assert_false(query_parse(&q, "v=a%00b"));
  assert_int_equal(q.err, QUERY_NUL);
  assert_string_equal(q.bad, "v");
  assert_false(query_parse(&q, "ok=1&heavyIterations%00junk=1"));
  assert_int_equal(q.err, QUERY_NUL);
  assert_string_equal(q.bad, "heavyIterations");
  assert_false(query_parse(&q, "limit=5%00"));
  assert_int_equal(q.err, QUERY_NUL);
}

static void test_bad_escapes(void **state) {
  (void)state;
  static const char *const bad[] = {"%", "%4", "%zz", "a=%", "a=%4", "a=%zz", "a=%4g", "a=%g4", "a=1&b=%", "a=%%41"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (query_parse(&q, bad[i]))
      fail_msg("\"%s\" was accepted", bad[i]);
  /* A bad value names its parameter. */
  assert_false(query_parse(&q, "ok=1&name=%zz"));
  assert_string_equal(q.bad, "name");
  assert_false(query_parse(&q, "%zz=1"));
  assert_non_null(q.bad);
}

static void test_limits(void **state) {
  (void)state;
  char raw[8192];
  size_t used = 0;
  raw[0] = '\0';
  for (int i = 0; i < QUERY_MAX_PARAMS; i++)
    used += (size_t)snprintf(raw + used, sizeof raw - used, "%sp%d=%d", i ? "&" : "", i, i);
  assert_true(query_parse(&q, raw));
  assert_int_equal(q.n, QUERY_MAX_PARAMS);
  expect_param("p15", "15", 1);

  /* Repeats of a known name are not new names. */
  snprintf(raw + used, sizeof raw - used, "&p0=x&p3");
  assert_true(query_parse(&q, raw));
  assert_int_equal(q.n, QUERY_MAX_PARAMS);
  assert_int_equal(query_get(&q, "p0")->count, 2);

  /* A 17th distinct name is too many. */
  snprintf(raw + used, sizeof raw - used, "&p16=16");
  assert_false(query_parse(&q, raw));
  assert_string_equal(q.bad, "p16");

  /* A long but fitting value; then one far longer than the storage. */
  memcpy(raw, "v=", 2);
  memset(raw + 2, 'x', 1000);
  raw[1002] = '\0';
  assert_true(query_parse(&q, raw));
  assert_int_equal(query_get(&q, "v")->value_len, 1000);
  memset(raw + 2, 'x', 4000);
  raw[4002] = '\0';
  assert_false(query_parse(&q, raw));
  memset(raw, 'n', 4000);
  raw[4000] = '\0';
  assert_false(query_parse(&q, raw));
}

static void test_unknown(void **state) {
  (void)state;
  static const char *const allowed[] = {"limit", "status", NULL};
  static const char *const none[] = {NULL};
  assert_true(query_parse(&q, "limit=5&status=queued"));
  assert_null(query_unknown(&q, allowed));
  assert_true(query_parse(&q, "limit=5&stat=queued&zzz"));
  const query_param_t *p = query_unknown(&q, allowed);
  assert_non_null(p);
  assert_string_equal(p->name, "stat");
  assert_true(query_parse(&q, ""));
  assert_null(query_unknown(&q, none));
  assert_true(query_parse(&q, "a"));
  p = query_unknown(&q, none);
  assert_non_null(p);
  assert_string_equal(p->name, "a");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),    cmocka_unit_test(test_simple),      cmocka_unit_test(test_repeated),
      cmocka_unit_test(test_decoding), cmocka_unit_test(test_bad_escapes), cmocka_unit_test(test_limits),
      cmocka_unit_test(test_unknown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
