/* cli_test: the client's pure parts: the option parser (cli/args), the
 * typing of name=value words (cli/params), the event-stream parser
 * (cli/sse), the progress bar's text (cli/progress) and top's screen
 * (cli/top_view). No loop, no network (util/httpc_test has those). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/params.h"
#include "cli/progress.h"
#include "cli/sse.h"
#include "cli/top_view.h"
#include "util/err.h"

/* ---- args --------------------------------------------------------------- */

static const cli_opt_t opts[] = {
    {"file", 'f', "PATH", ""},
    {"wait", 'w', NULL, ""},
    {"limit", 'n', "N", ""},
    {"json", 0, NULL, ""},
};
#define NOPTS 4

static int parse(cli_args_t *a, char *err, int argc, ...) {
  char *argv[16];
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++)
    argv[i] = va_arg(ap, char *);
  va_end(ap);
  return cli_args_parse(opts, NOPTS, argc, argv, a, err, 128);
}

static void test_args_forms(void **state) {
  (void)state;
  cli_args_t a;
  char err[128];
  assert_int_equal(parse(&a, err, 7, "spin", "--file", "x.csv", "ms=5", "-w", "--limit=3", "b=2"), 0);
  assert_int_equal(a.npos, 3);
  assert_string_equal(a.pos[0], "spin");
  assert_string_equal(a.pos[1], "ms=5");
  assert_string_equal(a.pos[2], "b=2");
  assert_string_equal(a.val[0], "x.csv");
  assert_string_equal(a.val[1], "");
  assert_string_equal(a.val[2], "3");
  assert_null(a.val[3]);
  /* short with a value, "-" positional, "--" ends options */
  assert_int_equal(parse(&a, err, 6, "-f", "-", "-", "--", "--json", "-w"), 0);
  assert_string_equal(a.val[0], "-");
  assert_null(a.val[1]);
  assert_null(a.val[3]);
  assert_int_equal(a.npos, 3);
  assert_string_equal(a.pos[0], "-");
  assert_string_equal(a.pos[1], "--json");
  assert_string_equal(a.pos[2], "-w");
  /* an empty value is a value */
  assert_int_equal(parse(&a, err, 1, "--file="), 0);
  assert_string_equal(a.val[0], "");
}

static void test_args_errors(void **state) {
  (void)state;
  cli_args_t a;
  char err[128];
  assert_int_equal(parse(&a, err, 1, "--bogus"), -1);
  assert_string_equal(err, "unknown option --bogus");
  assert_int_equal(parse(&a, err, 1, "-x"), -1);
  assert_string_equal(err, "unknown option -x");
  assert_int_equal(parse(&a, err, 1, "--file"), -1);
  assert_string_equal(err, "--file needs a value (PATH)");
  assert_int_equal(parse(&a, err, 2, "--wait", "-w"), -1);
  assert_string_equal(err, "-w is given twice");
  assert_int_equal(parse(&a, err, 1, "--wait=yes"), -1);
  assert_string_equal(err, "--wait takes no value");
  /* no bundling: one dash and more letters is an argument (a job id) */
  assert_int_equal(parse(&a, err, 2, "-wf", "-x3fQ_a"), 0);
  assert_int_equal(a.npos, 2);
  assert_string_equal(a.pos[0], "-wf");
}

/* ---- params ------------------------------------------------------------- */

static json_t *spec(void) {
  return json_pack("{s:s, s:[{s:s,s:s}, {s:s,s:s}, {s:s,s:s}, {s:s,s:s}, {s:s,s:s}, {s:s,s:s}]}", "name", "t", "params",
                   "name", "n", "type", "integer", "name", "x", "type", "number", "name", "b", "type", "boolean",
                   "name", "l", "type", "integer[]", "name", "f", "type", "number[]", "name", "s", "type", "string");
}

static void expect_params(const json_t *task, int n, char **words, const char *want) {
  char err[128];
  json_t *got = params_build(task, words, n, err, sizeof err);
  if (!got)
    fail_msg("params_build failed: %s", err);
  json_t *w = json_loads(want, 0, NULL);
  assert_non_null(w);
  if (!json_equal(got, w)) {
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("got %s, want %s", g, want);
  }
  json_decref(got);
  json_decref(w);
}

