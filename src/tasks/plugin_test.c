/* plugin_test: the plug-in loader (tasks/plugin.h) against real shared
 * objects built from tests/plugins/testplug.c (one per variant, in
 * TESTPLUG_DIR), the definition checks, and the catalog's extra kinds.
 *
 * This binary exports the task API the way the server does
 * (src/tasks/plugin_api.dynlist), so a loaded plug-in's task runs here
 * through task_run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tasks/context.h"
#include "tasks/plugin.h"
#include "tasks/tasks.h"
#include "util/err.h"

#include "tasks/test_run.h"

#ifndef TESTPLUG_DIR
#error "CMakeLists.txt defines TESTPLUG_DIR"
#endif

static const char *so(const char *variant) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s.so", TESTPLUG_DIR, variant);
  return b;
}

/* Loads the given variants; returns the code, err filled. */
static int load(plugin_set_t *set, char *err, size_t size, int n, ...) {
  const char *paths[8];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    paths[i] = va_arg(ap, const char *);
  va_end(ap);
  err[0] = '\0';
  return plugins_load(set, paths, (size_t)n, err, size);
}

#define assert_has(text, part)                                                                                         \
  do {                                                                                                                 \
    if (!strstr((text), (part)))                                                                                       \
      fail_msg("\"%s\" does not say \"%s\"", (text), (part));                                                          \
  } while (0)

/* ---- loading ---- */

static void test_load_good(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 2, so("good"), so("other")), 0);
  assert_int_equal(set.n, 2);
  assert_int_equal(plugins_count(&set), 3);
  assert_string_equal(plugins_task(&set, 0)->name, "plugtest.echo");
  assert_string_equal(plugins_task(&set, 1)->name, "plugtest.where");
  assert_string_equal(plugins_task(&set, 2)->name, "other.task");
  assert_null(plugins_task(&set, 3));
  const plugin_t *from = NULL;
  const offload_task_def_t *d = plugins_find(&set, "plugtest.where", &from);
  assert_non_null(d);
  assert_int_equal(d->isolation, OFFLOAD_ISOLATION_PROCESS);
  assert_string_equal(from->path, so("good"));
  assert_non_null(plugins_find(&set, "other.task", &from));
  assert_string_equal(from->path, so("other"));
  assert_null(plugins_find(&set, "stats", NULL));

  /* The plug-in's code runs here, calling the exported task API. */
  d = plugins_find(&set, "plugtest.echo", NULL);
  run_t *r = run_task(d, "times", 3);
  assert_complete(r);
  assert_int_equal(r->result.kind, TASK_RES_JSON);
  assert_string_equal(r->result.json, "{\"echo\":\"hi\",\"times\":3}");
  run_free(r);
  plugins_fini(&set);
  assert_int_equal(set.n, 0);
}

static void test_load_relative_path(void **state) {
  (void)state;
  /* A path without a slash is a file here, not a library search. */
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(TESTPLUG_DIR), 0);
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, "good.so"), 0);
  assert_string_equal(set.v[0].path, so("good"));
  plugins_fini(&set);
  assert_int_equal(chdir(cwd), 0);
}

static void test_load_missing_file(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 2, so("good"), "/nonexistent/nope.so"), OFF_ENOENT);
  assert_has(err, "/nonexistent/nope.so");
  assert_has(err, "No such file");
  assert_has(err, "--plugin");
  assert_int_equal(set.n, 0); /* emptied */
}

static void test_load_not_a_library(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  char path[600];
  snprintf(path, sizeof path, "%s/../CMakeCache.txt", TESTPLUG_DIR);
  assert_int_equal(load(&set, err, sizeof err, 1, path), OFF_EINVAL);
  assert_has(err, "CMakeCache.txt cannot be loaded");
  assert_has(err, "include/offload/task.h");
}

static void test_load_undefined_symbol(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("undef")), OFF_EINVAL);
  assert_has(err, "undef.so cannot be loaded");
  assert_has(err, "offload_task_not_exported"); /* dlerror names it */
  assert_has(err, "calling only its functions");
}

static void test_load_no_abi(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("noabi")), OFF_EINVAL);
  assert_has(err, "noabi.so has no offload_plugin_abi symbol");
  assert_has(err, "built against include/offload/task.h?");
  assert_has(err, "export it with OFFLOAD_PLUGIN(...)");
}

static void test_load_no_tasks(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("notasks")), OFF_EINVAL);
  assert_has(err, "notasks.so has no offload_plugin_tasks symbol");
  assert_has(err, "OFFLOAD_PLUGIN(...)");
}

