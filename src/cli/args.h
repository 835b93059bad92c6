/* cli/args: the client's option parser. Options may come before, between or
 * after the positional arguments: `--name VALUE`, `--name=VALUE`, `-x VALUE`,
 * `--switch`; `--` ends the options. `-` alone is a positional argument, and
 * so is a word of one dash and more than one character (no bundling of short
 * options: a job id may start with '-').
 * An option given twice, an unknown one, a missing value or a value given
 * to a switch is an error with a one-line message.
 *
 * Threads: any; no state. It keeps pointers into argv, never copies. */
#ifndef OFFLOAD_CLI_ARGS_H
#define OFFLOAD_CLI_ARGS_H

#include <stddef.h>

typedef struct cli_opt {
  const char *name; /* the long name, without "--" */
  char letter;      /* the short name, or 0 */
  const char *arg;  /* the value's placeholder in help, NULL for a switch */
  const char *help;
} cli_opt_t;

#define CLI_OPTS_MAX 16
#define CLI_POS_MAX 256

typedef struct cli_args {
  const char *val[CLI_OPTS_MAX]; /* by the option's index: its value, "" for a switch, NULL if absent */
  const char *pos[CLI_POS_MAX];
  int npos;
} cli_args_t;

/* Parses argv[0..argc) (the words after the command's name) against
 * opts[0..nopts) (nopts <= CLI_OPTS_MAX). Returns 0, or -1 with a sentence
 * in `err`. */
int cli_args_parse(const cli_opt_t *opts, int nopts, int argc, char *const *argv, cli_args_t *out, char *err,
                   size_t errlen);

#endif
