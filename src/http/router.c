/* http/router: see router.h. */
#include "http/router.h"

#include <stdio.h>
#include <string.h>

/* Matches one pattern; fills params. Literal runs are compared whole
 * (strcspn + strncmp), not byte by byte. */
static bool pattern_match(const char *pat, const char *path, router_match_t *m) {
  m->nparams = 0;
  /* Most routes differ from the path in their first segment's first byte. */
  if (pat[0] == '/' && path[0] == '/' && pat[1] != path[1] && pat[1] != ':' && pat[1] != '*' && pat[1])
    return false;
  for (;;) {
    size_t lit = strcspn(pat, ":*");
    if (strncmp(pat, path, lit) != 0)
      return false; /* (a shorter path differs at its NUL) */
    pat += lit;
    path += lit;
    if (!*pat)
      return *path == '\0';
    bool rest = *pat == '*';
    const char *name = pat + 1;
    size_t name_len = strcspn(name, "/");
    size_t vlen = rest ? strlen(path) : strcspn(path, "/");
    if ((!rest && vlen == 0) || m->nparams == ROUTER_MAX_PARAMS)
      return false;
    m->params[m->nparams].name = rest && name_len == 0 ? "*" : name;
    m->params[m->nparams].name_len = rest && name_len == 0 ? 1 : name_len;
    m->params[m->nparams].value = path;
    m->params[m->nparams].value_len = vlen;
    m->nparams++;
    pat = name + name_len;
    path += vlen;
    if (rest)
      return *pat == '\0';
  }
}

router_result_t router_match(const http_route_t *routes, size_t n, http_method_t method, const char *path,
                             router_match_t *m) {
  memset(m, 0, sizeof *m);
  const char *first = NULL;
  for (size_t i = 0; i < n; i++) {
    const http_route_t *r = &routes[i];
    if (first && strcmp(r->pattern, first) != 0)
      continue;
    router_match_t tmp;
    if (!pattern_match(r->pattern, path, &tmp))
      continue;
    first = r->pattern;
    if (r->methods & (unsigned)method) {
      *m = tmp;
      m->route = r;
      return ROUTER_FOUND;
    }
    m->allowed |= r->methods;
  }
  return first ? ROUTER_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

bool router_match_one(const http_route_t *route, const char *path, router_match_t *m) {
  memset(m, 0, sizeof *m);
  if (!pattern_match(route->pattern, path, m))
    return false;
  m->route = route;
  return true;
}

long router_param(const router_match_t *m, const char *name, char *buf, size_t size) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < m->nparams; i++) {
    if (m->params[i].name_len != nl || strncmp(m->params[i].name, name, nl) != 0)
      continue;
    size_t vl = m->params[i].value_len;
    size_t k = vl < size ? vl : size - 1;
    memcpy(buf, m->params[i].value, k);
    buf[k] = '\0';
    return (long)vl;
  }
  return -1;
}

void router_allow_text(unsigned methods, char *buf, size_t size) {
  static const struct {
    unsigned bit;
    const char *name;
  } order[] = {{HTTP_M_GET, "GET"},       {HTTP_M_HEAD, "HEAD"},   {HTTP_M_POST, "POST"},
               {HTTP_M_PUT, "PUT"},       {HTTP_M_DELETE, "DELETE"}, {HTTP_M_PATCH, "PATCH"},
               {HTTP_M_OPTIONS, "OPTIONS"}};
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    if (!(methods & order[i].bit))
      continue;
    int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", order[i].name);
    if (n < 0 || (size_t)n >= size - o)
      return;
    o += (size_t)n;
  }
}