static void test_load_wrong_abi(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("badabi")), OFF_EINVAL);
  assert_has(err, "badabi.so");
  char want[160];
  snprintf(want, sizeof want, "rebuild it against this server's include/offload/task.h (ABI %d, the plug-in has %d)",
           OFFLOAD_PLUGIN_ABI, OFFLOAD_PLUGIN_ABI + 41);
  assert_has(err, want);
}

static void test_load_clash_builtin(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("clash")), OFF_EINVAL);
  assert_has(err, "clash.so: task \"stats\" clashes with the built-in task stats");
  assert_has(err, "rename it");
}

static void test_load_clash_plugins(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 2, so("good"), so("dup")), OFF_EINVAL);
  assert_has(err, "dup.so: task \"plugtest.echo\" clashes with task plugtest.echo of plug-in");
  assert_has(err, so("good"));
  assert_has(err, "rename one of them");
  assert_int_equal(set.n, 0);
}

static void test_load_twice(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 2, so("good"), so("good")), OFF_EINVAL);
  assert_has(err, "good.so is given twice");
}

static void test_load_bad_def(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("baddef")), OFF_EINVAL);
  assert_has(err, "baddef.so: task #1 \"plugtest.norun\": run is NULL");
  assert_has(err, "fix its offload_task_def_t and rebuild it");
}

static void test_load_too_many(void **state) {
  (void)state;
  const char *paths[PLUGIN_MAX + 1];
  for (size_t i = 0; i <= PLUGIN_MAX; i++)
    paths[i] = so("good");
  plugin_set_t set;
  char err[256];
  assert_int_equal(plugins_load(&set, paths, PLUGIN_MAX + 1, err, sizeof err), OFF_EINVAL);
  assert_has(err, "at most");
}

/* ---- checking definitions ---- */

static void noop(offload_task_t *t) { (void)t; }

static void expect_bad(const offload_task_def_t *d, const char *why_part) {
  char why[384] = "";
  if (plugin_check_def(d, why, sizeof why))
    fail_msg("accepted a def that should fail with \"%s\"", why_part);
  assert_has(why, why_part);
}

static void test_names(void **state) {
  (void)state;
  static const char *const good[] = {"a", "0", "wordfreq", "video.transcode", "password-hash", "a_b", "x.y-z_0", NULL};
  for (size_t i = 0; good[i]; i++)
    if (!plugin_name_ok(good[i]))
      fail_msg("refused %s", good[i]);
  static const char *const bad[] = {"", ".x", "-x", "_x", "Upper", "a b", "a/b", "a%2e", "é", "a\tb", NULL};
  for (size_t i = 0; bad[i]; i++)
    if (plugin_name_ok(bad[i]))
      fail_msg("accepted \"%s\"", bad[i]);
  assert_false(plugin_name_ok(NULL));
  char n[OFFLOAD_TASK_NAME_MAX + 2];
  memset(n, 'a', sizeof n);
  n[OFFLOAD_TASK_NAME_MAX] = '\0';
  assert_true(plugin_name_ok(n));
  n[OFFLOAD_TASK_NAME_MAX] = 'a';
  n[OFFLOAD_TASK_NAME_MAX + 1] = '\0';
  assert_false(plugin_name_ok(n));
}

