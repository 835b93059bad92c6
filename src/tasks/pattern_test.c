/* pattern_test: string params' patterns (offload_param_spec_t.pattern,
 * tasks/pattern.c): whole-value matches only, through tasks_validate with
 * the param named; NUL bytes; the compile-once table (its overflow, an
 * allocation failure, threads sharing it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tasks/tasks.h"
#include "util/err.h"
#include "util/fault.h"

static const char *const codecs[] = {"libx264", "libvpx-vp9", NULL};

static const offload_param_spec_t specs[] = {
    {.name = "tag", .type = OFFLOAD_PARAM_STRING, .pattern = "[a-z]{1,8}"},
    {.name = "scale", .type = OFFLOAD_PARAM_STRING, .pattern = "scale=[1-9][0-9]{0,2}[02468]:-2"},
    {.name = "alt", .type = OFFLOAD_PARAM_STRING, .pattern = "a|ab"},
    {.name = "nodash", .type = OFFLOAD_PARAM_STRING, .pattern = "([^-].*)?", .max_len = 16},
    {.name = "codec", .type = OFFLOAD_PARAM_STRING, .choices = codecs},
    {.name = "secret", .type = OFFLOAD_PARAM_STRING, .secret = true},
    {.name = "plain", .type = OFFLOAD_PARAM_STRING},
};

static void nop(offload_task_t *t) { (void)t; }

static const offload_task_def_t def = {
    .name = "patterned", .description = "test", .run = nop, .params = specs, .nparams = sizeof specs / sizeof specs[0]};

/* Validates {name: value} (value with its length: it may hold NUL bytes);
 * NULL when valid, else the faulty param. */
static const char *check(const char *name, const char *value, size_t len, param_error_t *err) {
  json_t *p = json_pack("{s:s%}", name, value, len);
  assert_non_null(p);
  bool ok = tasks_validate(&def, p, err);
  json_decref(p);
  return ok ? NULL : err->param;
}

static const char *check_str(const char *name, const char *value, param_error_t *err) {
  return check(name, value, strlen(value), err);
}

static void test_check(void **state) {
  (void)state;
  char why[128];
  assert_int_equal(tasks_pattern_check("[a-z]+", why, sizeof why), 0);
  assert_int_equal(tasks_pattern_check("", why, sizeof why), 0);
  assert_int_equal(tasks_pattern_check("[a-z", why, sizeof why), OFF_EINVAL);
  assert_non_null(strstr(why, "Unmatched ["));
  assert_int_equal(tasks_pattern_check("a{2,1}", why, sizeof why), OFF_EINVAL);
  assert_int_equal(tasks_pattern_check("(a", why, sizeof why), OFF_EINVAL);
  assert_int_equal(tasks_pattern_check("(a)\\1", why, sizeof why), OFF_EINVAL);
  assert_non_null(strstr(why, "back-references"));
  /* An escaped backslash before a digit is a literal backslash, not \1. */
  assert_int_equal(tasks_pattern_check("a\\\\1", why, sizeof why), 0);
}

