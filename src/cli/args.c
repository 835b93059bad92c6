/* cli/args: see args.h. */
#include "cli/args.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int find_long(const cli_opt_t *opts, int nopts, const char *name, size_t len) {
  for (int i = 0; i < nopts; i++)
    if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
      return i;
  return -1;
}

static int find_short(const cli_opt_t *opts, int nopts, char letter) {
  for (int i = 0; i < nopts; i++)
    if (opts[i].letter && opts[i].letter == letter)
      return i;
  return -1;
}

int cli_args_parse(const cli_opt_t *opts, int nopts, int argc, char *const *argv, cli_args_t *out, char *err,
                   size_t errlen) {
  memset(out, 0, sizeof *out);
  bool options = true;
  for (int i = 0; i < argc; i++) {
    const char *w = argv[i];
    /* "-" alone, and one dash before more than one letter, are arguments:
     * short options are never bundled, and a job id may start with '-'. */
    if (!options || w[0] != '-' || w[1] == '\0' || (w[1] != '-' && w[2] != '\0')) {
      if (out->npos == CLI_POS_MAX) {
        snprintf(err, errlen, "too many arguments (at most %d)", CLI_POS_MAX);
        return -1;
      }
      out->pos[out->npos++] = w;
      continue;
    }
    if (strcmp(w, "--") == 0) {
      options = false;
      continue;
    }
    int k;
    const char *inline_val = NULL;
    char shown[64];
    if (w[1] == '-') {
      const char *name = w + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      k = find_long(opts, nopts, name, len);
      snprintf(shown, sizeof shown, "--%.*s", (int)(len < 40 ? len : 40), name);
      if (eq)
        inline_val = eq + 1;
    } else {
      k = w[2] == '\0' ? find_short(opts, nopts, w[1]) : -1;
      snprintf(shown, sizeof shown, "%.40s", w);
    }
    if (k < 0) {
      snprintf(err, errlen, "unknown option %s", shown);
      return -1;
    }
    if (out->val[k]) {
      snprintf(err, errlen, "%s is given twice", shown);
      return -1;
    }
    if (!opts[k].arg) {
      if (inline_val) {
        snprintf(err, errlen, "%s takes no value", shown);
        return -1;
      }
      out->val[k] = "";
      continue;
    }
    if (!inline_val) {
      if (i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value (%s)", shown, opts[k].arg);
        return -1;
      }
      inline_val = argv[++i];
    }
    out->val[k] = inline_val;
  }
  return 0;
}