static void test_check_def(void **state) {
  (void)state;
  static const char *const empty[] = {NULL};
  static const char *const ab[] = {"a", "b", NULL};
  offload_task_def_t d = {.name = "t", .description = "A task.", .run = noop};
  char why[384];
  assert_true(plugin_check_def(&d, why, sizeof why));

  offload_task_def_t b = d;
  b.name = "Bad Name";
  expect_bad(&b, "the name is not 1..64 of [a-z0-9._-]");
  b = d;
  b.name = NULL;
  expect_bad(&b, "the name");
  b = d;
  b.run = NULL;
  expect_bad(&b, "run is NULL");
  b = d;
  b.description = NULL;
  expect_bad(&b, "description is NULL");
  b = d;
  b.isolation = (offload_isolation_t)7;
  expect_bad(&b, "unknown isolation 7");
  b = d;
  b.input = (offload_input_t)9;
  expect_bad(&b, "unknown input 9");
  b = d;
  b.nparams = 2; /* and params NULL */
  expect_bad(&b, "params must hold nparams");

  struct {
    offload_param_spec_t p[2];
    size_t n;
    const char *why;
  } cases[] = {
      {{{.name = "1x", .type = OFFLOAD_PARAM_BOOLEAN}}, 1, "its name \"1x\" is not"},
      {{{.name = NULL, .type = OFFLOAD_PARAM_BOOLEAN}}, 1, "parameter #0"},
      {{{.name = "a.b", .type = OFFLOAD_PARAM_BOOLEAN}}, 1, "its name \"a.b\""},
      {{{.name = "timeoutMs", .type = OFFLOAD_PARAM_INTEGER, .max = 5}}, 1, "taken by the job option"},
      {{{.name = "retries", .type = OFFLOAD_PARAM_BOOLEAN}}, 1, "taken by the job option"},
      {{{.name = "x", .type = OFFLOAD_PARAM_BOOLEAN}, {.name = "x", .type = OFFLOAD_PARAM_BOOLEAN}},
       2,
       "parameter x is declared twice"},
      {{{.name = "x", .type = (offload_param_type_t)99}}, 1, "unknown type 99"},
      {{{.name = "x", .type = (offload_param_type_t)0}}, 1, "unknown type 0"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INTEGER, .min = 5, .max = 1}}, 1, "min > max"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INT_LIST, .min = 5, .max = 1}}, 1, "min > max"},
      {{{.name = "x", .type = OFFLOAD_PARAM_NUMBER, .min_real = 2, .max_real = 1}}, 1, "min_real <= max_real"},
      {{{.name = "x", .type = OFFLOAD_PARAM_NUMBER, .min_real = 0, .max_real = INFINITY}}, 1, "finite"},
      {{{.name = "x", .type = OFFLOAD_PARAM_NUMBER_LIST, .min_real = NAN}}, 1, "finite"},
      {{{.name = "x", .type = OFFLOAD_PARAM_STRING, .choices = empty}}, 1, "choices is empty"},
      {{{.name = "x", .type = OFFLOAD_PARAM_STRING, .format = (offload_param_format_t)5}}, 1, "unknown format 5"},
      {{{.name = "x", .type = OFFLOAD_PARAM_STRING, .pattern = "a("}}, 1, "is not a POSIX extended regex"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INT_LIST, .max = 9, .min_items = 3, .max_items = 2}},
       1,
       "min_items > max_items"},
      {{{.name = "x", .type = OFFLOAD_PARAM_NUMBER_LIST, .min_items = 2000}}, 1, "min_items > max_items"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INTEGER, .max = 9, .dflt = "ten"}}, 1, "its default ten is not JSON text"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INTEGER, .max = 9, .dflt = "10"}},
       1,
       "its default 10 is not a value it accepts (params.x must be an integer from 0 to 9; got 10.)"},
      {{{.name = "x", .type = OFFLOAD_PARAM_STRING, .choices = ab, .dflt = "\"c\""}}, 1, "not a value it accepts"},
      {{{.name = "x", .type = OFFLOAD_PARAM_STRING, .dflt = "c"}}, 1, "not JSON text"},
      {{{.name = "x", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "1"}}, 1, "not a value it accepts"},
      {{{.name = "x", .type = OFFLOAD_PARAM_INT_LIST, .max = 9, .dflt = "[1,99]"}}, 1, "not a value it accepts"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    b = d;
    b.params = cases[i].p;
    b.nparams = cases[i].n;
    expect_bad(&b, cases[i].why);
  }

  /* Sound params, defaults of every type included. */
  static const offload_param_spec_t fine[] = {
      {.name = "i", .type = OFFLOAD_PARAM_INTEGER, .min = -5, .max = 5, .dflt = "-5"},
      {.name = "b", .type = OFFLOAD_PARAM_BOOLEAN, .dflt = "true"},
      {.name = "s", .type = OFFLOAD_PARAM_STRING, .choices = ab, .dflt = "\"b\""},
      {.name = "h", .type = OFFLOAD_PARAM_STRING, .format = OFFLOAD_FORMAT_HEX, .dflt = "\"00ff\""},
      {.name = "r", .type = OFFLOAD_PARAM_NUMBER, .min_real = 0, .max_real = 1, .dflt = "0.5"},
      {.name = "any", .type = OFFLOAD_PARAM_NUMBER, .dflt = "-1e300"},
      {.name = "il", .type = OFFLOAD_PARAM_INT_LIST, .min = 1, .max = 9, .max_items = 3, .dflt = "[1,2,9]"},
      {.name = "nl", .type = OFFLOAD_PARAM_NUMBER_LIST, .min_items = 1, .dflt = "[1.5]"},
      {.name = "camelCase_x-y", .type = OFFLOAD_PARAM_BOOLEAN, .required = true},
  };
  b = d;
  b.name = "video.transcode";
  b.params = fine;
  b.nparams = sizeof fine / sizeof fine[0];
  b.isolation = OFFLOAD_ISOLATION_PROCESS;
  b.input = OFFLOAD_INPUT_REQUIRED;
  if (!plugin_check_def(&b, why, sizeof why))
    fail_msg("refused a sound def: %s", why);
}

