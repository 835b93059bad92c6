/* api_jobs_test: POST /jobs, GET /jobs/<id> (?wait held replies), DELETE
 * /jobs/<id> and the GET /jobs listing (filters, limits, queue places, the
 * cached JSON of final jobs), on fake connections (api/api_test_env.h).
 *
 * Jobs are `spin` jobs. To keep a job queued, one worker runs a long
 * "blocker" spin that the test (or env_fini) cancels. Each test owns a
 * private loop; waits are on conditions, never on time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api_test_env.h"

static const char *const job_keys[] = {"id",        "task",       "params",    "status",     "progress",
                                       "result",    "error",      "queuePosition", "createdAt", "startedAt",
                                       "finishedAt", "attempts"};

/* The job object's fields, in the documented order. */
static void check_job_shape(const json_t *o) {
  assert_true(json_is_object(o));
  assert_int_equal(json_object_size(o), 12);
  size_t i = 0;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)o, key, v) assert_string_equal(key, job_keys[i++]);
  const char *id = jstr(o, "id");
  assert_int_equal(strlen(id), JOB_ID_LEN);
  assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), JOB_ID_LEN);
  assert_true(json_is_real(json_object_get(o, "progress")));
  assert_true(json_is_integer(json_object_get(o, "createdAt")));
}

/* A long spin on the only worker, processing once this returns. */
static const char *start_blocker(env_t *e, char id[JOB_ID_LEN + 1]) {
  submit_spin(e, 600000, id);
  wait_processing(e, id);
  return id;
}

static void test_post_accepted(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1];
  start_blocker(&e, blocker);
  reply_t *r = post_job(&e, "{\"task\":\"spin\",\"params\":{\"ms\":1}}");
  assert_int_equal(r->status, 202);
  check_job_shape(r->json);
  char loc[64];
  snprintf(loc, sizeof loc, "/jobs/%s", jstr(r->json, "id"));
  assert_string_equal(rheader(r, "Location"), loc);
  assert_string_equal(jstr(r->json, "task"), "spin");
  assert_string_equal(jstr(r->json, "status"), "queued");
  assert_non_null(strstr(r->body, ",\"progress\":0.0,")); /* always with a fraction */
  assert_true(json_is_null(json_object_get(r->json, "result")));
  assert_true(json_is_null(json_object_get(r->json, "error")));
  assert_int_equal(json_integer_value(json_object_get(r->json, "queuePosition")), 1);
  assert_true(json_is_null(json_object_get(r->json, "startedAt")));
  assert_true(json_is_null(json_object_get(r->json, "finishedAt")));
  assert_non_null(strstr(r->body, ",\"params\":{\"ms\":1},"));
  assert_int_equal(r->body[r->body_len - 1], '\n');
  assert_ptr_equal(strchr(r->body, '\n'), r->body + r->body_len - 1); /* one line */

  /* Media type: any case, parameters allowed; timeoutMs bounds. */
  r = post(&e, "/jobs", "Application/JSON; charset=utf-8", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":1}");
  assert_int_equal(r->status, 202);
  assert_int_equal(json_integer_value(json_object_get(r->json, "queuePosition")), 2);
  assert_null(json_object_get(r->json, "timeoutMs")); /* not part of the object */
  r = post_job(&e, "{\"timeoutMs\":2147483647,\"params\":{\"ms\":2},\"task\":\"spin\"}");
  assert_int_equal(r->status, 202);
  assert_int_equal(json_integer_value(json_object_get(r->json, "queuePosition")), 3);
  assert_int_equal(registry_stats(e.reg)->submitted, 4);
  env_fini(&e);
}

