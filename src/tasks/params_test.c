/* params_test: the task API's typed parameters (offload/task.h): strings
 * with a length limit and a format, numbers, lists, defaults, secrets; how
 * they are validated (each fault names the parameter), read by a task and
 * redacted for showing and storing; JSON results. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "tasks/tasks.h"
#include "tasks/test_run.h"

static const char *const colors[] = {"red", "green", NULL};

static const offload_param_spec_t specs[] = {
    {.name = "text", .type = OFFLOAD_PARAM_STRING, .max_len = 8},
    {.name = "color", .type = OFFLOAD_PARAM_STRING, .choices = colors, .dflt = "\"red\""},
    {.name = "hex", .type = OFFLOAD_PARAM_STRING, .format = OFFLOAD_FORMAT_HEX},
    {.name = "ratio", .type = OFFLOAD_PARAM_NUMBER, .min_real = 0.5, .max_real = 2.0},
    {.name = "any", .type = OFFLOAD_PARAM_NUMBER},
    {.name = "widths", .type = OFFLOAD_PARAM_INT_LIST, .min = 1, .max = 100, .min_items = 1, .max_items = 3},
    {.name = "values", .type = OFFLOAD_PARAM_NUMBER_LIST},
    {.name = "secret", .type = OFFLOAD_PARAM_STRING, .secret = true},
};

static void nop(offload_task_t *t) { (void)t; }

static const offload_task_def_t def = {
    .name = "typed", .description = "test", .run = nop, .params = specs, .nparams = sizeof specs / sizeof specs[0]};

/* Validates JSON text; NULL when valid, else the faulty param's name. */
static const char *fault(const char *json, param_error_t *err) {
  json_t *p = json_loads(json, 0, NULL);
  assert_non_null(p);
  bool ok = tasks_validate(&def, p, err);
  json_decref(p);
  return ok ? NULL : err->param;
}

