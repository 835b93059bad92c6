/* api_seed_test: the seeds' endpoints on fake connections
 * (api/api_test_env.h): GET /tasks/reports/start and /tasks/reports/<id>,
 * GET /fibonacci/<n> held until its job is final (complete, canceled by a
 * DELETE, failed by a timeout, canceled by shutdown) and canceled when its
 * client goes away; plus 429 and 503 on submission.
 *
 * Each test owns a private loop; waits are on conditions, never on time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "api/api_test_env.h"

static const char *blocker_start(env_t *e, char id[JOB_ID_LEN + 1]) {
  submit_spin(e, 600000, id);
  wait_processing(e, id);
  return id;
}

/* The newest job in the registry (the one a request just submitted). */
static job_t *newest_job(env_t *e) {
  job_t *j = registry_newest(e->reg);
  assert_non_null(j);
  return j;
}

static void test_report_start(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 2);
  reply_t *r = req(&e, "GET", "/tasks/reports/start?heavyIterations=1000");
  assert_int_equal(r->status, 202);
  const char *id = jstr(r->json, "jobId");
  assert_non_null(id);
  assert_int_equal(strlen(id), JOB_ID_LEN);
  char want[256];
  snprintf(want, sizeof want, "{\"jobId\":\"%s\",\"status\":\"queued\",\"statusUrl\":\"/tasks/reports/%s\"}\n", id,
           id);
  assert_string_equal(r->body, want);
  snprintf(want, sizeof want, "/tasks/reports/%s", id);
  assert_string_equal(rheader(r, "Location"), want);
  job_t *j = registry_get(e.reg, id);
  assert_non_null(j);
  assert_string_equal(j->def->name, "report");
  assert_int_equal(json_integer_value(json_object_get(j->params, "heavyIterations")), 1000);

  r = req(&e, "GET", "/tasks/reports/start?heavyIterations=0");
  check_error(r, 400, "invalid_param", "heavyIterations");
  assert_string_equal(r->body, "{\"error\":{\"code\":\"invalid_param\",\"message\":\"heavyIterations must be an "
                               "integer from 1 to 100000000000; got \\\"0\\\".\",\"param\":\"heavyIterations\"}}\n");
  check_error(req(&e, "GET", "/tasks/reports/start"), 400, "missing_param", "heavyIterations");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations="), 400, "invalid_param", "heavyIterations");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=100000000001"), 400, "invalid_param",
              "heavyIterations");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=1e3"), 400, "invalid_param", "heavyIterations");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=5&heavyIterations=6"), 400, "invalid_param",
              "heavyIterations");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyiterations=5"), 400, "unknown_param", "heavyiterations");
  assert_int_equal(registry_stats(e.reg)->submitted, 1);
  env_fini(&e);
}

static const char *const seed_keys[] = {"jobId",         "status",    "progress",  "result",    "error",
                                        "queuePosition", "createdAt", "startedAt", "finishedAt"};

static void check_seed_shape(const json_t *o) {
  assert_int_equal(json_object_size(o), 9);
  size_t i = 0;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)o, key, v) assert_string_equal(key, seed_keys[i++]);
}

static void test_report_status(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1], path[80];
  blocker_start(&e, blocker);
  reply_t *r = req(&e, "GET", "/tasks/reports/start?heavyIterations=1000");
  snprintf(id, sizeof id, "%s", jstr(r->json, "jobId"));
  snprintf(path, sizeof path, "/tasks/reports/%s", id);
  r = req(&e, "GET", path);
  assert_int_equal(r->status, 200);
  check_seed_shape(r->json);
  assert_string_equal(jstr(r->json, "jobId"), id);
  assert_string_equal(jstr(r->json, "status"), "queued");
  assert_int_equal(json_integer_value(json_object_get(r->json, "queuePosition")), 1);
  assert_non_null(strstr(r->body, "\"progress\":0.0,"));

  /* Any job has the seed shape; the blocker is processing. */
  snprintf(path, sizeof path, "/tasks/reports/%s", blocker);
  r = req(&e, "GET", path);
  check_seed_shape(r->json);
  assert_string_equal(jstr(r->json, "status"), "processing");
  assert_true(json_is_null(json_object_get(r->json, "queuePosition")));
  assert_true(json_is_integer(json_object_get(r->json, "startedAt")));
  snprintf(path, sizeof path, "/jobs/%s", blocker);
  assert_int_equal(req(&e, "DELETE", path)->status, 202);

  wait_job_done(&e, id);
  snprintf(path, sizeof path, "/tasks/reports/%s", id);
  r = req(&e, "GET", path);
  check_seed_shape(r->json);
  assert_string_equal(jstr(r->json, "status"), "complete");
  assert_non_null(strstr(r->body, "\"progress\":1.0,"));
  double sum = 0;
  for (int i = 0; i < 1000; i++)
    sum += sqrt((double)i);
  json_t *res = json_object_get(r->json, "result");
  assert_true(json_is_real(res));
  assert_true(fabs(json_real_value(res) - sum) <= 1e-9 * sum);
  assert_true(json_is_integer(json_object_get(r->json, "finishedAt")));

  check_error(req(&e, "GET", "/tasks/reports/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not_found", NULL);
  snprintf(path, sizeof path, "/tasks/reports/%s?verbose=1", id);
  check_error(req(&e, "GET", path), 400, "unknown_param", "verbose");
  env_fini(&e);
}

