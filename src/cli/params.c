/* cli/params: see params.h. */
#include "cli/params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"

/* Strict decimal, as the API reads integers: [-]digits, 64 bits. */
static bool read_int(const char *s, size_t n, json_int_t *out) {
  char tmp[32];
  if (n == 0 || n >= sizeof tmp)
    return false;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  const char *d = tmp[0] == '-' ? tmp + 1 : tmp;
  if (!*d)
    return false;
  for (const char *q = d; *q; q++)
    if (!isdigit((unsigned char)*q))
      return false;
  errno = 0;
  long long v = strtoll(tmp, NULL, 10);
  if (errno)
    return false;
  *out = (json_int_t)v;
  return true;
}

static json_t *read_number(const char *s, size_t n) {
  json_int_t i;
  if (read_int(s, n, &i))
    return json_integer(i);
  char tmp[64];
  if (n == 0 || n >= sizeof tmp || isspace((unsigned char)s[0]))
    return NULL;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *end;
  errno = 0;
  double d = strtod(tmp, &end);
  if (*end || errno || !isfinite(d) || strpbrk(tmp, "xXnN")) /* no hex, inf or nan */
    return NULL;
  return json_real(d);
}

static json_t *read_list(const char *text, bool integers) {
  json_t *a = json_array();
  if (!a || !*text)
    return a;
  for (const char *p = text;;) {
    size_t n = strcspn(p, ",");
    json_int_t i;
    json_t *v = integers ? (read_int(p, n, &i) ? json_integer(i) : NULL) : read_number(p, n);
    if (!v || json_array_append_new(a, v)) {
      json_decref(a);
      return NULL;
    }
    if (!p[n])
      return a;
    p += n + 1;
  }
}

json_t *params_typed(const char *type, const char *text) {
  json_t *v = NULL;
  json_int_t i;
  if (!type) {
  } else if (strcmp(type, "integer") == 0) {
    if (read_int(text, strlen(text), &i))
      v = json_integer(i);
  } else if (strcmp(type, "number") == 0) {
    v = read_number(text, strlen(text));
  } else if (strcmp(type, "boolean") == 0) {
    if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0)
      v = json_true();
    else if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0)
      v = json_false();
  } else if (strcmp(type, "integer[]") == 0 || strcmp(type, "number[]") == 0) {
    v = read_list(text, strcmp(type, "integer[]") == 0);
  }
  return v ? v : json_string(text);
}

/* The spec of param `name` in a task object of GET /tasks, or NULL. */
static const json_t *spec_of(const json_t *task, const char *name) {
  const json_t *ps = json_object_get(task, "params");
  size_t i;
  const json_t *p;
  json_array_foreach(ps, i, p) {
    const char *pn = json_string_value(json_object_get(p, "name"));
    if (pn && strcmp(pn, name) == 0)
      return p;
  }
  return NULL;
}

/* Splits "name=value" or "name:=json"; returns the name's length, 0 when
 * the word is not a pair. */
static size_t split(const char *w, const char **value, bool *raw) {
  const char *eq = strchr(w, '=');
  if (!eq || eq == w)
    return 0;
  *raw = eq > w + 1 && eq[-1] == ':';
  *value = eq + 1;
  return (size_t)(eq - w) - (*raw ? 1 : 0);
}

json_t *params_build(const json_t *task, char *const *words, int n, char *err, size_t errlen) {
  json_t *obj = json_object();
  if (!obj) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  for (int k = 0; k < n; k++) {
    const char *value;
    bool raw;
    size_t nlen = split(words[k], &value, &raw);
    if (nlen == 0) {
      snprintf(err, errlen, "expected name=value, got \"%.60s\"", words[k]);
      goto fail;
    }
    char name[128];
    if (nlen >= sizeof name) {
      snprintf(err, errlen, "parameter name \"%.40s...\" is too long", words[k]);
      goto fail;
    }
    memcpy(name, words[k], nlen);
    name[nlen] = '\0';
    if (json_object_get(obj, name)) {
      snprintf(err, errlen, "parameter %s is given twice", name);
      goto fail;
    }
    json_t *v;
    if (raw) {
      json_error_t je;
      v = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
      if (!v) {
        snprintf(err, errlen, "%s:= needs JSON: %s", name, je.text);
        goto fail;
      }
    } else {
      const json_t *spec = task ? spec_of(task, name) : NULL;
      v = params_typed(json_string_value(json_object_get(spec, "type")), value);
    }
    if (!v || json_object_set_new(obj, name, v)) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  }
  return obj;
fail:
  json_decref(obj);
  return NULL;
}

int params_escape(buf_t *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      if (buf_append(out, p, 1))
        return OFF_ENOMEM;
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      if (buf_append(out, e, 3))
        return OFF_ENOMEM;
    }
  }
  return 0;
}

int params_query(buf_t *out, char *const *words, int n, char *err, size_t errlen) {
  for (int k = 0; k < n; k++) {
    const char *value;
    bool raw;
    size_t nlen = split(words[k], &value, &raw);
    if (nlen == 0 || raw) {
      snprintf(err, errlen,
               raw ? "name:=JSON cannot go with --file (the params travel in the query): \"%.60s\""
                   : "expected name=value, got \"%.60s\"",
               words[k]);
      return -1;
    }
    char name[128];
    if (nlen >= sizeof name) {
      snprintf(err, errlen, "parameter name \"%.40s...\" is too long", words[k]);
      return -1;
    }
    memcpy(name, words[k], nlen);
    name[nlen] = '\0';
    if ((k > 0 && buf_append(out, "&", 1)) || params_escape(out, name) || buf_append(out, "=", 1) ||
        params_escape(out, value))
      return OFF_ENOMEM;
  }
  return 0;
}

const char *params_media_type(const char *path) {
  static const char *const map[][2] = {
      {"csv", "text/csv"},        {"tsv", "text/tab-separated-values"},
      {"txt", "text/plain"},      {"json", "application/json"},
      {"jpg", "image/jpeg"},      {"jpeg", "image/jpeg"},
      {"png", "image/png"},       {"webp", "image/webp"},
      {"gif", "image/gif"},       {"tif", "image/tiff"},
      {"tiff", "image/tiff"},     {"heic", "image/heif"},
      {"heif", "image/heif"},     {"avif", "image/avif"},
      {"pdf", "application/pdf"},
  };
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot)
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
      if (strcasecmp(dot + 1, map[i][0]) == 0)
        return map[i][1];
  return "application/octet-stream";
}