static void test_post_errors(void **state) {
  (void)state;
  static const struct {
    const char *ctype, *body;
    int status;
    const char *code, *param;
  } cases[] = {
      {NULL, "{\"task\":\"spin\",\"params\":{\"ms\":1}}", 415, "unsupported_media_type", NULL},
      {"text/plain", "{\"task\":\"spin\",\"params\":{\"ms\":1}}", 415, "unsupported_media_type", NULL},
      {"application/jsonx", "{}", 415, "unsupported_media_type", NULL},
      {"application/x-www-form-urlencoded", "task=spin", 415, "unsupported_media_type", NULL},
      {NULL, "{", 415, "unsupported_media_type", NULL}, /* the type is checked first */
      {"application/json", "", 400, "invalid_json", NULL},
      {"application/json", "{", 400, "invalid_json", NULL},
      {"application/json", "{\"task\":\"spin\"} x", 400, "invalid_json", NULL},
      {"application/json", "5", 400, "invalid_body", NULL},
      {"application/json", "\"spin\"", 400, "invalid_body", NULL},
      {"application/json", "null", 400, "invalid_body", NULL},
      {"application/json", "[{\"task\":\"spin\"}]", 400, "invalid_body", NULL},
      {"application/json", "{\"x\":1}", 400, "unknown_param", "x"}, /* before task */
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"priority\":1}", 400, "unknown_param",
       "priority"},
      {"application/json", "{}", 400, "missing_param", "task"},
      {"application/json", "{\"params\":{\"ms\":1}}", 400, "missing_param", "task"},
      {"application/json", "{\"task\":5}", 400, "invalid_param", "task"},
      {"application/json", "{\"task\":null}", 400, "invalid_param", "task"},
      {"application/json", "{\"task\":\"Spin\"}", 400, "unknown_task", "task"},
      {"application/json", "{\"task\":\"sleep\",\"params\":5}", 400, "unknown_task", "task"},
      {"application/json", "{\"task\":\"spin\",\"params\":[]}", 400, "invalid_param", "params"},
      {"application/json", "{\"task\":\"spin\",\"params\":5,\"timeoutMs\":0}", 400, "invalid_param", "params"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":0},\"timeoutMs\":0}", 400, "invalid_param",
       "timeoutMs"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":2147483648}", 400,
       "invalid_param", "timeoutMs"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":-1}", 400, "invalid_param",
       "timeoutMs"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":1.5}", 400, "invalid_param",
       "timeoutMs"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":\"5\"}", 400, "invalid_param",
       "timeoutMs"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":null}", 400, "invalid_param",
       "timeoutMs"},
      {"application/json", "{\"task\":\"spin\"}", 400, "missing_param", "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{}}", 400, "missing_param", "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":5.0}}", 400, "invalid_param", "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":\"5\"}}", 400, "invalid_param", "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":600001}}", 400, "invalid_param", "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1,\"x\":2}}", 400, "unknown_param", "params.x"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"x\":2}}", 400, "missing_param", "params.ms"},
      {"application/json", "{\"task\":\"fibonacci\",\"params\":{\"n\":93}}", 400, "invalid_param", "params.n"},
      /* Integers beyond int64 name their field. */
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":99999999999999999999}}", 400, "invalid_param",
       "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":-99999999999999999999}}", 400, "invalid_param",
       "params.ms"},
      {"application/json", "{\"task\":\"spin\",\"params\":{\"ms\":1},\"timeoutMs\":9223372036854775808}", 400,
       "invalid_param", "timeoutMs"},
      {"application/json", "{\"task\":\"primes\",\"params\":{\"max\":18446744073709551616}}", 400, "invalid_param",
       "params.max"},
  };
  env_t e;
  env_init(&e, 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    reply_t *r = post(&e, "/jobs", cases[i].ctype, cases[i].body);
    if (r->status != cases[i].status || strcmp(jstr(json_object_get(r->json, "error"), "code"), cases[i].code))
      fail_msg("case %zu %s: %d %s", i, cases[i].body, r->status, r->body);
    check_error(r, cases[i].status, cases[i].code, cases[i].param);
  }
  assert_int_equal(registry_stats(e.reg)->submitted, 0);

  /* Messages from the contract. */
  reply_t *r = post_job(&e, "{\"task\":\"spin\",\"task\":\"spin\",\"params\":{\"ms\":5}}");
  assert_string_equal(err_message(r), "Malformed JSON at line 1, column 21: duplicate object key near '\"task\"'.");
  r = post_job(&e, "{\"task\":\"sleep\"}");
  assert_string_equal(err_message(r), "Unknown task \"sleep\"; known tasks: report, fibonacci, primes, spin, password-hash, password-verify, pdf, stats, image.");
  r = post_job(&e, "{\"task\":\"spin\",\"params\":{\"ms\":0}}");
  assert_string_equal(err_message(r), "params.ms must be an integer from 1 to 600000; got 0.");
  r = post(&e, "/jobs", NULL, "{}");
  assert_string_equal(err_message(r), "POST /jobs takes a JSON body: send Content-Type: application/json.");
  r = post_job(&e, "{\n  \"task\": }");
  assert_non_null(strstr(err_message(r), "Malformed JSON at line 2, column "));
  env_fini(&e);
}