static void test_params_typed(void **state) {
  (void)state;
  json_t *t = spec();
  char *w1[] = {"n=-42", "x=2.5", "b=true", "l=1,2,3", "f=1,2.5", "s=007"};
  expect_params(t, 6, w1, "{\"n\":-42,\"x\":2.5,\"b\":true,\"l\":[1,2,3],\"f\":[1,2.5],\"s\":\"007\"}");
  char *w2[] = {"b=0", "x=7", "l=", "s="};
  expect_params(t, 4, w2, "{\"b\":false,\"x\":7,\"l\":[],\"s\":\"\"}");
  /* What does not read as its type goes as a string: the server says why. */
  char *w3[] = {"n=1.5", "x=nan", "b=yes", "l=1,x", "n2=5", "f=1e400"};
  expect_params(t, 6, w3, "{\"n\":\"1.5\",\"x\":\"nan\",\"b\":\"yes\",\"l\":\"1,x\",\"n2\":\"5\",\"f\":\"1e400\"}");
  char *w4[] = {"n=99999999999999999999", "x=0x10"};
  expect_params(t, 2, w4, "{\"n\":\"99999999999999999999\",\"x\":\"0x10\"}");
  /* name:=JSON; values may hold '=' */
  char *w5[] = {"n:=[1,{\"a\":null}]", "s=a=b", "s2:=\"x\""};
  expect_params(t, 3, w5, "{\"n\":[1,{\"a\":null}],\"s\":\"a=b\",\"s2\":\"x\"}");
  /* no task spec: strings */
  char *w6[] = {"n=5"};
  expect_params(NULL, 1, w6, "{\"n\":\"5\"}");
  json_decref(t);
}

static void test_params_errors(void **state) {
  (void)state;
  char err[128];
  char *a[] = {"novalue"};
  assert_null(params_build(NULL, a, 1, err, sizeof err));
  assert_string_equal(err, "expected name=value, got \"novalue\"");
  char *b[] = {"=5"};
  assert_null(params_build(NULL, b, 1, err, sizeof err));
  char *c[] = {"a=1", "a=2"};
  assert_null(params_build(NULL, c, 2, err, sizeof err));
  assert_string_equal(err, "parameter a is given twice");
  char *d[] = {"a:={bad"};
  assert_null(params_build(NULL, d, 1, err, sizeof err));
  assert_non_null(strstr(err, "a:= needs JSON"));
}

static void test_params_query(void **state) {
  (void)state;
  char err[128];
  buf_t b = BUF_INIT;
  char *w[] = {"column=unit price", "header=true", "x=a&b=c/d%"};
  assert_int_equal(params_query(&b, w, 3, err, sizeof err), 0);
  assert_string_equal(b.data, "column=unit%20price&header=true&x=a%26b%3Dc%2Fd%25");
  buf_reset(&b);
  char *bad[] = {"a:=1"};
  assert_int_equal(params_query(&b, bad, 1, err, sizeof err), -1);
  buf_reset(&b);
  assert_int_equal(params_escape(&b, "Ab-._~é"), 0);
  assert_string_equal(b.data, "Ab-._~%C3%A9");
  buf_free(&b);
  assert_string_equal(params_media_type("data/x.CSV"), "text/csv");
  assert_string_equal(params_media_type("a.b/photo.jpeg"), "image/jpeg");
  assert_string_equal(params_media_type("a.b/noext"), "application/octet-stream");
  assert_string_equal(params_media_type("-"), "application/octet-stream");
}

/* ---- sse ---------------------------------------------------------------- */

typedef struct seen {
  char log[1024];
  int n, stop_at;
} seen_t;

static int on_ev(void *data, const char *event, const char *id, const char *payload, size_t len) {
  seen_t *s = data;
  assert_int_equal(strlen(payload), len);
  size_t have = strlen(s->log);
  snprintf(s->log + have, sizeof s->log - have, "[%s|%s|%s]", event, id, payload);
  s->n++;
  return s->n == s->stop_at ? 7 : 0;
}

static const char stream[] = ": keep-alive\n\n"
                             "id: 1\nevent: job\ndata: {\"a\":1}\n\n"
                             "data:x\r\ndata: y\r\n\r\n"
                             "event: stats\rdata\rdata: z\r\r"
                             "retry: 5\nunknown: q\nevent: nodata\n\n"
                             "id: 9\ndata: last\n\n";
static const char want_events[] = "[job|1|{\"a\":1}][message|1|x\ny][stats|1|\nz][message|9|last]";

static void test_sse_whole_and_split(void **state) {
  (void)state;
  /* Whole, then cut at every byte: line ends split across pieces (CR|LF). */
  for (size_t step = 0; step <= 3; step++) {
    seen_t s = {0};
    sse_t p;
    sse_init(&p, on_ev, &s);
    size_t n = sizeof stream - 1;
    if (step == 0) {
      assert_int_equal(sse_feed(&p, stream, n), 0);
    } else {
      for (size_t i = 0; i < n; i += step)
        assert_int_equal(sse_feed(&p, stream + i, i + step <= n ? step : n - i), 0);
    }
    assert_string_equal(s.log, want_events);
    sse_fini(&p);
  }
}

