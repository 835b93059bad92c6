/* http/query: splits and percent-decodes a URL query string.
 * Pure functions; any thread. */
#ifndef OFFLOAD_HTTP_QUERY_H
#define OFFLOAD_HTTP_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#define QUERY_MAX_PARAMS 16
#define QUERY_MAX_TEXT 2048

typedef struct query_param {
  const char *name;  /* decoded, NUL-terminated */
  const char *value; /* decoded, NUL-terminated; "" when there was no '=' */
  size_t value_len;  /* decoded length (a value may hold %00) */
  int count;         /* times this name appeared */
} query_param_t;

typedef enum {
  QUERY_OK = 0,
  QUERY_BAD_ESCAPE, /* a '%' not followed by two hex digits */
  QUERY_NUL,        /* %00: a NUL byte in a name or value */
  QUERY_TOO_LONG,   /* over QUERY_MAX_TEXT decoded bytes */
  QUERY_TOO_MANY,   /* over QUERY_MAX_PARAMS names */
} query_error_t;

typedef struct query {
  query_param_t params[QUERY_MAX_PARAMS];
  size_t n;
  char text[QUERY_MAX_TEXT]; /* storage for the decoded strings */
  const char *bad;           /* on failure: the (decoded, maybe partial) name at fault, or "" */
  query_error_t err;         /* on failure: what is wrong */
} query_t;

/* Parses `raw` (the text after '?', may be NULL). '+' means space, %XX a
 * byte. Empty segments ("a=1&&b=2") are skipped; a repeated name is kept
 * once with count > 1. Returns false when it is malformed (bad %-escape, or
 * a %00: a NUL can hide the rest of a name or value from C string code) or
 * too long / has too many names; q->err says which and q->bad names the
 * parameter when known (up to a NUL). */
bool query_parse(query_t *q, const char *raw);

/* The parameter called `name`, or NULL. */
const query_param_t *query_get(const query_t *q, const char *name);

/* The first parameter whose name is not in the NULL-terminated `allowed`
 * list, or NULL. */
const query_param_t *query_unknown(const query_t *q, const char *const *allowed);

#endif