/* POSTs `body` on a fresh env and checks the error after tearing the env
 * down, so a failing check leaks nothing (these two tests fail on purpose
 * until jobs.c follows the contract). */
static void post_expect_after_fini(const char *body, const char *code, const char *param) {
  env_t e;
  env_init(&e, 1);
  reply_t *r = post_job(&e, body);
  int status = r->status;
  char got_code[64] = "", got_param[64] = "", got_body[512];
  json_t *err = json_object_get(r->json, "error");
  snprintf(got_code, sizeof got_code, "%s", jstr(err, "code") ? jstr(err, "code") : "");
  snprintf(got_param, sizeof got_param, "%s", jstr(err, "param") ? jstr(err, "param") : "");
  snprintf(got_body, sizeof got_body, "%s", r->body);
  env_fini(&e);
  if (status != 400 || strcmp(got_code, code) != 0 || strcmp(got_param, param) != 0)
    fail_msg("want 400 %s param %s; got %d %s", code, param, status, got_body);
}

/* The contract's check order puts unknown top-level fields (step 5) before
 * every value check, whatever the value: an integer beyond int64 in an
 * unknown field is still unknown_param. */
static void test_post_huge_integer_in_unknown_field(void **state) {
  (void)state;
  post_expect_after_fini("{\"task\":\"spin\",\"params\":{\"ms\":1},\"bogus\":99999999999999999999}",
                         "unknown_param", "bogus");
}

/* Valid JSON (RFC 8259 sets no integer range) with a too-big integer below
 * the first level: "invalid_json" is for bodies that are not JSON; the
 * parameter is at fault (invalid_param, param names it). */
static void test_post_huge_integer_nested(void **state) {
  (void)state;
  post_expect_after_fini("{\"task\":\"spin\",\"params\":{\"ms\":[99999999999999999999]}}", "invalid_param",
                         "params.ms");
}

