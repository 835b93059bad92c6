/* wire_test: job and result payloads (pool/wire.h): round trips inline and
 * through a memfd, and refusal of payloads that do not add up. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pool/wire.h"
#include "util/err.h"

static void test_job_inline(void **state) {
  (void)state;
  json_t *params = json_pack("{s:I, s:b, s:s}", "n", (json_int_t)42, "flag", 1, "mode", "segv");
  void *p;
  size_t len;
  int fd;
  assert_int_equal(wire_encode_job("crash", NULL, params, WIRE_INLINE_MAX, &p, &len, &fd), 0);
  assert_int_equal(fd, -1);
  char task[64];
  json_t *got = NULL;
  assert_int_equal(wire_decode_job(p, len, -1, task, sizeof task, NULL, &got), 0);
  assert_string_equal(task, "crash");
  assert_true(json_equal(got, params));
  json_decref(got);
  /* A cut payload or a name that does not fit is refused. */
  assert_int_equal(wire_decode_job(p, 7, -1, task, sizeof task, NULL, &got), OFF_EINVAL);
  assert_null(got);
  assert_int_equal(wire_decode_job(p, len, -1, task, 5, NULL, &got), OFF_EINVAL);
  assert_int_equal(wire_decode_job(p, len - 1, -1, task, sizeof task, NULL, &got), OFF_EINVAL); /* broken JSON */
  free(p);
  json_decref(params);
}

static void test_job_through_memfd(void **state) {
  (void)state;
  /* Params longer than inline_max go in a memfd; the payload keeps the name. */
  json_t *params = json_object();
  char key[16];
  for (int i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    json_object_set_new(params, key, json_integer(i));
  }
  void *p;
  size_t len;
  int fd;
  wire_where_t where = {.job_id = "abcDEF-_0123456789abcd", .files_root = "/data/files"}, back;
  assert_int_equal(wire_encode_job("report", &where, params, 1024, &p, &len, &fd), 0);
  assert_true(fd >= 0);
  assert_true(len < 64); /* header, name and where only */
  char task[64];
  json_t *got = NULL;
  assert_int_equal(wire_decode_job(p, len, fd, task, sizeof task, &back, &got), 0);
  assert_string_equal(task, "report");
  assert_string_equal(back.job_id, where.job_id);
  assert_string_equal(back.files_root, where.files_root);
  assert_true(json_equal(got, params));
  json_decref(got);
  /* The flag without a descriptor is refused. */
  assert_int_equal(wire_decode_job(p, len, -1, task, sizeof task, NULL, &got), OFF_EINVAL);
  close(fd);
  free(p);
  json_decref(params);
}

static void test_result_round_trip(void **state) {
  (void)state;
  task_result_t r = {.kind = TASK_RES_REAL, .real = 2.5};
  void *p;
  size_t len;
  assert_int_equal(wire_encode_result(&r, &p, &len), 0);
  task_result_t got;
  assert_int_equal(wire_decode_result(p, len, &got), 0);
  assert_int_equal(got.kind, TASK_RES_REAL);
  assert_true(got.real == 2.5);
  assert_false(got.failed);
  task_result_fini(&got);
  free(p);

  task_result_t f = {.kind = TASK_RES_INT, .integer = -7, .failed = true};
  strcpy(f.err_code, "bad_input");
  f.err_message = malloc(WIRE_MAX_MESSAGE + 100);
  memset(f.err_message, 'm', WIRE_MAX_MESSAGE + 99);
  f.err_message[WIRE_MAX_MESSAGE + 99] = '\0';
  assert_int_equal(wire_encode_result(&f, &p, &len), 0);
  assert_int_equal(wire_decode_result(p, len, &got), 0);
  assert_true(got.failed);
  assert_string_equal(got.err_code, "bad_input");
  assert_int_equal(strlen(got.err_message), WIRE_MAX_MESSAGE); /* cut */
  assert_true(got.integer == -7);
  task_result_fini(&got);
  /* Lengths that do not add up, or a bad kind, are refused. */
  assert_int_equal(wire_decode_result(p, len - 1, &got), OFF_EINVAL);
  assert_int_equal(wire_decode_result(p, 10, &got), OFF_EINVAL);
  ((uint8_t *)p)[0] = 9;
  assert_int_equal(wire_decode_result(p, len, &got), OFF_EINVAL);
  free(p);
  task_result_fini(&f);
}

static void test_json_result(void **state) {
  (void)state;
  /* A JSON result crosses whole, up to TASK_RESULT_JSON_MAX bytes (beyond
   * an error message's cut). */
  size_t n = TASK_RESULT_JSON_MAX;
  task_result_t r = {.kind = TASK_RES_JSON};
  r.json = malloc(n + 1);
  r.json[0] = '"';
  memset(r.json + 1, 'j', n - 2);
  r.json[n - 1] = '"';
  r.json[n] = '\0';
  void *p;
  size_t len;
  assert_int_equal(wire_encode_result(&r, &p, &len), 0);
  task_result_t got;
  assert_int_equal(wire_decode_result(p, len, &got), 0);
  assert_int_equal(got.kind, TASK_RES_JSON);
  assert_false(got.failed);
  assert_string_equal(got.json, r.json);
  assert_null(got.err_message);
  task_result_fini(&got);
  free(p);
  /* A JSON result with no text is refused. */
  task_result_t empty = {.kind = TASK_RES_JSON};
  assert_int_equal(wire_encode_result(&empty, &p, &len), 0);
  assert_int_equal(wire_decode_result(p, len, &got), OFF_EINVAL);
  task_result_fini(&got);
  free(p);
  task_result_fini(&r);
}

static void test_job_with_input(void **state) {
  (void)state;
  /* An input travels as the frame's descriptor, with its size and type;
   * the params must then fit inline. */
  int in = memfd_create("input", MFD_CLOEXEC);
  assert_true(in >= 0);
  json_t *params = json_pack("{s:s}", "column", "price");
  wire_where_t where = {.job_id = "id1", .files_root = "/r", .has_input = true, .input_fd = in,
                        .input_len = 1234, .input_type = "text/csv"};
  void *p;
  size_t len;
  int fd;
  assert_int_equal(wire_encode_job("stats", &where, params, WIRE_INLINE_MAX, &p, &len, &fd), 0);
  assert_int_equal(fd, in);
  char task[64];
  json_t *got = NULL;
  wire_where_t back;
  assert_int_equal(wire_decode_job(p, len, fd, task, sizeof task, &back, &got), 0);
  assert_true(back.has_input);
  assert_int_equal(back.input_len, 1234);
  assert_string_equal(back.input_type, "text/csv");
  assert_true(json_equal(got, params));
  json_decref(got);
  free(p);
  /* Params too large to go inline beside an input: refused. */
  assert_int_equal(wire_encode_job("stats", &where, params, 4, &p, &len, &fd), OFF_EINVAL);
  close(in);
  json_decref(params);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_result),
      cmocka_unit_test(test_job_with_input),
      cmocka_unit_test(test_job_inline),
      cmocka_unit_test(test_job_through_memfd),
      cmocka_unit_test(test_result_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
