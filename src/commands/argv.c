/* commands/argv: a command task's "argv" (see commands.h): each element a
 * literal or exactly one placeholder, the outputs it names, the program
 * found at load.
 *
 * A placeholder is "{name}" (a declared param), "{input}" or
 * "{output:NAME}", and it must be the whole element: text around it
 * ("x{msg}", "--size={w}") is refused, because joining a value into other
 * text is where quoting bugs live, and one element per value is what keeps
 * a value from ever becoming two arguments. Braces that do not spell a
 * placeholder ("{}", "{ x }") are plain text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/commands_int.h"
#include "util/err.h"

/* ---- the program ---- */

static bool executable_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) && access(path, X_OK) == 0;
}

/* argv[0] → the absolute path to execute: an absolute path as it is, a bare
 * name through the absolute entries of PATH (an empty or relative entry
 * would make the program depend on the server's working directory). */
static int resolve_program(commands_load_t *L, commands_task_t *t, const char *arg0) {
  if (arg0[0] == '/') {
    if (!executable_file(arg0))
      return commands_fail(L, "the program %.200s is not an executable file; install it or fix the path", arg0);
    return (t->program = commands_strdup(L, arg0)) ? 0 : commands_oom(L);
  }
  if (strchr(arg0, '/') || arg0[0] == '\0')
    return commands_fail(L,
                         "argv[0] \"%.200s\" must be a program's absolute path (e.g. /usr/bin/ffmpeg) or a bare name "
                         "found on PATH (e.g. ffmpeg); fix it",
                         arg0);
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, ":");
    char full[4096];
    if (p[0] == '/' && n + 1 + strlen(arg0) < sizeof full) {
      snprintf(full, sizeof full, "%.*s/%s", (int)n, p, arg0);
      if (executable_file(full))
        return (t->program = commands_strdup(L, full)) ? 0 : commands_oom(L);
    }
    p += n;
    if (*p == ':')
      p++;
  }
  return commands_fail(L, "the program \"%.200s\" is not on PATH (%.300s); install it or give its absolute path", arg0,
                       path);
}

/* ---- argv ---- */

static bool output_name_ok(const char *s, size_t n) {
  if (n == 0 || n > 128 || s[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]) || s[i] == '\0')
      return false;
  return true;
}

/* The first placeholder in s: "{word}" (a letter or '_' then letters,
 * digits or '_'), "{input}" or "{output:...}". Sets [*start, *end) and
 * returns true; other braces ("{}", "{ x }") are plain text. */
static bool find_placeholder(const char *s, size_t *start, size_t *end) {
  for (const char *o = strchr(s, '{'); o; o = strchr(o + 1, '{')) {
    const char *p = o + 1;
    if (strncmp(p, "output:", 7) == 0) {
      p += 7;
      p += strcspn(p, "{}");
    } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
      p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    } else {
      continue;
    }
    if (*p == '}') {
      *start = (size_t)(o - s);
      *end = (size_t)(p + 1 - s);
      return true;
    }
  }
  return false;
}

static size_t param_index(const commands_task_t *t, const char *name, size_t n) {
  for (size_t i = 0; i < t->def.nparams; i++)
    if (strlen(t->def.params[i].name) == n && strncmp(t->def.params[i].name, name, n) == 0)
      return i;
  return SIZE_MAX;
}

/* The task's params as "a, b, c" for a message. */
static void param_names(const commands_task_t *t, char *buf, size_t size) {
  buf[0] = '\0';
  for (size_t i = 0; i < t->def.nparams; i++)
    snprintf(buf + strlen(buf), size - strlen(buf), "%s{%s}", i ? ", " : "", t->def.params[i].name);
  if (!t->def.nparams)
    snprintf(buf, size, "none");
}