static void test_valid(void **state) {
  (void)state;
  param_error_t err;
  const char *ok[] = {
      "{}",
      "{\"text\":\"12345678\",\"color\":\"green\",\"hex\":\"00fF\",\"ratio\":0.5,\"any\":-1e300}",
      "{\"ratio\":2,\"widths\":[1,100,7],\"values\":[1,2.5,-3],\"secret\":\"pw\"}",
      "{\"values\":[]}",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (fault(ok[i], &err))
      fail_msg("%s: %s", ok[i], err.message);
}

static void test_faults_name_the_param(void **state) {
  (void)state;
  struct {
    const char *json, *param, *words;
  } bad[] = {
      {"{\"text\":\"123456789\"}", "params.text", "at most 8 bytes"},
      {"{\"text\":5}", "params.text", "must be a string"},
      {"{\"color\":\"blue\"}", "params.color", "one of: red, green"},
      {"{\"hex\":\"abc\"}", "params.hex", "hex"},
      {"{\"hex\":\"zz\"}", "params.hex", "hex"},
      {"{\"hex\":\"\"}", "params.hex", "hex"},
      {"{\"ratio\":2.01}", "params.ratio", "from 0.5 to 2"},
      {"{\"ratio\":\"1\"}", "params.ratio", "must be a number"},
      {"{\"widths\":[]}", "params.widths", "1 to 3 integers"},
      {"{\"widths\":[1,2,3,4]}", "params.widths", "1 to 3 integers"},
      {"{\"widths\":[1,0]}", "params.widths[1]", "from 1 to 100"},
      {"{\"widths\":[1,1.5]}", "params.widths[1]", "an integer"},
      {"{\"widths\":7}", "params.widths", "a list"},
      {"{\"values\":[1,\"x\"]}", "params.values[1]", "a number"},
      {"{\"secret\":true}", "params.secret", "must be a string"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    param_error_t err;
    const char *p = fault(bad[i].json, &err);
    if (!p || strcmp(p, bad[i].param) != 0 || !strstr(err.message, bad[i].words))
      fail_msg("%s: param %s, message \"%s\"; want %s and \"%s\"", bad[i].json, p ? p : "(valid)",
               p ? err.message : "", bad[i].param, bad[i].words);
  }
}

static void test_redact(void **state) {
  (void)state;
  json_t *p = json_pack("{s:s, s:s}", "secret", "hunter2", "text", "x");
  assert_true(tasks_has_secret(&def));
  json_t *shown = tasks_redact(&def, p);
  assert_string_equal(json_string_value(json_object_get(shown, "secret")), "[redacted]");
  assert_string_equal(json_string_value(json_object_get(shown, "text")), "x");
  assert_string_equal(json_string_value(json_object_get(p, "secret")), "hunter2"); /* the original is untouched */
  json_decref(shown);
  json_decref(p);
  assert_false(tasks_has_secret(&task_fibonacci));
}

static void lists_task(offload_task_t *t) {
  int64_t w[4];
  double v[4];
  size_t nw = offload_task_param_ints(t, "widths", w, 4), nv = offload_task_param_reals(t, "values", v, 2);
  size_t len;
  const char *s = offload_task_param_strn(t, "secret", &len);
  char out[256];
  snprintf(out, sizeof out, "{\"nw\":%zu,\"w0\":%lld,\"nv\":%zu,\"v1\":%g,\"ratio\":%g,\"len\":%zu,\"s1\":%d}", nw,
           (long long)w[0], nv, v[1], offload_task_param_real(t, "ratio", 1.25), len, s ? s[1] : -1);
  offload_task_result_json(t, out);
}

static void test_reading_and_json_result(void **state) {
  (void)state;
  offload_task_def_t d = def;
  d.run = lists_task;
  run_t *r = new_run(&d, NULL, 0, 0);
  json_object_set_new(r->params, "widths", json_pack("[i,i]", 320, 640));
  json_object_set_new(r->params, "values", json_pack("[f,f,f]", 1.0, 2.5, 3.0));
  json_object_set_new(r->params, "secret", json_stringn("a\0b", 3));
  task_run(&r->t, &d);
  assert_complete(r);
  assert_int_equal(r->result.kind, TASK_RES_JSON);
  json_t *got = task_result_json(&r->result);
  assert_non_null(got);
  assert_int_equal(json_integer_value(json_object_get(got, "nw")), 2);
  assert_int_equal(json_integer_value(json_object_get(got, "w0")), 320);
  assert_true(json_real_value(json_object_get(got, "v1")) == 2.5);
  assert_int_equal(json_integer_value(json_object_get(got, "len")), 3);
  assert_int_equal(json_integer_value(json_object_get(got, "s1")), 0); /* the NUL inside the secret */
  assert_int_equal(json_integer_value(json_object_get(got, "nv")), 3);
  assert_true(json_real_value(json_object_get(got, "ratio")) == 1.25);
  json_decref(got);
  run_free(r);
}

static void bad_json_task(offload_task_t *t) { offload_task_result_json(t, "{\"a\":"); }
static void big_json_task(offload_task_t *t) {
  size_t n = TASK_RESULT_JSON_MAX + 10;
  char *s = malloc(n + 1);
  s[0] = '"';
  memset(s + 1, 'x', n - 2);
  s[n - 1] = '"';
  s[n] = '\0';
  offload_task_result_json(t, s);
  free(s);
}

static void test_bad_json_results_fail(void **state) {
  (void)state;
  offload_task_def_t d = def;
  d.run = bad_json_task;
  run_t *r = new_run(&d, NULL, 0, 0);
  task_run(&r->t, &d);
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "invalid_result");
  run_free(r);
  d.run = big_json_task;
  r = new_run(&d, NULL, 0, 0);
  task_run(&r->t, &d);
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "result_too_large");
  run_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_faults_name_the_param),
      cmocka_unit_test(test_redact),
      cmocka_unit_test(test_reading_and_json_result),
      cmocka_unit_test(test_bad_json_results_fail),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