static void test_get_job(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  reply_t *r = req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA");
  check_error(r, 404, "not_found", NULL);
  assert_string_equal(err_message(r), "No job with that id (it may never have existed or has expired).");
  char longid[200] = "/jobs/";
  memset(longid + 6, 'A', 150);
  check_error(req(&e, "GET", longid), 404, "not_found", NULL);
  /* wait is checked before the id is looked up. */
  r = req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=0");
  check_error(r, 400, "invalid_param", "wait");
  assert_string_equal(err_message(r), "wait must be an integer from 1 to 60; got \"0\".");
  check_error(req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=61"), 400, "invalid_param", "wait");
  check_error(req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait="), 400, "invalid_param", "wait");
  check_error(req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?wait=1"), 404, "not_found", NULL);

  char id[JOB_ID_LEN + 1], path[80];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  snprintf(path, sizeof path, "/jobs/%s", id);
  r = req(&e, "GET", path);
  assert_int_equal(r->status, 200);
  check_job_shape(r->json);
  assert_string_equal(jstr(r->json, "id"), id);
  assert_string_equal(jstr(r->json, "status"), "complete");
  assert_non_null(strstr(r->body, ",\"progress\":1.0,"));
  assert_non_null(strstr(r->body, ",\"result\":null,\"error\":null,\"queuePosition\":null,"));
  assert_true(json_integer_value(json_object_get(r->json, "startedAt")) >=
              json_integer_value(json_object_get(r->json, "createdAt")));
  assert_true(json_integer_value(json_object_get(r->json, "finishedAt")) >=
              json_integer_value(json_object_get(r->json, "startedAt")));
  /* A final job's ?wait answers at once. */
  snprintf(path, sizeof path, "/jobs/%s?wait=60", id);
  assert_int_equal(req(&e, "GET", path)->status, 200);
  assert_int_equal(e.api.waiters, 0);
  env_fini(&e);
}

/* A held ?wait is answered when the job finishes, not before. */
static void test_wait_until_final(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1], path[80];
  start_blocker(&e, blocker);
  submit_spin(&e, 5, id);
  snprintf(path, sizeof path, "GET /jobs/%s?wait=60 HTTP/1.1\r\n\r\n", id);
  http_fake_send_str(e.c[0].f, path);
  turns(&e, 20);
  assert_false(client_try_read(&e.c[0], false));
  assert_int_equal(e.api.waiters, 1);
  reply_t *m = creq(&e, 1, "GET", "/metrics");
  assert_non_null(strstr(m->body, "\noffload_held_replies 1\n"));
  /* Free the worker: the job runs, finishes, and the held reply goes out. */
  snprintf(path, sizeof path, "/jobs/%s", blocker);
  assert_int_equal(creq(&e, 1, "DELETE", path)->status, 202);
  reply_t *r = client_wait(&e, &e.c[0], false);
  assert_int_equal(r->status, 200);
  assert_string_equal(jstr(r->json, "id"), id);
  assert_string_equal(jstr(r->json, "status"), "complete");
  assert_int_equal(e.api.waiters, 0);
  /* The connection goes on. */
  assert_int_equal(req(&e, "GET", "/health")->status, 200);
  env_fini(&e);
}

/* DELETE of a queued job: 200 canceled; its held ?wait gets the final job;
 * a second DELETE is 409. */
static void test_delete_queued(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  env_open(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1], path[80];
  start_blocker(&e, blocker);
  submit_spin(&e, 5, id);
  snprintf(path, sizeof path, "GET /jobs/%s?wait=60 HTTP/1.1\r\n\r\n", id);
  http_fake_send_str(e.c[0].f, path);
  turns(&e, 10);
  assert_int_equal(e.api.waiters, 1);
  snprintf(path, sizeof path, "/jobs/%s", id);
  reply_t *r = creq(&e, 1, "DELETE", path);
  assert_int_equal(r->status, 200);
  check_job_shape(r->json);
  assert_string_equal(jstr(r->json, "status"), "canceled");
  assert_string_equal(r->body + strlen(r->body) - 1, "\n");
  json_t *err = json_object_get(r->json, "error");
  assert_string_equal(jstr(err, "code"), "canceled");
  assert_string_equal(jstr(err, "message"), "The job was canceled by a client request.");
  assert_true(json_is_null(json_object_get(r->json, "startedAt")));
  assert_true(json_is_integer(json_object_get(r->json, "finishedAt")));
  assert_non_null(strstr(r->body, ",\"progress\":0.0,"));
  char canceled_body[1024];
  snprintf(canceled_body, sizeof canceled_body, "%s", r->body);

  r = client_wait(&e, &e.c[0], false); /* the held ?wait */
  assert_int_equal(r->status, 200);
  assert_string_equal(r->body, canceled_body);
  assert_int_equal(e.api.waiters, 0);

  r = creq(&e, 1, "DELETE", path);
  check_error(r, 409, "already_finished", NULL);
  assert_string_equal(err_message(r), "The job is already canceled.");
  check_error(creq(&e, 1, "DELETE", "/jobs/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not_found", NULL);
  env_fini(&e);
}

/* DELETE of a running job: 202 (processing, or canceled already), then canceled; 409 on a
 * finished one. */
static void test_delete_running_and_finished(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1], done[JOB_ID_LEN + 1], path[80];
  submit_spin(&e, 1, done);
  wait_job_done(&e, done);
  snprintf(path, sizeof path, "/jobs/%s", done);
  reply_t *r = req(&e, "DELETE", path);
  check_error(r, 409, "already_finished", NULL);
  assert_string_equal(err_message(r), "The job is already complete.");

  start_blocker(&e, blocker);
  snprintf(path, sizeof path, "/jobs/%s", blocker);
  r = req(&e, "DELETE", path);
  assert_int_equal(r->status, 202);
  /* Usually still processing; the spin checks its flag every few µs, so on
   * a loaded machine it may have stopped before the reply was built. */
  const char *st = jstr(r->json, "status");
  assert_true(strcmp(st, "processing") == 0 || strcmp(st, "canceled") == 0);
  if (strcmp(st, "processing") == 0)
    assert_true(json_is_null(json_object_get(r->json, "error")));
  wait_job_done(&e, blocker);
  r = req(&e, "GET", path);
  assert_string_equal(jstr(r->json, "status"), "canceled");
  assert_string_equal(jstr(json_object_get(r->json, "error"), "message"), "The job was canceled by a client request.");
  assert_true(json_is_integer(json_object_get(r->json, "startedAt")));
  check_error(req(&e, "DELETE", path), 409, "already_finished", NULL);
  env_fini(&e);
}

/* A ?wait whose client leaves: the wait ends, the job is not affected. */
static void test_wait_client_leaves(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1], raw[80];
  start_blocker(&e, blocker);
  submit_spin(&e, 5, id);
  snprintf(raw, sizeof raw, "GET /jobs/%s?wait=60 HTTP/1.1\r\n\r\n", id);
  http_fake_send_str(e.c[0].f, raw);
  turns(&e, 10);
  assert_int_equal(e.api.waiters, 1);
  http_fake_eof(e.c[0].f);
  POLL(&e.loop, true, http_fake_closed(e.c[0].f));
  assert_int_equal(e.api.waiters, 0);
  assert_int_equal(job_status_of(&e, id), JOB_QUEUED);
  assert_int_equal(job_status_of(&e, blocker), JOB_PROCESSING);
  env_fini(&e);
}

/* ?wait=1 on a job that stays queued: 200 with the job as it is then. */
static void test_wait_times_out(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char blocker[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1], path[80];
  start_blocker(&e, blocker);
  submit_spin(&e, 5, id);
  snprintf(path, sizeof path, "/jobs/%s?wait=1", id);
  int64_t t0 = clock_mono_ms();
  reply_t *r = req(&e, "GET", path);
  assert_true(clock_mono_ms() - t0 >= 990);
  assert_int_equal(r->status, 200);
  assert_string_equal(jstr(r->json, "status"), "queued");
  assert_int_equal(json_integer_value(json_object_get(r->json, "queuePosition")), 1);
  assert_int_equal(e.api.waiters, 0);
  env_fini(&e);
}

static void check_list_ids(const reply_t *r, const char *const *ids, size_t n) {
  assert_int_equal(r->status, 200);
  json_t *jobs = json_object_get(r->json, "jobs");
  assert_int_equal(json_object_size(r->json), 1);
  if (json_array_size(jobs) != n)
    fail_msg("%zu jobs, want %zu: %s", json_array_size(jobs), n, r->body);
  for (size_t i = 0; i < n; i++) {
    check_job_shape(json_array_get(jobs, i));
    assert_string_equal(jstr(json_array_get(jobs, i), "id"), ids[i]);
  }
}

static json_int_t list_place(const reply_t *r, size_t i) {
  return json_integer_value(json_object_get(json_array_get(json_object_get(r->json, "jobs"), i), "queuePosition"));
}

static void test_list(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char c1[JOB_ID_LEN + 1], c2[JOB_ID_LEN + 1], c3[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1], q1[JOB_ID_LEN + 1],
      q2[JOB_ID_LEN + 1];
  check_list_ids(req(&e, "GET", "/jobs"), NULL, 0);
  assert_string_equal(e.c[0].r.body, "{\"jobs\":[]}\n");
  submit_spin(&e, 1, c1);
  wait_job_done(&e, c1);
  submit_spin(&e, 1, c2);
  wait_job_done(&e, c2);
  submit_spin(&e, 1, c3);
  wait_job_done(&e, c3);
  start_blocker(&e, b);
  submit_spin(&e, 1, q1);
  submit_spin(&e, 1, q2);

  const char *all[] = {q2, q1, b, c3, c2, c1};
  reply_t *r = req(&e, "GET", "/jobs");
  check_list_ids(r, all, 6);
  assert_int_equal(list_place(r, 0), 2);
  assert_int_equal(list_place(r, 1), 1);
  assert_int_equal(list_place(r, 2), 0); /* null */
  check_list_ids(req(&e, "GET", "/jobs?limit=2"), all, 2);
  check_list_ids(req(&e, "GET", "/jobs?limit=1000"), all, 6);
  check_list_ids(req(&e, "GET", "/jobs?status=complete"), all + 3, 3);
  check_list_ids(req(&e, "GET", "/jobs?status=complete&limit=1"), all + 3, 1);
  check_list_ids(req(&e, "GET", "/jobs?limit=2&status=complete"), all + 3, 2);
  r = req(&e, "GET", "/jobs?status=queued");
  check_list_ids(r, all, 2);
  assert_int_equal(list_place(r, 0), 2);
  assert_int_equal(list_place(r, 1), 1);
  check_list_ids(req(&e, "GET", "/jobs?status=processing"), all + 2, 1);
  check_list_ids(req(&e, "GET", "/jobs?status=failed"), NULL, 0);
  check_list_ids(req(&e, "GET", "/jobs?status=canceled"), NULL, 0);

  r = req(&e, "GET", "/jobs?status=done");
  check_error(r, 400, "invalid_param", "status");
  assert_string_equal(r->body, "{\"error\":{\"code\":\"invalid_param\",\"message\":\"status must be one of queued, "
                               "processing, complete, failed, canceled.\",\"param\":\"status\"}}\n");
  check_error(req(&e, "GET", "/jobs?status=Complete"), 400, "invalid_param", "status");
  check_error(req(&e, "GET", "/jobs?status="), 400, "invalid_param", "status");
  check_error(req(&e, "GET", "/jobs?limit=0"), 400, "invalid_param", "limit");
  check_error(req(&e, "GET", "/jobs?limit=1001"), 400, "invalid_param", "limit");
  check_error(req(&e, "GET", "/jobs?limit=-1"), 400, "invalid_param", "limit");
  env_fini(&e);
}

/* Final jobs are listed from their cached text, which is byte-identical to
 * GET /jobs/<id>. */
static void test_list_cache(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  char id[JOB_ID_LEN + 1], failed[JOB_ID_LEN + 1], path[80];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  reply_t *r = post_job(&e, "{\"task\":\"spin\",\"params\":{\"ms\":600000},\"timeoutMs\":5}");
  assert_int_equal(r->status, 202);
  snprintf(failed, sizeof failed, "%s", jstr(r->json, "id"));
  wait_job_done(&e, failed);
  job_t *j = registry_get(e.reg, id), *jf = registry_get(e.reg, failed);
  assert_null(j->json_cache); /* nobody serialized it final yet */
  assert_null(jf->json_cache);

  r = req(&e, "GET", "/jobs?status=complete&limit=1");
  assert_int_equal(r->status, 200);
  assert_non_null(j->json_cache);
  assert_int_equal(r->body_len, strlen("{\"jobs\":[") + j->json_cache_len + strlen("]}\n"));
  assert_memory_equal(r->body + strlen("{\"jobs\":["), j->json_cache, j->json_cache_len);
  char *listed = strndup(r->body + strlen("{\"jobs\":["), j->json_cache_len);
  snprintf(path, sizeof path, "/jobs/%s", id);
  r = req(&e, "GET", path);
  assert_int_equal(r->body_len, strlen(listed) + 1);
  assert_memory_equal(r->body, listed, strlen(listed));
  free(listed);

  /* The failed job: its own GET first, then the listing reuses the text. */
  snprintf(path, sizeof path, "/jobs/%s", failed);
  r = req(&e, "GET", path);
  assert_string_equal(jstr(r->json, "status"), "failed");
  json_t *err = json_object_get(r->json, "error");
  assert_string_equal(jstr(err, "code"), "timeout");
  assert_string_equal(jstr(err, "message"), "The job ran longer than its timeout of 5 ms.");
  assert_non_null(jf->json_cache);
  char *got = strndup(r->body, r->body_len - 1);
  r = req(&e, "GET", "/jobs?status=failed");
  assert_memory_equal(r->body + strlen("{\"jobs\":["), got, strlen(got));
  free(got);

  /* Served from the cache, not rebuilt: replace it and see it listed. */
  free(j->json_cache);
  j->json_cache = strdup("{\"cached\":true}");
  j->json_cache_len = strlen(j->json_cache);
  r = req(&e, "GET", "/jobs?status=complete");
  assert_string_equal(r->body, "{\"jobs\":[{\"cached\":true}]}\n");
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_post_accepted),
      cmocka_unit_test(test_post_errors),
      cmocka_unit_test(test_post_huge_integer_in_unknown_field),
      cmocka_unit_test(test_post_huge_integer_nested),
      cmocka_unit_test(test_get_job),
      cmocka_unit_test(test_wait_until_final),
      cmocka_unit_test(test_delete_queued),
      cmocka_unit_test(test_delete_running_and_finished),
      cmocka_unit_test(test_wait_client_leaves),
      cmocka_unit_test(test_wait_times_out),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_list_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