static void test_fibonacci(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 2);
  reply_t *r = req(&e, "GET", "/fibonacci/10");
  assert_int_equal(r->status, 200);
  assert_string_equal(r->body, "{\"n\":10,\"result\":55}\n");
  assert_string_equal(req(&e, "GET", "/fibonacci/0")->body, "{\"n\":0,\"result\":0}\n");
  assert_string_equal(req(&e, "GET", "/fibonacci/05")->body, "{\"n\":5,\"result\":5}\n");
  assert_string_equal(req(&e, "GET", "/fibonacci/30")->body, "{\"n\":30,\"result\":832040}\n");
  assert_int_equal(e.api.waiters, 0);
  /* The job is an ordinary one. */
  job_t *j = newest_job(&e);
  assert_string_equal(j->def->name, "fibonacci");
  assert_int_equal(j->status, JOB_COMPLETE);

  r = req(&e, "GET", "/fibonacci/93");
  check_error(r, 400, "invalid_param", "n");
  assert_string_equal(r->body, "{\"error\":{\"code\":\"invalid_param\",\"message\":\"n must be an integer from 0 to 92; "
                               "got \\\"93\\\".\",\"param\":\"n\"}}\n");
  const char *bad[] = {"/fibonacci/-1", "/fibonacci/%31", "/fibonacci/abc", "/fibonacci/+5", "/fibonacci/1.0",
                       "/fibonacci/99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    check_error(req(&e, "GET", bad[i]), 400, "invalid_param", "n");
  char longn[300] = "/fibonacci/";
  memset(longn + strlen(longn), '1', 200);
  check_error(req(&e, "GET", longn), 400, "invalid_param", "n");
  assert_int_equal(registry_stats(e.reg)->submitted, 4);
  env_fini(&e);
}

/* Held until the job is final; pipelined requests are answered after it,
 * in order. */
static void test_fibonacci_held_pipelined(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  char blocker[JOB_ID_LEN + 1], path[80];
  blocker_start(&e, blocker);
  http_fake_send_str(e.c[0].f, "GET /fibonacci/12 HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  turns(&e, 20);
  assert_int_equal(http_fake_out_len(e.c[0].f), e.c[0].off); /* nothing since the blocker's 202 */
  assert_int_equal(e.api.waiters, 1);
  assert_int_equal(newest_job(&e)->status, JOB_QUEUED);
  snprintf(path, sizeof path, "/jobs/%s", blocker);
  assert_int_equal(creq(&e, 1, "DELETE", path)->status, 202);
  reply_t *r = client_wait(&e, &e.c[0], false);
  assert_int_equal(r->status, 200);
  assert_string_equal(r->body, "{\"n\":12,\"result\":144}\n");
  assert_int_equal(client_wait(&e, &e.c[0], false)->status, 200);
  check_error(client_wait(&e, &e.c[0], false), 404, "not_found", NULL);
  assert_int_equal(e.api.waiters, 0);
  env_fini(&e);
}

/* The client half-closes while its job is queued: the job is canceled. */
static void test_fibonacci_client_leaves_queued(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1];
  blocker_start(&e, blocker);
  http_fake_send_str(e.c[0].f, "GET /fibonacci/20 HTTP/1.1\r\n\r\n");
  turns(&e, 5);
  job_t *j = newest_job(&e);
  snprintf(id, sizeof id, "%s", j->id);
  assert_int_equal(j->status, JOB_QUEUED);
  assert_int_equal(e.api.waiters, 1);
  http_fake_eof(e.c[0].f);
  POLL(&e.loop, true, http_fake_closed(e.c[0].f));
  assert_int_equal(e.api.waiters, 0);
  j = registry_get(e.reg, id);
  assert_int_equal(j->status, JOB_CANCELED);
  assert_int_equal(http_fake_out_len(e.c[0].f), e.c[0].off); /* nobody to answer */
  assert_string_equal(j->err_message, "The job was canceled by a client request.");
  assert_int_equal(j->started_at, 0);
  assert_int_equal(job_status_of(&e, blocker), JOB_PROCESSING);
  env_fini(&e);
}

