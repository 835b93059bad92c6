/* api_routes_test: the route table and what every endpoint shares, on fake
 * connections (api/api_test_env.h): 404 and 405 with Allow, HEAD rules,
 * query-string rules (unknown, repeated, %00, malformed), client bytes that
 * are not UTF-8 echoed as valid JSON, errors from the http layer (431, 413,
 * 400, refused before 100 Continue), and /health, /tasks, /metrics.
 *
 * Each test owns a private loop; waits are on conditions, never on time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api_test_env.h"

#define U_FFFD "\xef\xbf\xbd"

static void test_not_found(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  reply_t *r = req(&e, "GET", "/nope");
  check_error(r, 404, "not_found", NULL);
  assert_string_equal(r->body, "{\"error\":{\"code\":\"not_found\",\"message\":\"There is no endpoint at /nope.\"}}\n");
  assert_non_null(strstr(r->head, "Content-Type: application/json\r\n"));
  /* Whatever the method; paths are exact and not percent-decoded. */
  const char *paths[] = {"/jobs/", "/fibonacci/10/", "/fibonacci/", "/health/", "/tasks/reports/", "/%6Aobs", "//", "/index.html"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    check_error(req(&e, "GET", paths[i]), 404, "not_found", NULL);
  check_error(req(&e, "DELETE", "/nope"), 404, "not_found", NULL);
  check_error(req(&e, "PUT", "/jobs/a/b"), 404, "not_found", NULL);
  /* The absolute form is routed on its path. */
  check_error(req(&e, "GET", "http://host/nope"), 404, "not_found", NULL);
  assert_int_equal(req(&e, "GET", "http://host/health")->status, 200);
  env_fini(&e);
}

static void test_method_not_allowed(void **state) {
  (void)state;
  static const struct {
    const char *method, *path, *allow;
  } cases[] = {
      {"PUT", "/jobs", "GET, HEAD, POST"},
      {"DELETE", "/jobs", "GET, HEAD, POST"},
      {"OPTIONS", "/jobs", "GET, HEAD, POST"},
      {"PATCH", "/jobs/abc", "GET, HEAD, POST, DELETE"}, /* POST: an upload to task abc */
      {"POST", "/health", "GET, HEAD"},
      {"DELETE", "/tasks", "GET, HEAD"},
      {"PUT", "/metrics", "GET, HEAD"},
      {"POST", "/tasks/reports/abc", "GET, HEAD"},
      {"POST", "/tasks/reports/start", "GET"},
      {"HEAD", "/tasks/reports/start?heavyIterations=5", "GET"},
      {"HEAD", "/fibonacci/5", "GET"},
      {"DELETE", "/fibonacci/5", "GET"},
  };
  env_t e;
  env_init(&e, 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    reply_t *r = req(&e, cases[i].method, cases[i].path);
    if (r->status != 405)
      fail_msg("%s %s: %d", cases[i].method, cases[i].path, r->status);
    const char *allow = rheader(r, "Allow");
    assert_non_null(allow);
    assert_string_equal(allow, cases[i].allow);
    if (strcmp(cases[i].method, "HEAD") == 0) {
      assert_int_equal(r->body_len, 0); /* the GET reply's head, no body */
      assert_non_null(rheader(r, "Content-Length"));
    } else {
      check_error(r, 405, "method_not_allowed", NULL);
    }
  }
  assert_int_equal(registry_stats(e.reg)->submitted, 0); /* HEAD started nothing */
  reply_t *r = req(&e, "PUT", "/jobs/igLyOlispbN07pvZrfIxfQ");
  assert_string_equal(err_message(r),
                      "PUT is not allowed on /jobs/igLyOlispbN07pvZrfIxfQ; allowed: GET, HEAD, POST, DELETE.");
  env_fini(&e);
}

