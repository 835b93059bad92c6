/* password_test: password-hash and password-verify against published test
 * vectors (RFC 7914 section 11 for PBKDF2-HMAC-SHA256, the common
 * PBKDF2-HMAC-SHA512 vector, the argon2 reference's argon2id vector), the
 * result's shape, a random salt by default, verify true and false, and the
 * faults a spec cannot catch. Runs the tasks on this thread (test_run.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "tasks/tasks.h"
#include "tasks/test_run.h"

/* Runs def with the params in `json`; the run (caller frees). */
static run_t *run_json(const offload_task_def_t *def, const char *json) {
  run_t *r = new_run(def, NULL, 0, 0);
  json_decref(r->params);
  r->params = json_loads(json, 0, NULL);
  assert_non_null(r->params);
  r->t.params = r->params;
  task_run(&r->t, def);
  return r;
}

/* The JSON result of a run that completed. */
static json_t *result_of(run_t *r) {
  if (r->result.failed)
    fail_msg("failed: %s: %s", r->result.err_code, r->result.err_message ? r->result.err_message : "");
  assert_int_equal(r->result.kind, TASK_RES_JSON);
  json_t *v = task_result_json(&r->result);
  assert_non_null(v);
  return v;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void test_pbkdf2_vectors(void **state) {
  (void)state;
  run_t *r = run_json(&task_password_hash,
                      "{\"password\":\"passwd\",\"salt\":\"73616c74\",\"iterations\":1,\"algorithm\":\"pbkdf2-sha256\","
                      "\"keyLength\":64}");
  json_t *v = result_of(r);
  assert_string_equal(str(v, "hash"), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf17"
                                      "9b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");
  assert_string_equal(str(v, "algorithm"), "pbkdf2-sha256");
  assert_string_equal(str(v, "salt"), "73616c74");
  assert_int_equal(json_integer_value(json_object_get(v, "iterations")), 1);
  assert_int_equal(json_integer_value(json_object_get(v, "keyLength")), 64);
  assert_int_equal(json_object_size(v), 5);
  json_decref(v);
  run_free(r);
  /* sha512 is the default, with 64-byte keys. */
  r = run_json(&task_password_hash, "{\"password\":\"password\",\"salt\":\"73616c74\",\"iterations\":1}");
  v = result_of(r);
  assert_string_equal(str(v, "hash"), "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0"
                                      "501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce");
  assert_string_equal(str(v, "algorithm"), "pbkdf2-sha512");
  json_decref(v);
  run_free(r);
}

static void test_argon2id_vector(void **state) {
  (void)state;
  run_t *r = run_json(&task_password_hash,
                      "{\"password\":\"password\",\"salt\":\"736f6d6573616c74\",\"algorithm\":\"argon2id\","
                      "\"memoryKiB\":65536,\"passes\":2,\"parallelism\":1,\"keyLength\":32}");
  json_t *v = result_of(r);
  assert_string_equal(str(v, "hash"), "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7");
  assert_int_equal(json_integer_value(json_object_get(v, "memoryKiB")), 65536);
  assert_int_equal(json_integer_value(json_object_get(v, "passes")), 2);
  assert_int_equal(json_integer_value(json_object_get(v, "parallelism")), 1);
  assert_int_equal(json_object_size(v), 7);
  json_decref(v);
  run_free(r);
}

static void test_random_salt_and_verify(void **state) {
  (void)state;
  run_t *a = run_json(&task_password_hash, "{\"password\":\"s3cret\",\"iterations\":1000}");
  run_t *b = run_json(&task_password_hash, "{\"password\":\"s3cret\",\"iterations\":1000}");
  json_t *va = result_of(a), *vb = result_of(b);
  assert_int_equal(strlen(str(va, "salt")), 32); /* 16 random bytes */
  assert_int_equal(strlen(str(va, "hash")), 128);
  assert_string_not_equal(str(va, "salt"), str(vb, "salt"));
  char json[512];
  snprintf(json, sizeof json, "{\"password\":\"s3cret\",\"iterations\":1000,\"salt\":\"%s\",\"hash\":\"%s\"}",
           str(va, "salt"), str(va, "hash"));
  run_t *ok = run_json(&task_password_verify, json);
  json_t *m = result_of(ok);
  assert_true(json_is_true(json_object_get(m, "match")));
  json_decref(m);
  snprintf(json, sizeof json, "{\"password\":\"s3cret!\",\"iterations\":1000,\"salt\":\"%s\",\"hash\":\"%s\"}",
           str(va, "salt"), str(va, "hash"));
  run_t *no = run_json(&task_password_verify, json);
  m = result_of(no);
  assert_true(json_is_false(json_object_get(m, "match")));
  json_decref(m);
  json_decref(va);
  json_decref(vb);
  run_free(a);
  run_free(b);
  run_free(ok);
  run_free(no);
}

static void test_faults(void **state) {
  (void)state;
  /* argon2id wants 8 bytes of salt or more; a hash under 16 bytes is refused. */
  run_t *r = run_json(&task_password_hash, "{\"password\":\"p\",\"salt\":\"0011\",\"algorithm\":\"argon2id\"}");
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "invalid_param");
  run_free(r);
  r = run_json(&task_password_verify, "{\"password\":\"p\",\"salt\":\"0011\",\"hash\":\"00112233\"}");
  assert_true(r->result.failed);
  assert_string_equal(r->result.err_code, "invalid_param");
  run_free(r);
  /* The password is a secret. */
  assert_true(tasks_has_secret(&task_password_hash) && tasks_has_secret(&task_password_verify));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pbkdf2_vectors),
      cmocka_unit_test(test_argon2id_vector),
      cmocka_unit_test(test_random_salt_and_verify),
      cmocka_unit_test(test_faults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
