/* utf8_test: UTF-8 well-formedness and sanitizing (util/utf8.h): overlongs,
 * surrogates, code points over U+10FFFF, truncated sequences, and cutting to
 * fit without splitting a character. Pure functions: no loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/utf8.h"

#define REPL "\xEF\xBF\xBD" /* U+FFFD */

static size_t seq(const char *s, size_t n) { return utf8_seq_len((const unsigned char *)s, n); }

static void test_seq_len(void **state) {
  (void)state;
  assert_int_equal(seq("", 0), 0);
  assert_int_equal(seq("a", 1), 1);
  assert_int_equal(seq("\x7f", 1), 1);
  assert_int_equal(seq("\xC2\x80", 2), 2);         /* U+0080 */
  assert_int_equal(seq("\xDF\xBF", 2), 2);         /* U+07FF */
  assert_int_equal(seq("\xE0\xA0\x80", 3), 3);     /* U+0800 */
  assert_int_equal(seq("\xE2\x82\xAC", 3), 3);     /* U+20AC */
  assert_int_equal(seq("\xED\x9F\xBF", 3), 3);     /* U+D7FF, the last before the surrogates */
  assert_int_equal(seq("\xEE\x80\x80", 3), 3);     /* U+E000, the first after */
  assert_int_equal(seq("\xEF\xBF\xBF", 3), 3);     /* U+FFFF */
  assert_int_equal(seq("\xF0\x90\x80\x80", 4), 4); /* U+10000 */
  assert_int_equal(seq("\xF4\x8F\xBF\xBF", 4), 4); /* U+10FFFF */
  assert_int_equal(seq("\xE2\x82\xAC" "rest", 7), 3);

  /* Overlongs. */
  assert_int_equal(seq("\xC0\x80", 2), 0);
  assert_int_equal(seq("\xC1\xBF", 2), 0);
  assert_int_equal(seq("\xE0\x80\x80", 3), 0);
  assert_int_equal(seq("\xE0\x9F\xBF", 3), 0);
  assert_int_equal(seq("\xF0\x80\x80\x80", 4), 0);
  assert_int_equal(seq("\xF0\x8F\xBF\xBF", 4), 0);
  /* Surrogates. */
  assert_int_equal(seq("\xED\xA0\x80", 3), 0);
  assert_int_equal(seq("\xED\xBF\xBF", 3), 0);
  /* Over U+10FFFF, and bytes that never start a sequence. */
  assert_int_equal(seq("\xF4\x90\x80\x80", 4), 0);
  assert_int_equal(seq("\xF5\x80\x80\x80", 4), 0);
  assert_int_equal(seq("\xF8\x88\x80\x80\x80", 5), 0);
  assert_int_equal(seq("\xFF", 1), 0);
  assert_int_equal(seq("\xFE", 1), 0);
  assert_int_equal(seq("\x80", 1), 0);
  assert_int_equal(seq("\xBF", 1), 0);
  /* Truncated: by the length, or by a byte that does not continue. */
  assert_int_equal(seq("\xC2", 1), 0);
  assert_int_equal(seq("\xE2\x82", 2), 0);
  assert_int_equal(seq("\xE2\x82\xAC", 2), 0);
  assert_int_equal(seq("\xF0\x90\x80", 3), 0);
  assert_int_equal(seq("\xC2" "a", 2), 0);
  assert_int_equal(seq("\xE2\x28\xA1", 3), 0);
  assert_int_equal(seq("\xE2\x82\x28", 3), 0);
  assert_int_equal(seq("\xF0\x90\x28\x80", 4), 0);
  assert_int_equal(seq("\xF0\x90\x80\xC0", 4), 0);
}

static void test_valid(void **state) {
  (void)state;
  assert_true(utf8_valid("", 0));
  assert_true(utf8_valid("plain", 5));
  const char *mixed = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80";
  assert_true(utf8_valid(mixed, strlen(mixed)));
  assert_false(utf8_valid(mixed, strlen(mixed) - 1)); /* the last character cut */
  assert_false(utf8_valid("ab\xC0\xAF", 4));
  assert_false(utf8_valid("\xED\xA0\x80", 3));
  assert_false(utf8_valid("\xF4\x90\x80\x80", 4));
  assert_false(utf8_valid("ok\x80", 3));
  assert_true(utf8_valid("a\0b", 3)); /* NUL is a character; the length decides */
}

static void expect_sanitized(const char *src, size_t n, size_t size, const char *want) {
  char dst[64];
  assert_true(size <= sizeof dst);
  memset(dst, 'x', sizeof dst);
  size_t got = utf8_sanitize(dst, size, src, n);
  assert_int_equal(got, strlen(want));
  assert_string_equal(dst, want);
  assert_true(utf8_valid(dst, got));
}

static void test_sanitize(void **state) {
  (void)state;
  expect_sanitized("hello", 5, 64, "hello");
  expect_sanitized("", 0, 64, "");
  expect_sanitized("h\xC3\xA9", 3, 64, "h\xC3\xA9");
  /* Every byte that does not start a valid sequence becomes U+FFFD. */
  expect_sanitized("a\xC0\x80" "b", 4, 64, "a" REPL REPL "b");
  expect_sanitized("\xED\xA0\x80", 3, 64, REPL REPL REPL);
  expect_sanitized("\xF4\x90\x80\x80", 4, 64, REPL REPL REPL REPL);
  expect_sanitized("ab\xE2\x82", 4, 64, "ab" REPL REPL); /* truncated at the end */
  expect_sanitized("\xE2\x82" "c", 3, 64, REPL REPL "c");
  expect_sanitized("\xFF\xFE", 2, 64, REPL REPL);
  /* Stops at a NUL in the source. */
  expect_sanitized("ab\0cd", 5, 64, "ab");
  /* The length bounds the source even without a NUL. */
  expect_sanitized("abcdef", 3, 64, "abc");
}

static void test_sanitize_cut_to_fit(void **state) {
  (void)state;
  const char *s = "ab\xE2\x82\xAC" "c"; /* "ab€c": 6 bytes */
  expect_sanitized(s, 6, 1, "");
  expect_sanitized(s, 6, 2, "a");
  expect_sanitized(s, 6, 3, "ab");
  expect_sanitized(s, 6, 4, "ab"); /* no room for the whole euro sign */
  expect_sanitized(s, 6, 5, "ab");
  expect_sanitized(s, 6, 6, "ab\xE2\x82\xAC");
  expect_sanitized(s, 6, 7, "ab\xE2\x82\xAC" "c");
  /* A replacement is never split either. */
  expect_sanitized("a\xFF" "b", 3, 4, "a");
  expect_sanitized("a\xFF" "b", 3, 5, "a" REPL);
  expect_sanitized("a\xFF" "b", 3, 6, "a" REPL "b");
  /* Four-byte characters. */
  expect_sanitized("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8, 8, "\xF0\x9F\x98\x80");
  expect_sanitized("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8, 9, "\xF0\x9F\x98\x80\xF0\x9F\x98\x80");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seq_len),
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_sanitize),
      cmocka_unit_test(test_sanitize_cut_to_fit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