/* HEAD: the GET reply's head, Content-Length included, and no body byte. */
static void test_head(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  const char *paths[] = {"/health", "/jobs", "/tasks", "/metrics"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    reply_t *r = req(&e, "HEAD", paths[i]);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 0);
    assert_non_null(rheader(r, "Content-Length"));
    assert_int_equal(e.c[0].off, http_fake_out_len(e.c[0].f));
  }
  char id[JOB_ID_LEN + 1];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  char path[64], cl[512];
  snprintf(path, sizeof path, "/jobs/%s", id);
  reply_t *r = req(&e, "GET", path);
  assert_int_equal(r->status, 200);
  snprintf(cl, sizeof cl, "%s", rheader(r, "Content-Length"));
  r = req(&e, "HEAD", path);
  assert_int_equal(r->status, 200);
  assert_int_equal(r->body_len, 0);
  assert_string_equal(rheader(r, "Content-Length"), cl);
  assert_int_equal(e.c[0].off, http_fake_out_len(e.c[0].f));
  snprintf(path, sizeof path, "/tasks/reports/%s", id);
  assert_int_equal(req(&e, "HEAD", path)->status, 200);
  assert_int_equal(req(&e, "HEAD", "/jobs/AAAAAAAAAAAAAAAAAAAAAA")->status, 404);
  assert_int_equal(req(&e, "HEAD", "/tasks/reports/AAAAAAAAAAAAAAAAAAAAAA")->status, 404);
  env_fini(&e);
}

