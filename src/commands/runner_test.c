/* runner_test: command tasks run for real (coreutils programs), through
 * `exec-command` (this binary dispatches it, as the server does): hostile
 * strings arrive as one literal argument; outputs are adopted only as
 * regular files the program wrote; non-zero exits, signals and CPU limits
 * fail the job with their reason; cancel stops the group within the grace;
 * the log keeps the last 64 KiB and is saved; progress follows the regex;
 * the working directory goes; a disk that refuses the input fails the job. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/log.h"
#include "commands/run.h"
#include "tasks/test_run.h"
#include "util/clock.h"
#include "util/fault.h"

static const char *const file_text =
    "{\"env\":[\"PATH\"],\"tasks\":["
    "{\"name\":\"t.echo\",\"argv\":[\"printf\",\"%s|%s\",\"{msg}\",\"{n}\"],"
    "\"params\":{\"msg\":{\"type\":\"string\",\"pattern\":\".*\"},\"n\":{\"type\":\"int\",\"default\":7}}},"
    "{\"name\":\"t.copy\",\"argv\":[\"cp\",\"{input}\",\"{output:out.txt}\"],\"input\":true},"
    "{\"name\":\"t.fail\",\"argv\":[\"false\"]},"
    "{\"name\":\"t.sleep\",\"argv\":[\"sleep\",\"30\"]},"
    "{\"name\":\"t.cpu\",\"argv\":[\"sha256sum\",\"/dev/zero\"],\"cpuSeconds\":1},"
    "{\"name\":\"t.seq\",\"argv\":[\"seq\",\"1\",\"100000\"]},"
    "{\"name\":\"t.progress\",\"argv\":[\"printf\",\"10%%\\r50%%\\n100%%\"],"
    "\"progress\":{\"type\":\"regex\",\"pattern\":\"([0-9]+)%\"}},"
    "{\"name\":\"t.none\",\"argv\":[\"true\",\"{output:x.txt}\"]},"
    "{\"name\":\"t.link\",\"argv\":[\"ln\",\"-s\",\"/etc/passwd\",\"{output:x.txt}\"]}"
    "]}";

static commands_t cmds;
static char root[128];
static int seq;

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/offload-runner-test-XXXXXX");
  assert_non_null(mkdtemp(root));
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/commands.json", root);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(file_text, f);
  fclose(f);
  if (commands_load(path, &cmds, err, sizeof err) != 0)
    fail_msg("%s", err);
  commands_runner_init(&cmds, 400);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  commands_free(&cmds);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

typedef struct job {
  run_t *r;
  char id[24], dir[256];
} job_t;

static job_t *job_new(const char *task) {
  job_t *j = calloc(1, sizeof *j);
  const commands_task_t *ct = commands_find(&cmds, task);
  assert_non_null(ct);
  j->r = new_run(&ct->def, NULL, 0, 0);
  snprintf(j->id, sizeof j->id, "job%d", ++seq);
  snprintf(j->dir, sizeof j->dir, "%s/files/%s", root, j->id);
  static char files[200];
  snprintf(files, sizeof files, "%s/files", root);
  j->r->t.files_root = files;
  j->r->t.job_id = j->id;
  return j;
}

static void job_run(job_t *j) { task_run(&j->r->t, j->r->def); }

static void job_free(job_t *j) {
  run_free(j->r);
  free(j);
}

static char *slurp(const char *dir, const char *name, size_t *len) {
  char path[300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = malloc(1 << 20);
  size_t n = fread(buf, 1, 1 << 20, f);
  fclose(f);
  buf[n] = 0;
  if (len)
    *len = n;
  return buf;
}

static bool exists(const char *dir, const char *name) {
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return lstat(path, &st) == 0;
}

static void test_hostile_string_is_one_argument(void **state) {
  (void)state;
  static const char *const hostile[] = {"; rm -rf /", "$(id)", "`id`", "../../etc/passwd", "a b\nc", "*", "--help"};
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    job_t *j = job_new("t.echo");
    json_object_set_new(j->r->params, "msg", json_string(hostile[i]));
    job_run(j);
    assert_complete(j->r);
    char *log = slurp(j->dir, CMDLOG_FILE, NULL), want[64];
    snprintf(want, sizeof want, "%s|7", hostile[i]);
    assert_non_null(log);
    assert_string_equal(log, want);
    assert_false(exists(j->dir, ".run")); /* the working directory went */
    free(log);
    job_free(j);
  }
}

