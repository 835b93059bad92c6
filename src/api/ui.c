/* api/ui: GET / and GET /ui/<name>, the web dashboard (web/ in the repo,
 * compiled into the binary: api/ui_assets.h).
 *
 * The bytes never change while the server runs, so every reply carries
 * the asset's ETag and `Cache-Control: no-cache` (the browser keeps its
 * copy and asks each time; a matching If-None-Match gets 304 and no body),
 * so a new binary's dashboard is seen on the next load. The headers lock
 * the page to its own origin: the Content-Security-Policy allows scripts,
 * styles, connections and images from the server only (and data: images),
 * no inline script or style, no framing; `nosniff` makes the browser trust
 * the Content-Type. The page holds no secret: the token it asks for lives
 * in the browser's sessionStorage and travels only as a header.
 *
 * Loop thread, like every handler; replies are built from static memory. */
#include <string.h>

#include "api/api_int.h"
#include "api/ui_assets.h"

#define UI_CSP                                                                                                         \
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "                \
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const ui_asset_t *ui_asset_find(const char *path) {
  for (size_t i = 0; i < ui_nassets; i++)
    if (strcmp(ui_assets[i].path, path) == 0)
      return &ui_assets[i];
  return NULL;
}

/* If-None-Match holds `etag` (one of a comma-separated list, a weak W/
 * form too: a GET compares weakly) or is "*". */
static bool etag_matches(const char *inm, const char *etag) {
  size_t el = strlen(etag);
  const char *p = inm;
  while (*p) {
    p += strspn(p, " \t,");
    if (!*p)
      break;
    size_t n = strcspn(p, ",");
    size_t k = n;
    while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
      k--;
    const char *t = p;
    if (k >= 2 && t[0] == 'W' && t[1] == '/') {
      t += 2;
      k -= 2;
    }
    if ((k == 1 && t[0] == '*') || (k == el && memcmp(t, etag, el) == 0))
      return true;
    p += n;
  }
  return false;
}

void h_ui(api_t *a, http_req_t *req, const router_match_t *m) {
  (void)a;
  (void)m;
  if (!api_no_query(req))
    return;
  const ui_asset_t *f = ui_asset_find(req->path);
  if (!f) {
    api_error(req, API_E_NOT_FOUND, NULL, NULL, "There is no dashboard file at %.200s.", req->path);
    return;
  }
  http_headers_t h = HTTP_HEADERS_INIT;
  http_headers_add(&h, "ETag", f->etag);
  http_headers_add(&h, "Cache-Control", "no-cache");
  http_headers_add(&h, "Content-Security-Policy", UI_CSP);
  http_headers_add(&h, "X-Content-Type-Options", "nosniff");
  http_headers_add(&h, "Referrer-Policy", "no-referrer");
  if (http_headers_error(&h) != 0) { /* only ENOMEM: the values are ours */
    http_headers_fini(&h);
    api_error(req, API_E_INTERNAL, NULL, NULL, "Out of memory.");
    return;
  }
  const char *inm = http_req_header(req, "If-None-Match");
  if (inm && etag_matches(inm, f->etag))
    http_reply(req, 304, NULL, &h, NULL, 0);
  else
    http_reply(req, 200, f->content_type, &h, (const char *)f->data, f->size);
  http_headers_fini(&h);
}
