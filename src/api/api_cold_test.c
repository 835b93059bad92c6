/* api_cold_test: old finished jobs read back from the SQLite store (cold
 * jobs, --cache-finished) answer every read exactly as live ones do:
 * GET /jobs/<id>, GET /jobs (mixed with hot ones, in order), the seed's
 * status URL, an Idempotency-Key replay (200 + Location) and conflict
 * (409). A client that leaves before the row arrives costs nothing.
 *
 * Fake connections (api/api_test_env.h); each test owns a loop and a data
 * dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <unistd.h>

#include "api/api_test_env.h"

enum { NJOBS = 5, CACHE = 2 };

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

typedef struct fixture {
  env_t e;
  char dir[64];
  char ids[NJOBS][JOB_ID_LEN + 1]; /* fibonacci n = 10 + i, oldest first */
  char texts[NJOBS][1024];         /* each one's GET body while hot */
} fixture_t;

static void keyed_post(env_t *e, int i, const char *key, const char *body) {
  char raw[1024];
  int n = snprintf(raw, sizeof raw,
                   "POST /jobs HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   key, strlen(body), body);
  http_fake_send(e->c[i].f, raw, (size_t)n);
}

/* Five jobs run one after another, each read while hot; the oldest three
 * are cold by the end. */
static void fixture_init(fixture_t *fx) {
  snprintf(fx->dir, sizeof fx->dir, "/tmp/offload-cold-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  env_init_store(&fx->e, 1, fx->dir, CACHE);
  env_open(&fx->e, 1);
  for (int i = 0; i < NJOBS; i++) {
    char body[96], key[16];
    snprintf(body, sizeof body, "{\"task\":\"fibonacci\",\"params\":{\"n\":%d}}", 10 + i);
    snprintf(key, sizeof key, "key-%d", i);
    keyed_post(&fx->e, 0, key, body);
    reply_t *r = client_wait(&fx->e, &fx->e.c[0], false);
    assert_int_equal(r->status, 202);
    snprintf(fx->ids[i], sizeof fx->ids[i], "%s", jstr(r->json, "id"));
    POLL(&fx->e.loop, true, job_done(&fx->e, fx->ids[i]));
    char target[64];
    snprintf(target, sizeof target, "/jobs/%s", fx->ids[i]);
    r = req(&fx->e, "GET", target);
    assert_int_equal(r->status, 200);
    snprintf(fx->texts[i], sizeof fx->texts[i], "%s", r->body);
  }
  /* The last write of each is committed once nothing is in flight. */
  POLL(&fx->e.loop, true, registry_stats(fx->e.reg)->cold == NJOBS - CACHE);
  for (int i = 0; i < NJOBS; i++)
    assert_int_equal(job_is_cold(registry_get(fx->e.reg, fx->ids[i])), i < NJOBS - CACHE);
}

static void fixture_fini(fixture_t *fx) {
  env_fini(&fx->e);
  nftw(fx->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_get_and_list(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  env_t *e = &fx.e;
  uint64_t reads = store_stats(e->store)->reads;
  /* GET answers the same bytes, hot or cold. */
  for (int i = 0; i < NJOBS; i++) {
    char target[64];
    snprintf(target, sizeof target, "/jobs/%s", fx.ids[i]);
    reply_t *r = req(e, "GET", target);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, fx.texts[i]);
  }
  assert_int_equal(store_stats(e->store)->reads, reads + NJOBS - CACHE);
  /* The listing: newest first, hot texts then cold rows, the same objects. */
  reply_t *r = req(e, "GET", "/jobs?limit=4");
  assert_int_equal(r->status, 200);
  json_t *jobs = json_object_get(r->json, "jobs");
  assert_int_equal(json_array_size(jobs), 4);
  for (size_t k = 0; k < 4; k++) {
    json_t *want = json_loads(fx.texts[NJOBS - 1 - k], 0, NULL);
    assert_non_null(want);
    assert_true(json_equal(json_array_get(jobs, k), want));
    json_decref(want);
  }
  r = req(e, "GET", "/jobs?status=complete&limit=1000");
  assert_int_equal(json_array_size(json_object_get(r->json, "jobs")), NJOBS);
  fixture_fini(&fx);
}

static void test_keys_of_cold_jobs(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  env_t *e = &fx.e;
  /* The same request again: the original (cold) job, 200 and its Location. */
  keyed_post(e, 0, "key-0", "{\"task\":\"fibonacci\",\"params\":{\"n\":10}}");
  reply_t *r = client_wait(e, &e->c[0], false);
  assert_int_equal(r->status, 200);
  assert_string_equal(r->body, fx.texts[0]);
  char loc[64];
  snprintf(loc, sizeof loc, "/jobs/%s", fx.ids[0]);
  assert_string_equal(rheader(r, "Location"), loc);
  /* Other params (the same key order or not): 409. Keys sorted or not,
   * equal params are equal. */
  keyed_post(e, 0, "key-1", "{\"task\":\"fibonacci\",\"params\":{\"n\":12}}");
  check_error(client_wait(e, &e->c[0], false), 409, "idempotency_conflict", "Idempotency-Key");
  keyed_post(e, 0, "key-1", "{\"params\":{\"n\":11},\"task\":\"fibonacci\"}");
  assert_int_equal(client_wait(e, &e->c[0], false)->status, 200);
  fixture_fini(&fx);
}

static void test_seed_status_and_client_gone(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  env_t *e = &fx.e;
  /* The seed's status URL shows a cold job in its own shape. */
  char target[64];
  snprintf(target, sizeof target, "/tasks/reports/%s", fx.ids[0]);
  reply_t *r = req(e, "GET", target);
  assert_int_equal(r->status, 200);
  assert_string_equal(jstr(r->json, "jobId"), fx.ids[0]);
  assert_int_equal(json_integer_value(json_object_get(r->json, "result")), 55);
  /* A client that sends a GET of a cold job and leaves at once. */
  client_t *c = env_open(e, 2);
  snprintf(target, sizeof target, "GET /jobs/%s HTTP/1.1\r\nHost: x\r\n\r\n", fx.ids[1]);
  uint64_t reads = store_stats(e->store)->reads;
  http_fake_send(c->f, target, strlen(target));
  http_fake_eof(c->f); /* the abort comes before the row */
  POLL(&e->loop, true, store_stats(e->store)->reads == reads + 1 && http_fake_closed(c->f));
  /* The others are still served. */
  snprintf(target, sizeof target, "/jobs/%s", fx.ids[1]);
  assert_int_equal(req(e, "GET", target)->status, 200);
  fixture_fini(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_and_list),
      cmocka_unit_test(test_keys_of_cold_jobs),
      cmocka_unit_test(test_seed_status_and_client_gone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
