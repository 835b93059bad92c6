/* api/ui_assets: the dashboard's files, compiled into the binary.
 *
 * The table is generated at build time by cmake/embed_web.cmake from the
 * repo's web/ directory (web/index.html is "/", web/ui/<name> is
 * "/ui/<name>"), so the bytes served are the repo's and nothing needs to
 * be installed beside the binary. Each entry carries its media type and an
 * ETag made from the SHA-256 of its bytes.
 *
 * Read-only data: any thread. Nothing here is ever freed. */
#ifndef OFFLOAD_API_UI_ASSETS_H
#define OFFLOAD_API_UI_ASSETS_H

#include <stddef.h>

typedef struct ui_asset {
  const char *path;          /* "/" or "/ui/app.js": the request path it answers */
  const char *content_type;  /* "text/javascript; charset=utf-8" */
  const char *etag;          /* quoted: "\"<32 hex digits>\"" */
  const unsigned char *data; /* `size` bytes, then a NUL that is not counted */
  size_t size;
} ui_asset_t;

/* The generated table (web_assets.c in the build directory), sorted by
 * file name; ui_nassets >= 1 (the build fails without web/index.html). */
extern const ui_asset_t ui_assets[];
extern const size_t ui_nassets;

/* The asset served at `path` (exact, not decoded), or NULL. */
const ui_asset_t *ui_asset_find(const char *path);

#endif
