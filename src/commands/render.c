/* commands/render: a command task's argv and environment for one run, and
 * the media types of its outputs (see commands.h).
 *
 * The argv is built element by element: each literal, each placeholder is
 * exactly one element, copied byte for byte, so no value can add, split or
 * join arguments, and none reaches a shell (execve takes the array as it
 * is). The result is one allocation: the pointers, then the texts. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "commands/commands.h"
#include "util/err.h"
#include "util/fault.h"

/* One element: a, then '/' and b when b is set (an output's path). */
typedef struct piece {
  const char *a, *b;
  size_t an, bn;
  bool present;
  char num[32]; /* the text of an int, number or bool */
} piece_t;

/* The shortest text that strtod reads back as x: plain decimals ("10000",
 * "0.1", "0.00001") where that is how people write them, since programs
 * parse a time or a size with their own readers and many stop at an 'e';
 * an exponent only for the very large and very small ("1e+21"). */
static void real_text(double x, char *buf, size_t size) {
  double a = fabs(x);
  if (a < 1e16 && (a >= 1e-5 || a == 0))
    for (int decimals = 0; decimals <= 24; decimals++) {
      snprintf(buf, size, "%.*f", decimals, x);
      if (strtod(buf, NULL) == x)
        return;
    }
  for (int prec = 1; prec <= 17; prec++) { /* %.17g always reads back */
    snprintf(buf, size, "%.*g", prec, x);
    if (strtod(buf, NULL) == x)
      return;
  }
}

/* A param's value as its argument's text into p; OFF_EINVAL when it is not
 * of the param's type. */
static int value_piece(const offload_param_spec_t *s, const json_t *v, piece_t *p) {
  p->present = true;
  switch (s->type) {
  case OFFLOAD_PARAM_INTEGER:
    if (!json_is_integer(v))
      return OFF_EINVAL;
    snprintf(p->num, sizeof p->num, "%" PRId64, (int64_t)json_integer_value(v));
    break;
  case OFFLOAD_PARAM_NUMBER:
    if (!json_is_number(v))
      return OFF_EINVAL;
    real_text(json_number_value(v), p->num, sizeof p->num);
    break;
  case OFFLOAD_PARAM_BOOLEAN:
    if (!json_is_boolean(v))
      return OFF_EINVAL;
    snprintf(p->num, sizeof p->num, "%s", json_is_true(v) ? "true" : "false");
    break;
  case OFFLOAD_PARAM_STRING:
    if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)))
      return OFF_EINVAL; /* an argument is a C string: a NUL would cut it short */
    p->a = json_string_value(v);
    p->an = json_string_length(v);
    return 0;
  case OFFLOAD_PARAM_INT_LIST:
  case OFFLOAD_PARAM_NUMBER_LIST: return OFF_EINVAL; /* a commands file declares none */
  }
  p->a = p->num;
  p->an = strlen(p->num);
  return 0;
}

static int arg_piece(const commands_task_t *t, const commands_arg_t *a, const json_t *params, const char *input_path,
                     const char *outdir, piece_t *p) {
  switch (a->kind) {
  case COMMANDS_ARG_LITERAL:
    p->a = a->text;
    p->an = strlen(a->text);
    p->present = true;
    return 0;
  case COMMANDS_ARG_INPUT:
    if (!input_path)
      return OFF_EINVAL;
    p->a = input_path;
    p->an = strlen(input_path);
    p->present = true;
    return 0;
  case COMMANDS_ARG_OUTPUT:
    if (!outdir)
      return OFF_EINVAL;
    p->a = outdir;
    p->an = strlen(outdir);
    p->b = a->text;
    p->bn = strlen(a->text);
    p->present = true;
    return 0;
  case COMMANDS_ARG_PARAM: break;
  }
  const offload_param_spec_t *s = &t->def.params[a->param];
  const json_t *v = json_is_object(params) ? json_object_get(params, s->name) : NULL;
  if (!v)
    v = json_object_get(t->_defaults, s->name);
  if (!v) /* optional, no default: the argument is left out */
    return s->required ? OFF_EINVAL : 0;
  return value_piece(s, v, p);
}