static void test_query_rules(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  /* Unknown names, on every endpoint. */
  check_error(req(&e, "GET", "/health?x=1"), 400, "unknown_param", "x");
  check_error(req(&e, "GET", "/tasks?verbose"), 400, "unknown_param", "verbose");
  check_error(req(&e, "GET", "/metrics?a=b"), 400, "unknown_param", "a");
  check_error(req(&e, "GET", "/jobs?lmit=1"), 400, "unknown_param", "lmit");
  check_error(req(&e, "GET", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?x=1"), 400, "unknown_param", "x"); /* before the id */
  check_error(req(&e, "DELETE", "/jobs/AAAAAAAAAAAAAAAAAAAAAA?x=1"), 400, "unknown_param", "x");
  check_error(req(&e, "GET", "/tasks/reports/AAAAAAAAAAAAAAAAAAAAAA?x=1"), 400, "unknown_param", "x");
  check_error(req(&e, "GET", "/fibonacci/5?x=1"), 400, "unknown_param", "x");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations=5&x=1"), 400, "unknown_param", "x");
  check_error(post(&e, "/jobs?x=1", "application/json", "{}"), 400, "unknown_param", "x");
  /* Empty segments are skipped; '+' and %XX are decoded. */
  assert_int_equal(req(&e, "GET", "/jobs?&&limit=1&&")->status, 200);
  assert_int_equal(req(&e, "GET", "/jobs?st%61tus=queued")->status, 200);
  /* A name once only. */
  check_error(req(&e, "GET", "/jobs?limit=1&limit=2"), 400, "invalid_param", "limit");
  check_error(req(&e, "GET", "/jobs?status=queued&status=queued"), 400, "invalid_param", "status");
  /* NUL: `param` names the parameter cut at the NUL, or is left out. */
  reply_t *r = req(&e, "GET", "/jobs?status=queued%00junk");
  check_error(r, 400, "invalid_param", "status");
  assert_string_equal(r->body, "{\"error\":{\"code\":\"invalid_param\",\"message\":\"The query parameter \\\"status\\\" "
                               "holds a NUL byte (%00), which is never valid.\",\"param\":\"status\"}}\n");
  check_error(req(&e, "GET", "/tasks/reports/start?heavyIterations%00junk=1"), 400, "invalid_param",
              "heavyIterations");
  check_error(req(&e, "GET", "/jobs?%00x=1"), 400, "invalid_param", NULL);
  check_error(req(&e, "GET", "/health?a=%00"), 400, "invalid_param", "a");
  /* Malformed: a bad escape, too many names. */
  check_error(req(&e, "GET", "/jobs?limit=%zz"), 400, "invalid_param", "limit");
  char many[256] = "/health?";
  for (int i = 0; i < 17; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "p%d=1&", i);
  check_error(req(&e, "GET", many), 400, "invalid_param", "p16"); /* the 17th name */
  /* Strict integers. */
  const char *bad[] = {"+5", "1e6", "0x10", "1.5", "", "-0x", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char t[64];
    snprintf(t, sizeof t, "/jobs?limit=%s", bad[i]);
    check_error(req(&e, "GET", t), 400, "invalid_param", "limit");
  }
  assert_int_equal(req(&e, "GET", "/jobs?limit=0005")->status, 200);
  env_fini(&e);
}

/* Client bytes that are not UTF-8, echoed in message/param: 4xx, valid JSON
 * (check_error parses the body), U+FFFD in their place; never a 500. */
static void test_invalid_utf8_echo(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  reply_t *r = req(&e, "GET", "/jobs?st%E9tus=queued");
  check_error(r, 400, "unknown_param", "st" U_FFFD "tus");
  assert_string_equal(err_message(r), "This endpoint has no query parameter named \"st" U_FFFD "tus\".");
  check_error(req(&e, "GET", "/health?%FF%FE=1"), 400, "unknown_param", U_FFFD U_FFFD);
  check_error(req(&e, "GET", "/jobs?limit=%FF%C3"), 400, "invalid_param", "limit");
  check_error(req(&e, "GET", "/jobs?status=%E9"), 400, "invalid_param", "status");
  check_error(req(&e, "GET", "/jobs?wait%E9=1&%FFx%00=2"), 400, "invalid_param", U_FFFD "x"); /* cut at the NUL */
  /* A long name cut by "%.64s" in the middle of a character. */
  char t[512] = "/health?a";
  for (int i = 0; i < 60; i++)
    strcat(t, "%C3%A9");
  strcat(t, "=1");
  r = req(&e, "GET", t);
  assert_int_equal(r->status, 400);
  check_error(r, 400, "unknown_param", jstr(json_object_get(r->json, "error"), "param"));
  /* Raw bytes in the path. */
  r = req(&e, "GET", "/n\xe9pe\xff");
  check_error(r, 404, "not_found", NULL);
  assert_string_equal(err_message(r), "There is no endpoint at /n" U_FFFD "pe" U_FFFD ".");
  check_error(req(&e, "PUT", "/jobs/\xc3"), 405, "method_not_allowed", NULL);
  check_error(req(&e, "GET", "/fibonacci/\xe9\x80"), 400, "invalid_param", "n");
  check_error(req(&e, "GET", "/jobs/\xed\xa0\x80"), 404, "not_found", NULL);
  /* A body that is not UTF-8, and a task name cut mid-character. */
  check_error(post_job(&e, "{\"task\":\"sp\xffin\"}"), 400, "invalid_json", NULL);
  check_error(post_job(&e, "{\"ta\xe9sk\":1}"), 400, "invalid_json", NULL);
  char body[512] = "{\"task\":\"x";
  for (int i = 0; i < 40; i++)
    strcat(body, "\xc3\xa9");
  strcat(body, "\"}");
  check_error(post_job(&e, body), 400, "unknown_task", "task");
  strcpy(body, "{\"task\":\"spin\",\"params\":{\"ms\":1},\"k");
  for (int i = 0; i < 40; i++)
    strcat(body, "\xe2\x82\xac");
  strcat(body, "\":1}");
  r = post_job(&e, body);
  assert_int_equal(r->status, 400);
  assert_string_equal(jstr(json_object_get(r->json, "error"), "code"), "unknown_param");
  assert_non_null(r->json);
  env_fini(&e);
}

/* The connection closes after the reply: its half-close, then our EOF. */
static void expect_close(env_t *e, client_t *c) {
  assert_non_null(strstr(c->r.head, "Connection: close\r\n"));
  POLL(&e->loop, true, http_fake_shut(c->f));
  http_fake_eof(c->f);
  POLL(&e->loop, true, http_fake_closed(c->f));
}

static void test_http_layer_errors(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  /* Head over 16 KiB: 431. */
  size_t pad = 17000;
  char *raw = malloc(pad + 128);
  assert_non_null(raw);
  int n = snprintf(raw, 128, "GET /health HTTP/1.1\r\nX-Pad: ");
  memset(raw + n, 'x', pad);
  memcpy(raw + n + pad, "\r\n\r\n", 5);
  reply_t *r = client_raw(&e, &e.c[0], raw, strlen(raw));
  free(raw);
  check_error(r, 431, "header_too_large", NULL);
  assert_string_equal(err_message(r), "The request's header block is over the 16 KiB limit.");
  expect_close(&e, &e.c[0]);

  /* A declared body over --max-body: 413 before the body is read. */
  client_t *c = env_open(&e, 1);
  char head[256];
  n = snprintf(head, sizeof head,
               "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
               ENV_MAX_BODY + 1);
  r = client_raw(&e, c, head, (size_t)n);
  check_error(r, 413, "payload_too_large", NULL);
  assert_string_equal(err_message(r), "The request body is over the server's --max-body limit.");
  expect_close(&e, c);
  assert_int_equal(registry_stats(e.reg)->submitted, 0);

  /* Not HTTP: 400 bad_request naming the parser's error. */
  c = env_open(&e, 2);
  static const char bad[] = "GET / HTTP/9.9\r\n\r\n";
  r = client_raw(&e, c, bad, sizeof bad - 1);
  check_error(r, 400, "bad_request", NULL);
  assert_non_null(strstr(err_message(r), "HPE_"));
  expect_close(&e, c);
  env_fini(&e);
}

/* Expect: 100-continue to a path that does not exist, or a wrong method:
 * 404/405 in place of 100 Continue, the body never read. */
static void test_refused_before_continue(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  static const char raw[] = "POST /nope HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                            "Expect: 100-continue\r\n\r\n";
  reply_t *r = client_raw(&e, &e.c[0], raw, sizeof raw - 1);
  check_error(r, 404, "not_found", NULL);
  assert_null(strstr(http_fake_out(e.c[0].f), "100 Continue"));
  expect_close(&e, &e.c[0]);
  client_t *c = env_open(&e, 1);
  static const char put[] = "PUT /jobs HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
  r = client_raw(&e, c, put, sizeof put - 1);
  check_error(r, 405, "method_not_allowed", NULL);
  assert_string_equal(rheader(r, "Allow"), "GET, HEAD, POST");
  assert_null(strstr(http_fake_out(c->f), "100 Continue"));
  expect_close(&e, c);
  env_fini(&e);
}

static void test_health(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 2);
  reply_t *r = req(&e, "GET", "/health");
  assert_int_equal(r->status, 200);
  assert_non_null(r->json);
  assert_string_equal(jstr(r->json, "status"), "ok");
  json_t *w = json_object_get(r->json, "workers"), *q = json_object_get(r->json, "queue");
  assert_int_equal(json_integer_value(json_object_get(w, "total")), 2);
  assert_int_equal(json_integer_value(json_object_get(w, "busy")), 0);
  assert_int_equal(json_integer_value(json_object_get(q, "depth")), 0);
  assert_int_equal(json_integer_value(json_object_get(q, "capacity")), 100);
  assert_true(json_is_integer(json_object_get(r->json, "uptimeMs")));
  assert_true(json_integer_value(json_object_get(r->json, "uptimeMs")) >= 0);
  json_t *st = json_object_get(r->json, "store"); /* no store: memory, always ok */
  assert_string_equal(jstr(st, "kind"), "memory");
  assert_true(json_is_true(json_object_get(st, "ok")));
  assert_int_equal(json_object_size(r->json), 5);
  env_fini(&e);
}

/* GET /nodes without a cluster: this one node, alive, with its workers. */
static void test_nodes_single(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 2);
  reply_t *r = req(&e, "GET", "/nodes");
  assert_int_equal(r->status, 200);
  json_t *nodes = json_object_get(r->json, "nodes");
  assert_int_equal(json_array_size(nodes), 1);
  json_t *n = json_array_get(nodes, 0);
  assert_true(json_is_string(json_object_get(n, "id")));
  assert_true(json_is_string(json_object_get(n, "url")));
  assert_true(json_is_integer(json_object_get(n, "startedAt")));
  assert_true(json_integer_value(json_object_get(n, "lastHeartbeatAt")) >= json_integer_value(json_object_get(n, "startedAt")));
  assert_true(json_is_true(json_object_get(n, "alive")));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "workers"), "total")), 2);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "workers"), "busy")), 0);
  reply_t *q = req(&e, "GET", "/nodes?x=1");
  assert_int_equal(q->status, 400);
  env_fini(&e);
}

