/* commands_test_env: what the commands module's tests share: a temporary
 * directory, commands files written into it, loading them. Include after
 * cmocka.h. */
#ifndef OFFLOAD_COMMANDS_TEST_ENV_H
#define OFFLOAD_COMMANDS_TEST_ENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/commands.h"
#include "util/err.h"

typedef struct cmd_env {
  char dir[64];
  char path[128]; /* dir/commands.json */
  char err[1024];
} cmd_env_t;

static inline void cmd_env_init(cmd_env_t *e) {
  snprintf(e->dir, sizeof e->dir, "/tmp/offload-commands-XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  snprintf(e->path, sizeof e->path, "%s/commands.json", e->dir);
}

/* Writes `text` to dir/name (mode 0755 when exec), with every ' turned
 * into " so the tests' JSON reads without escapes. */
static inline void cmd_env_write(cmd_env_t *e, const char *name, const char *text, bool exec) {
  char p[192];
  snprintf(p, sizeof p, "%s/%s", e->dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  for (const char *s = text; *s; s++)
    fputc(*s == '\'' ? '"' : *s, f);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(p, exec ? 0755 : 0644), 0);
}

/* Loads `text` (quotes as in cmd_env_write) as dir/commands.json. */
static inline int cmd_env_load(cmd_env_t *e, const char *text, commands_t *c) {
  cmd_env_write(e, "commands.json", text, false);
  e->err[0] = '\0';
  return commands_load(e->path, c, e->err, sizeof e->err);
}

static inline void cmd_env_fini(cmd_env_t *e) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);
}

#endif
