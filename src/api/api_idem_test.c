/* api_idem_test: the Idempotency-Key header of POST /jobs and the seed's
 * start URL, on fake connections (api/api_test_env.h): the same request
 * again gets the original job (200), a different one 409, a bad key 400;
 * with a SQLite store, a repeat that arrives while the first job's row is
 * still on the way to the disk waits for it (a 200 promises what the 202
 * promises), and a failed commit fails both and frees the key.
 *
 * Each test owns a private loop (and a fresh data dir for the store). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <unistd.h>

#include "api/api_test_env.h"
#include "util/fault.h"

/* POST on client i with an Idempotency-Key (NULL: none); does not wait. */
static void send_keyed(env_t *e, int i, const char *target, const char *key, const char *body) {
  char raw[4096];
  int n;
  if (body)
    n = snprintf(raw, sizeof raw,
                 "POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 target, key, strlen(body), body);
  else
    n = snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n\r\n", target, key);
  assert_true(n > 0 && (size_t)n < sizeof raw);
  http_fake_send(e->c[i].f, raw, (size_t)n);
}

static reply_t *keyed(env_t *e, int i, const char *key, const char *body) {
  send_keyed(e, i, "/jobs", key, body);
  return client_wait(e, &e->c[i], false);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static char *temp_dir(char buf[64]) {
  snprintf(buf, 64, "/tmp/offload-idem-XXXXXX");
  assert_non_null(mkdtemp(buf));
  return buf;
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS); }

static size_t listed(env_t *e) {
  reply_t *r = req(e, "GET", "/jobs");
  assert_int_equal(r->status, 200);
  return json_array_size(json_object_get(r->json, "jobs"));
}

static void test_same_key_memory(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  const char *body = "{\"task\":\"spin\",\"params\":{\"ms\":1}}";
  reply_t *r = keyed(&e, 0, "order-1", body);
  assert_int_equal(r->status, 202);
  char id[JOB_ID_LEN + 1];
  snprintf(id, sizeof id, "%s", jstr(r->json, "id"));
  /* The same request on another connection: the same job, 200. */
  r = keyed(&e, 1, "order-1", body);
  assert_int_equal(r->status, 200);
  assert_string_equal(jstr(r->json, "id"), id);
  char loc[64];
  snprintf(loc, sizeof loc, "/jobs/%s", id);
  assert_string_equal(rheader(r, "Location"), loc);
  /* Other params, or another task: 409 naming the header. */
  r = keyed(&e, 1, "order-1", "{\"task\":\"spin\",\"params\":{\"ms\":2}}");
  check_error(r, 409, "idempotency_conflict", "Idempotency-Key");
  r = keyed(&e, 1, "order-1", "{\"task\":\"fibonacci\",\"params\":{\"n\":1}}");
  check_error(r, 409, "idempotency_conflict", "Idempotency-Key");
  /* A key with a space, or none at all: 400. */
  r = keyed(&e, 1, "has space", body);
  check_error(r, 400, "invalid_param", "Idempotency-Key");
  assert_int_equal(listed(&e), 1);
  env_fini(&e);
}

static void test_repeat_waits_for_the_row(void **state) {
  (void)state;
  char dir[64];
  temp_dir(dir);
  env_t e;
  env_init_store(&e, 1, dir, 0);
  env_open(&e, 1);
  env_open(&e, 2);
  const char *body = "{\"task\":\"spin\",\"params\":{\"ms\":1}}";
  /* Three requests with one key in one loop turn: one job. */
  send_keyed(&e, 0, "/jobs", "k", body);
  send_keyed(&e, 1, "/jobs", "k", body);
  send_keyed(&e, 2, "/tasks/reports/start?heavyIterations=1000", "k2", NULL);
  /* The repeat's 200 is not sent before the row is kept: by the time it
   * can be read, so can the first request's 202. */
  reply_t *b = client_wait(&e, &e.c[1], false);
  assert_int_equal(b->status, 200);
  assert_true(client_try_read(&e.c[0], false));
  reply_t *a = &e.c[0].r;
  assert_int_equal(a->status, 202);
  char id[JOB_ID_LEN + 1];
  snprintf(id, sizeof id, "%s", jstr(a->json, "id"));
  assert_string_equal(jstr(b->json, "id"), id);
  job_t *j = registry_get(e.reg, id);
  assert_non_null(j);
  assert_true(job_is_accepted(j));
  assert_int_equal(client_wait(&e, &e.c[2], false)->status, 202);
  /* The seed's URL repeated while its row is on the way: its 200 comes in
   * the seed's shape, once kept. */
  send_keyed(&e, 0, "/tasks/reports/start?heavyIterations=1000", "k3", NULL);
  send_keyed(&e, 1, "/tasks/reports/start?heavyIterations=1000", "k3", NULL);
  a = client_wait(&e, &e.c[0], false);
  assert_int_equal(a->status, 202);
  b = client_wait(&e, &e.c[1], false);
  assert_int_equal(b->status, 200);
  assert_string_equal(jstr(b->json, "jobId"), jstr(a->json, "jobId"));
  env_fini(&e);
  rm_tree(dir);
}

static void test_failed_commit_fails_the_repeat_too(void **state) {
  (void)state;
  char dir[64];
  temp_dir(dir);
  env_t e;
  env_init_store(&e, 1, dir, 0);
  env_open(&e, 1);
  const char *body = "{\"task\":\"spin\",\"params\":{\"ms\":1}}";
  fault_arm(FAULT_STORE_COMMIT, 1);
  send_keyed(&e, 0, "/jobs", "k", body);
  send_keyed(&e, 1, "/jobs", "k", body);
  check_error(client_wait(&e, &e.c[0], false), 503, "store_unavailable", NULL);
  check_error(client_wait(&e, &e.c[1], false), 503, "store_unavailable", NULL);
  assert_int_equal(fault_fired_count(FAULT_STORE_COMMIT), 1);
  assert_int_equal(listed(&e), 0);
  /* Nothing was kept, so the key is free: the retry creates the job. */
  reply_t *r = keyed(&e, 0, "k", body);
  assert_int_equal(r->status, 202);
  r = keyed(&e, 1, "k", body);
  assert_int_equal(r->status, 200);
  assert_int_equal(listed(&e), 1);
  env_fini(&e);
  rm_tree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_key_memory),
      cmocka_unit_test(test_repeat_waits_for_the_row),
      cmocka_unit_test(test_failed_commit_fails_the_repeat_too),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