static void test_tasks(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  reply_t *r = req(&e, "GET", "/tasks");
  assert_int_equal(r->status, 200);
  json_t *tasks = json_object_get(r->json, "tasks");
  assert_int_equal(json_array_size(tasks), 9);
  static const struct {
    const char *name, *param;
    json_int_t min, max;
  } want[] = {{"report", "heavyIterations", 1, INT64_C(100000000000)},
              {"fibonacci", "n", 0, 92},
              {"primes", "max", 1, INT64_C(1000000000000)},
              {"spin", "ms", 1, 600000}};
  for (size_t i = 0; i < 4; i++) {
    json_t *t = json_array_get(tasks, i);
    assert_string_equal(jstr(t, "name"), want[i].name);
    assert_true(json_is_string(json_object_get(t, "description")));
    json_t *ps = json_object_get(t, "params");
    assert_int_equal(json_array_size(ps), 1);
    json_t *p = json_array_get(ps, 0);
    assert_string_equal(jstr(p, "name"), want[i].param);
    assert_string_equal(jstr(p, "type"), "integer");
    assert_true(json_is_true(json_object_get(p, "required")));
    assert_int_equal(json_integer_value(json_object_get(p, "min")), want[i].min);
    assert_int_equal(json_integer_value(json_object_get(p, "max")), want[i].max);
  }
  /* The typed params: a secret string with its length limit, an enum with
   * its default, an integer with bounds and default, a hex string. */
  json_t *ph = json_array_get(tasks, 4);
  assert_string_equal(jstr(ph, "name"), "password-hash");
  json_t *ps = json_object_get(ph, "params");
  json_t *pw = json_array_get(ps, 0), *algo = json_array_get(ps, 1), *iter = json_array_get(ps, 2);
  assert_string_equal(jstr(pw, "type"), "string");
  assert_true(json_is_true(json_object_get(pw, "secret")));
  assert_int_equal(json_integer_value(json_object_get(pw, "maxLength")), 1024);
  assert_int_equal(json_array_size(json_object_get(algo, "enum")), 3);
  assert_string_equal(jstr(algo, "default"), "pbkdf2-sha512");
  assert_int_equal(json_integer_value(json_object_get(iter, "default")), 210000);
  assert_int_equal(json_integer_value(json_object_get(iter, "min")), 1000);
  json_t *salt = json_array_get(ps, 6);
  assert_string_equal(jstr(salt, "name"), "salt");
  assert_string_equal(jstr(salt, "format"), "hex");
  assert_null(json_object_get(salt, "default"));
  env_fini(&e);
}