/* The checks hold the built-in kinds to the same rules. */
static void test_builtins_pass(void **state) {
  (void)state;
  for (size_t i = 0; tasks_builtin[i]; i++) {
    char why[384];
    if (!plugin_check_def(tasks_builtin[i], why, sizeof why))
      fail_msg("built-in %s: %s", tasks_builtin[i]->name, why);
  }
}

/* ---- the catalog's extra kinds ---- */

static void test_catalog_extra(void **state) {
  (void)state;
  plugin_set_t set;
  char err[1024];
  assert_int_equal(load(&set, err, sizeof err, 1, so("good")), 0);
  const offload_task_def_t *extra[] = {plugins_task(&set, 0), plugins_task(&set, 1)};
  tasks_catalog_t plain, c;
  assert_int_equal(tasks_catalog_init(&plain), 0);
  tasks_options_t o = {.isolation = OFFLOAD_ISOLATION_THREAD, .extra = extra, .nextra = 2};
  assert_int_equal(tasks_catalog_init_with(&c, &o), 0);
  assert_int_equal(c.n, plain.n + 2);
  assert_string_equal(c.defs[plain.n].name, "plugtest.echo"); /* after the built-ins, in order */
  assert_string_equal(c.defs[plain.n + 1].name, "plugtest.where");
  assert_int_equal(tasks_catalog_find(&c, "plugtest.echo")->isolation, OFFLOAD_ISOLATION_THREAD);
  assert_int_equal(tasks_catalog_find(&c, "plugtest.where")->isolation, OFFLOAD_ISOLATION_PROCESS);
  assert_int_equal(tasks_catalog_find(&c, "plugtest.echo")->nparams, 2);
  assert_true(tasks_catalog_uses(&c, OFFLOAD_ISOLATION_PROCESS));
  /* Their limits can be tightened like a built-in's, in the copy only. */
  assert_int_equal(tasks_catalog_set_max(&c, "plugtest.echo", "times", 4), 0);
  assert_int_equal(tasks_catalog_find(&c, "plugtest.echo")->params[1].max, 4);
  assert_int_equal(extra[0]->params[1].max, 9);
  tasks_catalog_fini(&c);

  /* --isolation process moves the DEFAULT ones. */
  o.isolation = OFFLOAD_ISOLATION_PROCESS;
  assert_int_equal(tasks_catalog_init_with(&c, &o), 0);
  assert_int_equal(tasks_catalog_find(&c, "plugtest.echo")->isolation, OFFLOAD_ISOLATION_PROCESS);
  tasks_catalog_fini(&c);

  /* Two kinds of one name: refused, whatever their source. */
  const offload_task_def_t *twice[] = {extra[0], extra[0]};
  o.extra = twice;
  assert_int_equal(tasks_catalog_init_with(&c, &o), OFF_EINVAL);
  const offload_task_def_t *builtin_again[] = {&task_stats};
  o.extra = builtin_again;
  o.nextra = 1;
  assert_int_equal(tasks_catalog_init_with(&c, &o), OFF_EINVAL);
  tasks_catalog_fini(&plain);
  plugins_fini(&set);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_good),
      cmocka_unit_test(test_load_relative_path),
      cmocka_unit_test(test_load_missing_file),
      cmocka_unit_test(test_load_not_a_library),
      cmocka_unit_test(test_load_undefined_symbol),
      cmocka_unit_test(test_load_no_abi),
      cmocka_unit_test(test_load_no_tasks),
      cmocka_unit_test(test_load_wrong_abi),
      cmocka_unit_test(test_load_clash_builtin),
      cmocka_unit_test(test_load_clash_plugins),
      cmocka_unit_test(test_load_twice),
      cmocka_unit_test(test_load_bad_def),
      cmocka_unit_test(test_load_too_many),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_check_def),
      cmocka_unit_test(test_builtins_pass),
      cmocka_unit_test(test_catalog_extra),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
