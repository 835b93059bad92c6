/* buf_test: the growable byte buffer (util/buf.h): append, printf (short
 * and long), consume, release, and an allocation failure injected with
 * FAULT_ALLOC (util/fault.h) leaving the buffer exactly as it was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/fault.h"

static void test_append(void **state) {
  (void)state;
  buf_t b = BUF_INIT;
  assert_null(b.data);
  assert_int_equal(buf_append(&b, "abc", 3), 0);
  assert_int_equal(b.len, 3);
  assert_true(b.cap >= 4);
  assert_string_equal(b.data, "abc"); /* always terminated */
  assert_int_equal(buf_append(&b, "", 0), 0);
  assert_int_equal(b.len, 3);
  assert_int_equal(buf_puts(&b, "def"), 0);
  assert_string_equal(b.data, "abcdef");
  assert_int_equal(buf_append(&b, "g\0h", 3), 0); /* bytes, NULs included */
  assert_int_equal(b.len, 9);
  assert_memory_equal(b.data, "abcdefg\0h", 10);

  /* Growth keeps the contents. */
  char big[5000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (char)('a' + i % 26);
  assert_int_equal(buf_append(&b, big, sizeof big), 0);
  assert_int_equal(b.len, 9 + sizeof big);
  assert_true(b.cap > b.len);
  assert_memory_equal(b.data + 9, big, sizeof big);
  assert_int_equal(b.data[b.len], '\0');

  /* Reset keeps the storage; free empties it. */
  size_t cap = b.cap;
  buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, cap);
  assert_string_equal(b.data, "");
  buf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  buf_reset(&b); /* harmless on an empty buffer */
  buf_free(&b);
}

static void test_printf(void **state) {
  (void)state;
  buf_t b = BUF_INIT;
  assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
  assert_string_equal(b.data, "42-x");
  /* Longer than the function's small stack buffer. */
  char word[1000];
  memset(word, 'w', sizeof word - 1);
  word[sizeof word - 1] = '\0';
  assert_int_equal(buf_printf(&b, "[%s]", word), 0);
  assert_int_equal(b.len, 4 + 2 + 999);
  assert_int_equal(b.data[4], '[');
  assert_int_equal(b.data[b.len - 1], ']');
  assert_int_equal(b.data[b.len], '\0');
  assert_int_equal(strlen(b.data), b.len);
  buf_free(&b);
}

static void test_consume_release(void **state) {
  (void)state;
  buf_t b = BUF_INIT;
  assert_int_equal(buf_puts(&b, "hello world"), 0);
  buf_consume(&b, 0);
  assert_string_equal(b.data, "hello world");
  buf_consume(&b, 6);
  assert_int_equal(b.len, 5);
  assert_string_equal(b.data, "world");
  buf_consume(&b, 5);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  assert_int_equal(buf_puts(&b, "again"), 0);
  char *p = buf_release(&b);
  assert_string_equal(p, "again");
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  free(p);
  assert_null(buf_release(&b)); /* nothing was appended since */
}

static void test_alloc_failure(void **state) {
  (void)state;
  buf_t b = BUF_INIT;
  /* The very first allocation fails: still empty. */
  fault_arm(FAULT_ALLOC, 1);
  assert_int_equal(buf_append(&b, "abc", 3), OFF_ENOMEM);
  assert_int_equal(fault_fired_count(FAULT_ALLOC), 1);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);

  assert_int_equal(buf_append(&b, "abc", 3), 0); /* disarmed after firing */
  char *data = b.data;
  size_t cap = b.cap;

  /* An append that fits needs no allocation: the armed fault waits. */
  fault_arm(FAULT_ALLOC, 1);
  assert_int_equal(buf_append(&b, "d", 1), 0);
  assert_int_equal(fault_fired_count(FAULT_ALLOC), 0);

  /* Growth fails: nothing changed, not even the terminator. */
  char big[4096];
  memset(big, 'z', sizeof big);
  assert_int_equal(buf_append(&b, big, sizeof big), OFF_ENOMEM);
  assert_int_equal(fault_fired_count(FAULT_ALLOC), 1);
  assert_ptr_equal(b.data, data);
  assert_int_equal(b.cap, cap);
  assert_int_equal(b.len, 4);
  assert_string_equal(b.data, "abcd");

  /* The same through printf's long path and puts. */
  char word[600];
  memset(word, 'w', sizeof word - 1);
  word[sizeof word - 1] = '\0';
  fault_arm(FAULT_ALLOC, 1);
  assert_int_equal(buf_printf(&b, "%s", word), OFF_ENOMEM);
  assert_int_equal(b.len, 4);
  assert_string_equal(b.data, "abcd");
  fault_arm(FAULT_ALLOC, 1);
  assert_int_equal(buf_puts(&b, word), OFF_ENOMEM);
  assert_string_equal(b.data, "abcd");

  /* The second hit from now: the first growth works, the second fails. */
  buf_t c = BUF_INIT;
  fault_arm(FAULT_ALLOC, 2);
  assert_int_equal(buf_append(&c, "x", 1), 0);
  assert_int_equal(buf_append(&c, big, sizeof big), OFF_ENOMEM);
  assert_string_equal(c.data, "x");
  assert_int_equal(fault_fired_count(FAULT_ALLOC), 1);

  fault_arm(FAULT_ALLOC, 0);
  assert_int_equal(buf_append(&b, big, sizeof big), 0);
  assert_int_equal(b.len, 4 + sizeof big);
  buf_free(&b);
  buf_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append),
      cmocka_unit_test(test_printf),
      cmocka_unit_test(test_consume_release),
      cmocka_unit_test(test_alloc_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