static int load_arg(commands_load_t *L, commands_task_t *t, size_t i, const json_t *v, commands_arg_t *a,
                    commands_output_t *outs, bool *used) {
  if (!json_is_string(v))
    return commands_fail(L, "argv[%zu] must be a string; quote it", i);
  const char *s = json_string_value(v);
  size_t start, end, n = strlen(s);
  if (!find_placeholder(s, &start, &end)) {
    a->kind = COMMANDS_ARG_LITERAL;
    return (a->text = commands_strdup(L, s)) ? 0 : commands_oom(L);
  }
  if (start != 0 || end != n)
    return commands_fail(L,
                         "argv[%zu] \"%.200s\" mixes text and a placeholder; a placeholder must be the whole "
                         "argument, e.g. \"%.*s\"",
                         i, s, (int)(end - start), s + start);
  if (i == 0)
    return commands_fail(L, "argv[0] \"%.200s\" is a placeholder; argv[0] must name the program itself", s);
  const char *word = s + 1;
  size_t wn = n - 2;
  if (wn == 5 && strncmp(word, "input", 5) == 0) {
    a->kind = COMMANDS_ARG_INPUT;
    if (!t->input)
      return commands_fail(L, "argv[%zu] is {input} but the task does not take one; add \"input\": true", i);
    return 0;
  }
  if (strncmp(word, "output:", 7) == 0) {
    const char *name = word + 7;
    size_t nn = wn - 7;
    if (!output_name_ok(name, nn))
      return commands_fail(L,
                           "argv[%zu] \"%.200s\": an output's name is 1 to 128 of A-Z a-z 0-9 . _ - and does not "
                           "start with '.'; rename it (e.g. {output:video.mp4})",
                           i, s);
    for (size_t k = 0; k < t->noutputs; k++)
      if (strlen(outs[k].name) == nn && strncmp(outs[k].name, name, nn) == 0)
        return commands_fail(L, "argv[%zu]: the output \"%.*s\" appears twice; give each output its own name", i,
                             (int)nn, name);
    if (t->noutputs == OFFLOAD_MAX_FILES)
      return commands_fail(L, "argv[%zu]: more than %d outputs; a job keeps at most %d files, drop some", i,
                           OFFLOAD_MAX_FILES, OFFLOAD_MAX_FILES);
    a->kind = COMMANDS_ARG_OUTPUT;
    if (!(a->text = commands_strndup(L, name, nn)))
      return commands_oom(L);
    outs[t->noutputs].name = a->text;
    outs[t->noutputs++].content_type = commands_content_type(a->text);
    return 0;
  }
  size_t p = param_index(t, word, wn);
  if (p == SIZE_MAX) {
    char names[256];
    param_names(t, names, sizeof names);
    return commands_fail(L,
                         "argv[%zu] \"%.200s\" names no declared param; declare \"%.*s\" under \"params\" or use "
                         "one of: %s, {input}, {output:NAME}",
                         i, s, (int)wn, word, names);
  }
  a->kind = COMMANDS_ARG_PARAM;
  a->text = t->def.params[p].name;
  a->param = p;
  used[p] = true;
  return 0;
}

int commands_argv_load(commands_load_t *L, commands_task_t *t, const json_t *argv) {
  size_t n = json_array_size(argv);
  if (!json_is_array(argv) || n == 0 || n > COMMANDS_MAX_ARGS)
    return commands_fail(L, "\"argv\" must be a list of 1 to %d strings, the program first, e.g. [\"ffmpeg\", ...]",
                         COMMANDS_MAX_ARGS);
  commands_arg_t *args = commands_alloc(L, n * sizeof *args);
  commands_output_t *outs = commands_alloc(L, OFFLOAD_MAX_FILES * sizeof *outs);
  bool used[COMMANDS_MAX_PARAMS] = {false};
  bool input_used = false;
  if (!args || !outs)
    return commands_oom(L);
  t->args = args;
  t->outputs = outs;
  t->nargs = n;
  for (size_t i = 0; i < n; i++) {
    int rc = load_arg(L, t, i, json_array_get(argv, i), &args[i], outs, used);
    if (rc != 0)
      return rc;
    input_used |= args[i].kind == COMMANDS_ARG_INPUT;
  }
  if (t->input && !input_used)
    return commands_fail(L, "it says \"input\": true but no argument is {input}; add \"{input}\" to argv or drop it");
  for (size_t i = 0; i < t->def.nparams; i++)
    if (!used[i])
      return commands_fail(L, "param \"%s\" is declared but no argument uses it; add \"{%s}\" to argv or remove it",
                           t->def.params[i].name, t->def.params[i].name);
  return resolve_program(L, t, t->args[0].text);
}