static void test_metrics(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  reply_t *r = req(&e, "GET", "/metrics");
  assert_int_equal(r->status, 200);
  assert_string_equal(rheader(r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  assert_null(r->json);
  assert_non_null(strstr(r->body, "\noffload_http_accept_failures_total 0\n"));
  assert_non_null(strstr(r->body, "# TYPE offload_http_accept_failures_total counter\n"));
  assert_non_null(strstr(r->body, "\noffload_jobs_submitted_total 0\n"));
  assert_non_null(strstr(r->body, "\noffload_jobs_total{task=\"spin\",status=\"complete\"} 0\n"));
  assert_non_null(strstr(r->body, "\noffload_queue_capacity 100\n"));
  assert_non_null(strstr(r->body, "\noffload_workers 1\n"));
  assert_non_null(strstr(r->body, "\noffload_held_replies 0\n"));
  assert_non_null(strstr(r->body, "\noffload_http_connections 1\n"));
  assert_non_null(strstr(r->body, "offload_event_loop_lag_seconds_bucket{le=\"+Inf\"} 0\n"));

  char id[JOB_ID_LEN + 1];
  submit_spin(&e, 1, id);
  wait_job_done(&e, id);
  check_error(req(&e, "GET", "/nope"), 404, "not_found", NULL);
  r = req(&e, "GET", "/metrics");
  assert_non_null(strstr(r->body, "\noffload_jobs_submitted_total 1\n"));
  assert_non_null(strstr(r->body, "\noffload_jobs_total{task=\"spin\",status=\"complete\"} 1\n"));
  assert_non_null(strstr(r->body, "\noffload_job_duration_seconds_count 1\n"));
  assert_non_null(strstr(r->body, "\noffload_http_requests_total{code=\"200\"} 1\n"));
  assert_non_null(strstr(r->body, "\noffload_http_requests_total{code=\"202\"} 1\n"));
  assert_non_null(strstr(r->body, "\noffload_http_requests_total{code=\"404\"} 1\n"));
  assert_int_equal(r->body[r->body_len - 1], '\n');
  env_fini(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_method_not_allowed),
      cmocka_unit_test(test_head),
      cmocka_unit_test(test_query_rules),
      cmocka_unit_test(test_invalid_utf8_echo),
      cmocka_unit_test(test_http_layer_errors),
      cmocka_unit_test(test_refused_before_continue),
      cmocka_unit_test(test_health),
      cmocka_unit_test(test_tasks),
      cmocka_unit_test(test_nodes_single),
      cmocka_unit_test(test_metrics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