static void test_sse_stop_and_limits(void **state) {
  (void)state;
  seen_t s = {.stop_at = 1};
  sse_t p;
  sse_init(&p, on_ev, &s);
  assert_int_equal(sse_feed(&p,
                            "\xEF\xBB\xBF"
                            "data: 1\n\ndata: 2\n\n",
                            21),
                   7);
  assert_string_equal(s.log, "[message||1]");
  sse_fini(&p);
  /* an unending line is refused, not buffered without end */
  sse_init(&p, on_ev, &s);
  char *big = malloc(SSE_MAX + 2);
  memset(big, 'a', SSE_MAX + 1);
  assert_int_equal(sse_feed(&p, big, SSE_MAX + 1), OFF_EINVAL);
  free(big);
  sse_fini(&p);
}

/* ---- progress and top --------------------------------------------------- */

static void test_progress_format(void **state) {
  (void)state;
  char out[256];
  size_t n = progress_format(out, sizeof out, 80, 0.42, "spin", "processing", 0, 3.21);
  assert_int_equal(n, strlen(out));
  assert_true(n < 80);
  assert_non_null(strstr(out, "]  42%  spin  3.2s"));
  assert_int_equal(out[0], '[');
  assert_int_equal(strspn(out + 1, "#"), 16); /* 40 wide, 42 % */
  progress_format(out, sizeof out, 80, 0, "spin", "queued", 3, 0);
  assert_non_null(strstr(out, "0%  spin  queued #3  0.0s"));
  progress_format(out, sizeof out, 80, 1.5, "spin", "processing", 0, 1);
  assert_non_null(strstr(out, "100%"));
  n = progress_format(out, sizeof out, 20, 0.5, "a-very-long-task-name", "processing", 0, 1);
  assert_true(n > 0);
  assert_int_equal(out[0], '[');
}

static void test_top_view(void **state) {
  (void)state;
  top_view_t v;
  top_view_init(&v, "http://h:1");
  json_t *jobs = json_loads("{\"jobs\":[{\"id\":\"B\",\"task\":\"spin\",\"status\":\"queued\",\"progress\":0.0},"
                            "{\"id\":\"A\",\"task\":\"pdf\",\"status\":\"complete\",\"progress\":1.0,"
                            "\"startedAt\":1000,\"finishedAt\":3500}]}",
                            0, NULL);
  top_view_jobs(&v, jobs);
  assert_int_equal(v.njobs, 2);
  json_t *ev = json_loads("{\"id\":\"B\",\"task\":\"spin\",\"status\":\"processing\",\"progress\":0.5}", 0, NULL);
  top_view_job(&v, ev);
  assert_int_equal(v.njobs, 2);
  assert_string_equal(v.jobs[0].status, "processing");
  json_decref(ev);
  ev = json_loads(
      "{\"id\":\"C\",\"task\":\"x\",\"status\":\"failed\",\"progress\":0.1,\"error\":{\"code\":\"timeout\"}}", 0, NULL);
  top_view_job(&v, ev);
  assert_int_equal(v.njobs, 3);
  assert_string_equal(v.jobs[0].id, "C");
  json_decref(ev);
  json_t *st = json_loads("{\"queue\":{\"depth\":3,\"capacity\":100},\"workers\":{\"total\":2,\"busy\":1},"
                          "\"completedPerSec\":4.5,\"failedPerSec\":0,\"loopLagMs\":0.25}",
                          0, NULL);
  top_view_stats(&v, st);
  assert_true(v.have_rates);
  buf_t out = BUF_INIT;
  top_view_render(&v, &out, 24, 100, 0);
  assert_non_null(strstr(out.data, "3 / 100"));
  assert_non_null(strstr(out.data, "1 of 2 busy"));
  assert_non_null(strstr(out.data, "4.5"));
  assert_non_null(strstr(out.data, "[#####.....]  50%"));
  assert_non_null(strstr(out.data, "failed timeout"));
  assert_non_null(strstr(out.data, "2.5s"));
  buf_free(&out);
  /* a tiny screen: no more rows than it has, no line wider */
  top_view_render(&v, &out, 8, 20, 0);
  int lines = 0;
  for (const char *p = out.data; (p = strstr(p, "\r\n")); p += 2)
    lines++;
  assert_true(lines <= 7);
  for (const char *l = out.data + 3; (size_t)(l - out.data) < out.len;) { /* after "\033[H" */
    const char *end = strstr(l, "\033[K");
    if (!end)
      break;
    assert_true(end - l <= 20);
    l = end + 5; /* "\033[K\r\n" */
  }
  buf_free(&out);
  json_decref(st);
  json_decref(jobs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_args_forms),
      cmocka_unit_test(test_args_errors),
      cmocka_unit_test(test_params_typed),
      cmocka_unit_test(test_params_errors),
      cmocka_unit_test(test_params_query),
      cmocka_unit_test(test_sse_whole_and_split),
      cmocka_unit_test(test_sse_stop_and_limits),
      cmocka_unit_test(test_progress_format),
      cmocka_unit_test(test_top_view),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