static void test_input_and_output(void **state) {
  (void)state;
  job_t *j = job_new("t.copy");
  j->r->t.input = "the body", j->r->t.input_len = 8, j->r->t.input_type = "text/plain";
  job_run(j);
  assert_complete(j->r);
  assert_int_equal(j->r->result.nfiles, 1);
  assert_string_equal(j->r->result.files[0].name, "out.txt");
  assert_string_equal(j->r->result.files[0].content_type, "text/plain");
  assert_int_equal(j->r->result.files[0].bytes, 8);
  char *out = slurp(j->dir, "out.txt", NULL);
  assert_string_equal(out, "the body");
  free(out);
  job_free(j);
}

static void test_failures_say_why(void **state) {
  (void)state;
  job_t *j = job_new("t.fail");
  job_run(j);
  assert_true(j->r->result.failed);
  assert_string_equal(j->r->result.err_code, "command_failed");
  assert_non_null(strstr(j->r->result.err_message, "exited with status 1"));
  job_free(j);
  j = job_new("t.cpu");
  job_run(j);
  assert_true(j->r->result.failed);
  assert_string_equal(j->r->result.err_code, "command_failed");
  assert_non_null(strstr(j->r->result.err_message, "CPU time limit"));
  job_free(j);
  j = job_new("t.none");
  job_run(j);
  assert_string_equal(j->r->result.err_code, "missing_output");
  job_free(j);
  j = job_new("t.link");
  job_run(j);
  assert_string_equal(j->r->result.err_code, "invalid_output");
  job_free(j);
}

static void *cancel_later(void *arg) {
  run_t *r = arg;
  usleep(200 * 1000);
  atomic_store(&r->cancel, true);
  return NULL;
}

static void test_cancel_stops_the_group(void **state) {
  (void)state;
  job_t *j = job_new("t.sleep");
  pthread_t th;
  pthread_create(&th, NULL, cancel_later, j->r);
  uint64_t t0 = clock_mono_ns();
  job_run(j);
  double ms = (double)(clock_mono_ns() - t0) / 1e6;
  pthread_join(th, NULL);
  /* sleep dies on SIGTERM at once: well within the 400 ms grace. */
  if (ms > 200 + 400 + 300)
    fail_msg("the run took %.0f ms after a cancel at 200 ms (grace 400 ms)", ms);
  assert_false(j->r->result.failed); /* a canceled run sets nothing: the pool says canceled */
  assert_false(exists(j->dir, ".run"));
  job_free(j);
}

static void test_log_keeps_the_tail(void **state) {
  (void)state;
  job_t *j = job_new("t.seq");
  job_run(j);
  assert_complete(j->r);
  size_t len;
  char *log = slurp(j->dir, CMDLOG_FILE, &len);
  assert_int_equal(len, CMDLOG_TAIL);
  assert_string_equal(log + len - 7, "100000\n");
  free(log);
  job_free(j);
}

static void test_progress_from_regex(void **state) {
  (void)state;
  job_t *j = job_new("t.progress");
  job_run(j);
  assert_complete(j->r);
  assert_true(progress(j->r) == 1.0); /* 100% on a last line without a newline */
  job_free(j);
}

static void test_disk_full_fails_the_job(void **state) {
  (void)state;
  job_t *j = job_new("t.copy");
  j->r->t.input = "x", j->r->t.input_len = 1;
  fault_arm(FAULT_CMD_DISK, 1);
  job_run(j);
  assert_true(j->r->result.failed);
  assert_non_null(strstr(j->r->result.err_message, "input could not be written"));
  assert_false(exists(j->dir, ".run"));
  job_free(j);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "exec-command") == 0) /* the runner spawns /proc/self/exe */
    return commands_exec_main(argc, argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hostile_string_is_one_argument),
      cmocka_unit_test(test_input_and_output),
      cmocka_unit_test(test_failures_say_why),
      cmocka_unit_test(test_cancel_stops_the_group),
      cmocka_unit_test(test_log_keeps_the_tail),
      cmocka_unit_test(test_progress_from_regex),
      cmocka_unit_test(test_disk_full_fails_the_job),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
