/* api_ui_test: the dashboard's routes (api/ui.c) on fake connections
 * (api/api_test_env.h): GET / and /ui/app.js, /ui/app.css with their
 * bytes, media types, ETag, Cache-Control, Content-Security-Policy and
 * nosniff; HEAD (the GET head, no body); If-None-Match (304, lists, weak
 * tags, "*"); unknown /ui/ paths 404; other methods 405 with Allow; a
 * query 400 as on every endpoint; and the embedded files themselves: each
 * is the repo's web/ file byte for byte, and none names another host. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api_test_env.h"
#include "api/ui_assets.h"

#define CSP                                                                                                            \
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "                \
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* Reads a repo file whole; NULL if it is missing. */
static char *read_file(const char *rel, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", OFFLOAD_SOURCE_DIR, rel);
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  buf_t b = BUF_INIT;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    assert_int_equal(buf_append(&b, chunk, n), 0);
  fclose(f);
  *len = b.len;
  assert_int_equal(buf_append(&b, "", 1), 0); /* NUL-terminated, not counted */
  return b.data;
}

/* A 200 with every header the dashboard's files carry. */
static void check_asset_reply(const reply_t *r, const char *ctype, const ui_asset_t *a) {
  if (r->status != 200)
    fail_msg("status %d: %s", r->status, r->head);
  assert_string_equal(rheader(r, "Content-Type"), ctype);
  assert_string_equal(rheader(r, "ETag"), a->etag);
  assert_string_equal(rheader(r, "Cache-Control"), "no-cache");
  assert_string_equal(rheader(r, "Content-Security-Policy"), CSP);
  assert_string_equal(rheader(r, "X-Content-Type-Options"), "nosniff");
  assert_string_equal(rheader(r, "Referrer-Policy"), "no-referrer");
  char cl[32];
  snprintf(cl, sizeof cl, "%zu", a->size);
  assert_string_equal(rheader(r, "Content-Length"), cl);
}

static void test_served(void **state) {
  (void)state;
  static const struct {
    const char *path, *ctype, *file, *marker;
  } cases[] = {
      {"/", "text/html; charset=utf-8", "web/index.html", "<!doctype html>"},
      {"/ui/app.js", "text/javascript; charset=utf-8", "web/ui/app.js", "use strict"},
      {"/ui/app.css", "text/css; charset=utf-8", "web/ui/app.css", "{"},
  };
  env_t e;
  env_init(&e, 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const ui_asset_t *a = ui_asset_find(cases[i].path);
    assert_non_null(a);
    reply_t *r = req(&e, "GET", cases[i].path);
    check_asset_reply(r, cases[i].ctype, a);
    assert_int_equal(r->body_len, a->size);
    assert_memory_equal(r->body, a->data, a->size);
    assert_non_null(strstr(r->body, cases[i].marker));
    /* The bytes served are the repo's file, byte for byte. */
    size_t len;
    char *want = read_file(cases[i].file, &len);
    assert_non_null(want);
    assert_int_equal(len, a->size);
    assert_memory_equal(want, a->data, len);
    free(want);
    /* HEAD: the same head, Content-Length included, and no body byte. */
    r = req(&e, "HEAD", cases[i].path);
    check_asset_reply(r, cases[i].ctype, a);
    assert_int_equal(r->body_len, 0);
    assert_int_equal(e.c[0].off, http_fake_out_len(e.c[0].f));
  }
  /* The page loads its script and style from /ui/, which exist. */
  const ui_asset_t *page = ui_asset_find("/");
  assert_non_null(strstr((const char *)page->data, "src=\"/ui/app.js\""));
  assert_non_null(strstr((const char *)page->data, "href=\"/ui/app.css\""));
  env_fini(&e);
}

static reply_t *get_inm(env_t *e, const char *path, const char *inm, bool head) {
  char raw[1024];
  int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", head ? "HEAD" : "GET",
                   path, inm);
  assert_true(n > 0 && (size_t)n < sizeof raw);
  return client_raw(e, &e->c[0], raw, (size_t)n);
}