int commands_render_argv(const commands_task_t *t, const json_t *params, const char *input_path, const char *outdir,
                         char ***argv_out) {
  *argv_out = NULL;
  piece_t *pieces = FAULT_HIT(FAULT_ALLOC) ? NULL : calloc(t->nargs, sizeof *pieces);
  if (!pieces)
    return OFF_ENOMEM;
  size_t count = 0, bytes = 0;
  int rc = 0;
  for (size_t i = 0; i < t->nargs && rc == 0; i++) {
    piece_t *p = &pieces[i];
    rc = arg_piece(t, &t->args[i], params, input_path, outdir, p);
    if (rc == 0 && p->present) {
      count++;
      bytes += p->an + (p->b ? 1 + p->bn : 0) + 1;
    }
  }
  char **argv = NULL;
  if (rc == 0) {
    argv = FAULT_HIT(FAULT_ALLOC) ? NULL : malloc((count + 1) * sizeof *argv + bytes);
    rc = argv ? 0 : OFF_ENOMEM;
  }
  if (rc == 0) {
    char *w = (char *)(argv + count + 1);
    size_t k = 0;
    for (size_t i = 0; i < t->nargs; i++) {
      const piece_t *p = &pieces[i];
      if (!p->present)
        continue;
      argv[k++] = w;
      memcpy(w, p->a, p->an);
      w += p->an;
      if (p->b) {
        *w++ = '/';
        memcpy(w, p->b, p->bn);
        w += p->bn;
      }
      *w++ = '\0';
    }
    argv[k] = NULL;
    *argv_out = argv;
  }
  free(pieces);
  return rc;
}

int commands_render_env(const commands_t *c, char *const *environ_in, char ***envp_out) {
  *envp_out = NULL;
  size_t count = 0, bytes = 0;
  const char *found[COMMANDS_MAX_ENV];
  for (size_t i = 0; i < c->nenv; i++) {
    size_t n = strlen(c->env[i]);
    found[i] = NULL;
    for (size_t e = 0; environ_in && environ_in[e] && !found[i]; e++)
      if (strncmp(environ_in[e], c->env[i], n) == 0 && environ_in[e][n] == '=')
        found[i] = environ_in[e];
    if (found[i]) {
      count++;
      bytes += strlen(found[i]) + 1;
    }
  }
  char **envp = FAULT_HIT(FAULT_ALLOC) ? NULL : malloc((count + 1) * sizeof *envp + bytes);
  if (!envp)
    return OFF_ENOMEM;
  char *w = (char *)(envp + count + 1);
  size_t k = 0;
  for (size_t i = 0; i < c->nenv; i++) {
    if (!found[i])
      continue;
    size_t n = strlen(found[i]) + 1;
    envp[k++] = memcpy(w, found[i], n);
    w += n;
  }
  envp[k] = NULL;
  *envp_out = envp;
  return 0;
}

const char *commands_content_type(const char *name) {
  static const struct {
    const char *ext, *type;
  } types[] = {
      {"mp4", "video/mp4"},  {"webm", "video/webm"}, {"mkv", "video/x-matroska"},  {"mov", "video/quicktime"},
      {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"png", "image/png"},         {"webp", "image/webp"},
      {"gif", "image/gif"},  {"txt", "text/plain"},  {"json", "application/json"}, {"pdf", "application/pdf"},
      {"csv", "text/csv"},   {"mp3", "audio/mpeg"},  {"wav", "audio/wav"},         {"ogg", "audio/ogg"},
  };
  const char *dot = strrchr(name, '.');
  for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
    if (strcasecmp(dot + 1, types[i].ext) == 0)
      return types[i].type;
  return "application/octet-stream";
}
