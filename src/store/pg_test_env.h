/* store/pg_test_env: for unit tests only (include after cmocka.h): a
 * throwaway PostgreSQL 15 for the test's group, started and stopped by
 * scripts/pgtmp.py (a temp dir, a unix socket, an unprivileged user), and
 * SQL run on it directly. pg_up and pg_down_all are cmocka group
 * fixtures; `url` is the libpq connection string, `files` a files dir. */
#ifndef OFFLOAD_STORE_PG_TEST_ENV_H
#define OFFLOAD_STORE_PG_TEST_ENV_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char pgdir[256], url[512], files[300];

static int run_cmd(const char *what) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "python3 %s/scripts/pgtmp.py %s %s > %s/url.txt 2>%s/err.txt", OFFLOAD_SOURCE_DIR, what,
           pgdir, pgdir, pgdir);
  return system(cmd);
}

static int pg_up(void **state) {
  (void)state;
  snprintf(pgdir, sizeof pgdir, "/tmp/offload-pgtest-%d", (int)getpid());
  if (mkdir(pgdir, 0755) != 0 || run_cmd("start") != 0) {
    fprintf(stderr, "cannot start PostgreSQL (scripts/pgtmp.py; install postgresql-15)\n");
    return -1;
  }
  char path[300];
  snprintf(path, sizeof path, "%s/url.txt", pgdir);
  FILE *f = fopen(path, "r");
  if (!f || !fgets(url, sizeof url, f))
    return -1;
  fclose(f);
  url[strcspn(url, "\n")] = '\0';
  snprintf(files, sizeof files, "%s/files", pgdir);
  return 0;
}

static int pg_down_all(void **state) {
  (void)state;
  run_cmd("stop");
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", pgdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* SQL run directly (the test's own connection). */
static void sql(const char *q) {
  PGconn *c = PQconnectdb(url);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, q);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", q, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
}

#endif
