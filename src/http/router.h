/* http/router: matches a method and path against a table of routes.
 *
 * A route is a method set (HTTP_M_* bits), a path pattern and a pointer the
 * table's owner gives meaning to. Patterns are literal segments, named
 * segments (":id" matches one non-empty segment without '/'), and a final
 * star segment ("*" or "*name") that matches the rest of the path, slashes included, possibly
 * empty (a pattern "/ui/" + star matches "/ui/" and "/ui/a/b.js"). The first route, in table
 * order, whose pattern matches the path wins; if it lacks the method, other
 * routes with the same pattern are tried, and when none has it the result is
 * "method not allowed" with the union of their methods. So a more specific
 * literal ("/tasks/reports/start") must come before a pattern it overlaps
 * ("/tasks/reports/:id").
 *
 * Pure functions; any thread. Ownership: the match borrows the path. */
#ifndef OFFLOAD_HTTP_ROUTER_H
#define OFFLOAD_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

#define ROUTER_MAX_PARAMS 4

typedef struct http_route {
  unsigned methods;    /* HTTP_M_* bits */
  const char *pattern; /* "/jobs/:id/files/:name" */
  const void *data;    /* the owner's (handler, flags, body limit, ...) */
} http_route_t;

typedef enum { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_NOT_ALLOWED } router_result_t;

typedef struct router_match {
  const http_route_t *route; /* FOUND */
  unsigned allowed;          /* NOT_ALLOWED: the methods the path takes */
  size_t nparams;
  struct {
    const char *name; /* points into the pattern, not terminated: name_len */
    size_t name_len;
    const char *value; /* points into the path, not terminated: value_len */
    size_t value_len;
  } params[ROUTER_MAX_PARAMS];
} router_match_t;

router_result_t router_match(const http_route_t *routes, size_t n, http_method_t method, const char *path,
                             router_match_t *m);

/* Matches one route (found earlier by router_match on the same path) again
 * to fill in the parameters, without scanning the table. */
bool router_match_one(const http_route_t *route, const char *path, router_match_t *m);

/* Copies parameter `name` into buf (size >= 1; NUL-terminated, cut to fit).
 * Returns its full length (so a result >= size means it was cut), or -1 when
 * there is no such parameter. */
long router_param(const router_match_t *m, const char *name, char *buf, size_t size);

/* "GET, HEAD, POST" for a method set, in a fixed order, into buf. */
void router_allow_text(unsigned methods, char *buf, size_t size);

#endif