static void test_match_whole_value(void **state) {
  (void)state;
  struct {
    const char *pattern, *s;
    int want;
  } cases[] = {
      {"[a-z]{1,8}", "abc", 1},
      {"[a-z]{1,8}", "abc1", 0},      /* a suffix left over */
      {"[a-z]{1,8}", "1abc", 0},      /* a prefix */
      {"[a-z]{1,8}", "abcdefghi", 0}, /* too long: only a part matches */
      {"[a-z]{1,8}", "", 0},
      {"a|ab", "ab", 1}, /* POSIX leftmost-longest: the whole "ab" */
      {"(a|ab)(c|bcd)", "abcd", 1},
      {"x*", "abc", 0}, /* an empty match at 0 is not the whole value */
      {"x*", "", 1},
      {"", "", 1},
      {"", "a", 0},
      {"a)|(b)", "a", 0}, /* ")" is a literal here: "a)" or "b" */
      {"a)|(b)", "a)", 1},
      {"([^-].*)?", "-rf", 0},
      {"([^-].*)?", "; rm -rf /", 1},
      {"([^-].*)?", "two\nlines", 1}, /* '.' matches a newline (no REG_NEWLINE) */
      {"[0-9]+", "12\n", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (tasks_pattern_match(cases[i].pattern, cases[i].s, strlen(cases[i].s)) != cases[i].want)
      fail_msg("pattern %s on \"%s\": want %d", cases[i].pattern, cases[i].s, cases[i].want);
  /* A NUL byte: regexec would see only "abc". */
  assert_int_equal(tasks_pattern_match("[a-z]+", "abc\0def", 7), 0);
  assert_int_equal(tasks_pattern_match("[a-z", "a", 1), OFF_EINVAL);
}

static void test_validate(void **state) {
  (void)state;
  param_error_t err;
  assert_null(check_str("tag", "abc", &err));
  assert_null(check_str("scale", "scale=1280:-2", &err));
  assert_null(check_str("alt", "ab", &err));
  assert_null(check_str("nodash", "", &err));
  const char *bad[][2] = {
      {"tag", "abc1"},
      {"tag", "ABC"},
      {"tag", "$(id)"},
      {"tag", "a b"},
      {"tag", "abc\n"},
      {"scale", "scale=1281:-2"},
      {"scale", "scale=1280:-2,drawtext=x"},
      {"scale", "xscale=1280:-2"},
      {"alt", "abb"},
      {"nodash", "-n"},
      {"nodash", "--help"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *p = check_str(bad[i][0], bad[i][1], &err);
    char want[64];
    snprintf(want, sizeof want, "params.%s", bad[i][0]);
    if (!p || strcmp(p, want) != 0)
      fail_msg("%s=\"%s\" passed (or named %s)", bad[i][0], bad[i][1], p ? p : "nothing");
    assert_int_equal(err.problem, PARAM_INVALID);
    assert_non_null(strstr(err.message, "must match the pattern"));
  }
  /* The length comes first: a 1 MB value is refused without a match. */
  static char big[1 << 20];
  memset(big, 'a', sizeof big - 1);
  assert_string_equal(check_str("nodash", big, &err), "params.nodash");
  assert_non_null(strstr(err.message, "at most 16 bytes"));
}

static void test_nul_bytes(void **state) {
  (void)state;
  param_error_t err;
  /* In a patterned string, an enum (strcmp would stop at the NUL and take
   * "libx264"), a plain string: refused, naming the param. */
  assert_string_equal(check("tag", "abc\0def", 7, &err), "params.tag");
  assert_non_null(strstr(err.message, "NUL"));
  assert_string_equal(check("codec", "libx264\0; rm -rf /", 18, &err), "params.codec");
  assert_non_null(strstr(err.message, "NUL"));
  assert_string_equal(check("plain", "a\0b", 3, &err), "params.plain");
  /* A secret (a password) may hold one. */
  assert_null(check("secret", "pw\0rd", 5, &err));
}

/* More patterns than the table holds: the rest are compiled per match. */
static void test_table_overflow(void **state) {
  (void)state;
  for (int i = 0; i < 300; i++) {
    char pat[32], yes[32];
    snprintf(pat, sizeof pat, "x%d[a-z]", i);
    snprintf(yes, sizeof yes, "x%dq", i);
    assert_int_equal(tasks_pattern_match(pat, yes, strlen(yes)), 1);
    assert_int_equal(tasks_pattern_match(pat, "x", 1), 0);
  }
  tasks_patterns_fini();
  assert_int_equal(tasks_pattern_match("x1[a-z]", "x1q", 3), 1);
}

static void test_alloc_failure(void **state) {
  (void)state;
  param_error_t err;
  tasks_patterns_fini(); /* "[a-z]{1,8}" is new again */
  fault_arm(FAULT_ALLOC, 1);
  assert_string_equal(check_str("tag", "abc", &err), "params.tag");
  assert_int_equal(fault_fired_count(FAULT_ALLOC), 1);
  assert_non_null(strstr(err.message, "cannot be checked"));
  /* Refused, not passed; and the next submission is checked as usual. */
  assert_null(check_str("tag", "abc", &err));
  assert_string_equal(check_str("tag", "abc1", &err), "params.tag");
  fault_arm(FAULT_ALLOC, 0);
}

static void *matcher(void *arg) {
  (void)arg;
  for (int i = 0; i < 2000; i++) {
    char pat[32];
    snprintf(pat, sizeof pat, "t%d[0-9]+", i % 20);
    char s[32];
    snprintf(s, sizeof s, "t%d%d", i % 20, i);
    if (tasks_pattern_match(pat, s, strlen(s)) != 1 || tasks_pattern_match(pat, "t", 1) != 0)
      return (void *)1;
  }
  return NULL;
}

static void test_threads_share_the_table(void **state) {
  (void)state;
  tasks_patterns_fini();
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, matcher, NULL), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(th[i], &r);
    assert_null(r);
  }
  tasks_patterns_fini();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_match_whole_value),
      cmocka_unit_test(test_validate),
      cmocka_unit_test(test_nul_bytes),
      cmocka_unit_test(test_table_overflow),
      cmocka_unit_test(test_alloc_failure),
      cmocka_unit_test(test_threads_share_the_table),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tasks_patterns_fini();
  return rc;
}