static void test_if_none_match(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  const ui_asset_t *a = ui_asset_find("/ui/app.js");
  assert_non_null(a);
  char inm[256];
  const char *matching[] = {"%s", "\"nope\", %s", "W/%s", " %s ,\"x\"", "*"};
  for (size_t i = 0; i < sizeof matching / sizeof matching[0]; i++) {
    snprintf(inm, sizeof inm, matching[i], a->etag);
    for (int head = 0; head < 2; head++) { /* GET, then HEAD: a 304 and no body */
      reply_t *r = get_inm(&e, "/ui/app.js", inm, head);
      if (r->status != 304)
        fail_msg("If-None-Match: %s: status %d", inm, r->status);
      assert_string_equal(rheader(r, "ETag"), a->etag);
      assert_string_equal(rheader(r, "Cache-Control"), "no-cache");
      assert_int_equal(e.c[0].off, http_fake_out_len(e.c[0].f)); /* no body byte */
    }
  }
  /* Another tag (the index's, a cut one, an empty list): the whole file. */
  const ui_asset_t *page = ui_asset_find("/");
  const char *other[] = {page->etag, "\"\"", ",", "W/"};
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    reply_t *r = get_inm(&e, "/ui/app.js", other[i], false);
    check_asset_reply(r, "text/javascript; charset=utf-8", a);
    assert_int_equal(r->body_len, a->size);
  }
  env_fini(&e);
}

static void test_not_found_and_methods(void **state) {
  (void)state;
  env_t e;
  env_init(&e, 1);
  const char *missing[] = {
      "/ui/",         "/ui/nope.js", "/ui/app.js/", "/ui/../index.html", "/ui/index.html", "/ui/APP.JS",
      "/ui/app%2ejs", "/index.html", "/ui",         "/ui/ui/app.js",     "/ui/app.js.map"};
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
    reply_t *r = req(&e, "GET", missing[i]);
    check_error(r, 404, "not_found", NULL);
    assert_null(rheader(r, "Content-Security-Policy"));
    assert_int_equal(req(&e, "HEAD", missing[i])->status, 404);
  }
  const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  const char *paths[] = {"/", "/ui/app.js", "/ui/nope"};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
      reply_t *r = req(&e, methods[i], paths[k]);
      check_error(r, 405, "method_not_allowed", NULL);
      assert_string_equal(rheader(r, "Allow"), "GET, HEAD");
    }
  /* Queries follow the rule of every endpoint. */
  check_error(req(&e, "GET", "/?token=x"), 400, "unknown_param", "token");
  check_error(req(&e, "GET", "/ui/app.js?v=1"), 400, "unknown_param", "v");
  env_fini(&e);
}

/* Every embedded file: a known path, a type, a tag unique to its bytes, and
 * no URL of another host (the dashboard works offline and talks to its own
 * server only). */
static void test_assets(void **state) {
  (void)state;
  assert_true(ui_nassets >= 3);
  for (size_t i = 0; i < ui_nassets; i++) {
    const ui_asset_t *a = &ui_assets[i];
    assert_true(strcmp(a->path, "/") == 0 || strncmp(a->path, "/ui/", 4) == 0);
    assert_ptr_equal(ui_asset_find(a->path), a);
    assert_int_equal(strlen(a->etag), 34);
    assert_int_equal(a->data[a->size], '\0');
    assert_int_equal(strlen((const char *)a->data), a->size); /* text: no NUL inside */
    for (size_t k = 0; k < i; k++)
      assert_string_not_equal(ui_assets[k].etag, a->etag);
    const char *text = (const char *)a->data;
    static const char *const banned[] = {"http:", "https:", "ws://", "wss://", "//cdn", "EventSource", "@import"};
    for (size_t b = 0; b < sizeof banned / sizeof banned[0]; b++)
      if (strstr(text, banned[b]))
        fail_msg("%s holds \"%s\": no asset may name another host or read the events by URL", a->path, banned[b]);
  }
  assert_null(ui_asset_find("/ui/"));
  assert_null(ui_asset_find(""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_served),
      cmocka_unit_test(test_if_none_match),
      cmocka_unit_test(test_not_found_and_methods),
      cmocka_unit_test(test_assets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