/* The client half-closes while its job runs: the worker is told to stop. */
static void test_fibonacci_client_leaves_running(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char id[JOB_ID_LEN + 1];
  http_fake_send_str(e.c[0].f, "GET /fibonacci/90 HTTP/1.1\r\n\r\n");
  snprintf(id, sizeof id, "%s", newest_job(&e)->id);
  wait_processing(&e, id);
  http_fake_eof(e.c[0].f);
  POLL(&e.loop, true, http_fake_closed(e.c[0].f));
  wait_job_done(&e, id);
  job_t *j = registry_get(e.reg, id);
  assert_int_equal(j->status, JOB_CANCELED);
  assert_string_equal(j->err_code, "canceled");
  assert_int_equal(e.api.waiters, 0);
  env_fini(&e);
}

/* Another client DELETEs the job: 409 canceled. */
static void test_fibonacci_deleted(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  char path[80];
  http_fake_send_str(e.c[0].f, "GET /fibonacci/90 HTTP/1.1\r\n\r\n");
  job_t *j = newest_job(&e);
  snprintf(path, sizeof path, "/jobs/%s", j->id);
  wait_processing(&e, j->id);
  assert_int_equal(creq(&e, 1, "DELETE", path)->status, 202);
  reply_t *r = client_wait(&e, &e.c[0], false);
  check_error(r, 409, "canceled", NULL);
  assert_string_equal(r->body, "{\"error\":{\"code\":\"canceled\",\"message\":\"The job was canceled by a client "
                               "request.\"}}\n");
  env_fini(&e);
}

/* The default job timeout fails it: 500 with the job's own code. */
static void test_fibonacci_timeout(void **state) {
  (void)state;
  env_t e;
  env_init_cfg(&e, 1, 100, 5);
  reply_t *r = req(&e, "GET", "/fibonacci/90");
  check_error(r, 500, "timeout", NULL);
  assert_string_equal(r->body, "{\"error\":{\"code\":\"timeout\",\"message\":\"The job ran longer than its timeout "
                               "of 5 ms.\"}}\n");
  env_fini(&e);
}

/* Shutdown: submissions get 503 (parameters are checked first); a held
 * /fibonacci whose job the drain cancels gets 503 canceled. */
static void test_shutdown(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  http_fake_send_str(e.c[1].f, "GET /fibonacci/90 HTTP/1.1\r\n\r\n");
  job_t *j = newest_job(&e);
  wait_processing(&e, j->id);
  registry_drain(e.reg);
  check_error(post_job(&e, "{\"task\":\"spin\",\"params\":{\"ms\":1}}"), 503, "shutting_down", NULL);
  assert_string_equal(err_message(&e.c[0].r), "The server is shutting down and accepts no new jobs.");
  check_error(req(&e, "GET", "/fibonacci/5"), 503, "shutting_down", NULL);
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=5"), 503, "shutting_down", NULL);
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=0"), 400, "invalid_param", "heavyIterations");
  check_error(post_job(&e, "{\"task\":\"spin\"}"), 400, "missing_param", "params.ms");
  assert_string_equal(jstr(req(&e, "GET", "/health")->json, "status"), "ok");
  registry_cancel_running(e.reg);
  reply_t *r = client_wait(&e, &e.c[1], false);
  check_error(r, 503, "canceled", NULL);
  assert_string_equal(err_message(r), "The server shut down before the job finished.");
  env_fini(&e);
}

/* A full queue: 429 with Retry-After: 1, on every submitting endpoint. */
static void test_queue_full(void **state) {
  (void)state;
  env_t e;
  env_init_cfg(&e, 1, 1, 0);
  char blocker[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
  blocker_start(&e, blocker);
  submit_spin(&e, 1, queued);
  reply_t *r = post_job(&e, "{\"task\":\"spin\",\"params\":{\"ms\":1}}");
  check_error(r, 429, "queue_full", NULL);
  assert_string_equal(rheader(r, "Retry-After"), "1");
  assert_string_equal(err_message(r), "The job queue is full; retry after a short wait.");
  check_error(req(&e, "GET", "/fibonacci/5"), 429, "queue_full", NULL);
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=5"), 429, "queue_full", NULL);
  assert_int_equal(e.api.waiters, 0);
  assert_int_equal(registry_stats(e.reg)->submitted, 2);
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_report_start),
      cmocka_unit_test(test_report_status),
      cmocka_unit_test(test_fibonacci),
      cmocka_unit_test(test_fibonacci_held_pipelined),
      cmocka_unit_test(test_fibonacci_client_leaves_queued),
      cmocka_unit_test(test_fibonacci_client_leaves_running),
      cmocka_unit_test(test_fibonacci_deleted),
      cmocka_unit_test(test_fibonacci_timeout),
      cmocka_unit_test(test_shutdown),
      cmocka_unit_test(test_queue_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
