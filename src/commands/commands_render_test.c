/* commands_render_test: a command task's argv and environment
 * (commands_render_argv, commands_render_env), its params validated by
 * tasks_validate against its def, output media types; and, where ffmpeg is
 * installed, the shipped example's two argv run for real on a clip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include "commands/commands_test_env.h"
#include "tasks/tasks.h"
#include "util/fault.h"

extern char **environ;

typedef struct fx {
  cmd_env_t e;
  commands_t c;
} fx_t;

static const char file[] =
    "{'env': ['PATH', 'OFFLOAD_TEST_PASS', 'OFFLOAD_TEST_UNSET'], 'tasks': ["
    " {'name': 'echo', 'argv': ['printf', '%s\\\\n', '{msg}'],"
    "  'params': {'msg': {'type': 'string', 'maxLength': 65536, 'pattern': '.*'}}},"
    " {'name': 'safe', 'argv': ['printf', '%s\\\\n', '{msg}'], 'params': {'msg': {'type': 'string'}}},"
    " {'name': 'typed', 'argv': ['printf', '{i}', '{x}', '{b}', '{e}', '{opt}', '{input}', '{output:out.webm}', 'end'],"
    "  'params': {'i': {'type': 'int', 'min': -10, 'max': 10, 'default': -5},"
    "   'x': {'type': 'number', 'default': 0.1},"
    "   'b': {'type': 'bool', 'default': false},"
    "   'e': {'type': 'enum', 'values': ['libx264', 'libvpx-vp9']},"
    "   'opt': {'type': 'string', 'required': false}},"
    "  'input': true},"
    " {'name': 'half', 'argv': ['printf', '{x}', '{y}'],"
    "  'params': {'x': {'type': 'number', 'min': 0}, 'y': {'type': 'number', 'max': 1, 'required': false}}}"
    "]}";

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  cmd_env_init(&f->e);
  if (cmd_env_load(&f->e, file, &f->c) != 0)
    fail_msg("%s", f->e.err);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  commands_free(&f->c);
  cmd_env_fini(&f->e);
  free(f);
  return 0;
}

/* Renders `params` (JSON text) for task `name` after validating it the way
 * a submission is; returns the argv (free()) or NULL when validation
 * refused it (err says why). */
static char **render(fx_t *f, const char *name, const char *params, param_error_t *err) {
  const commands_task_t *t = commands_find(&f->c, name);
  assert_non_null(t);
  json_t *p = json_loads(params, 0, NULL);
  assert_non_null(p);
  char **argv = NULL;
  if (tasks_validate(&t->def, p, err))
    assert_int_equal(commands_render_argv(t, p, "/jobs/j1/.input", "/jobs/j1", &argv), 0);
  json_decref(p);
  return argv;
}

static size_t count(char **argv) {
  size_t n = 0;
  while (argv[n])
    n++;
  return n;
}

/* Each hostile string is one argument, byte for byte. */
static void test_hostile_strings_stay_one_argument(void **state) {
  fx_t *f = *state;
  static const char *const hostile[] = {
      "; rm -rf /", "$(id)",
      "`id`",       "../../etc/passwd",
      "two\nlines", "a b  c",
      "'\"\\",      "*",
      "{msg}",      "| cat /etc/shadow",
      "&& reboot",  "--help",
      "-rf",        "\t",
      "",           ">out",
      "%s%n",       "\xc3\xa9t\xc3\xa9",
  };
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    json_t *p = json_pack("{s:s}", "msg", hostile[i]);
    char *text = json_dumps(p, 0);
    param_error_t err;
    char **argv = render(f, "echo", text, &err);
    if (!argv)
      fail_msg("\"%s\" refused: %s", hostile[i], err.message);
    assert_int_equal(count(argv), 3);
    assert_string_equal(argv[0], "printf");
    assert_string_equal(argv[1], "%s\\n");
    assert_string_equal(argv[2], hostile[i]);
    free(argv);
    free(text);
    json_decref(p);
  }
  /* The largest string its maxLength allows: still one argument. */
  static char big[65537];
  memset(big, 'x', sizeof big - 1);
  json_t *p = json_pack("{s:s}", "msg", big);
  char *text = json_dumps(p, 0);
  param_error_t err;
  char **argv = render(f, "echo", text, &err);
  assert_non_null(argv);
  assert_int_equal(count(argv), 3);
  assert_int_equal(strlen(argv[2]), 65536);
  free(argv);
  free(text);
  json_decref(p);
}

/* What a submission's validation refuses, naming the param (a 400). */
static void test_validation_refuses(void **state) {
  fx_t *f = *state;
  static const struct {
    const char *task, *params, *param, *words;
  } bad[] = {
      {"safe", "{\"msg\": \"-rf\"}", "params.msg", "must match the pattern ([^-].*)?"},
      {"safe", "{\"msg\": \"--output=/etc/passwd\"}", "params.msg", "pattern"},
      {"safe", "{}", "params.msg", "needs the parameter msg"},
      {"safe", "{\"msg\": 5}", "params.msg", "must be a string"},
      {"safe", "{\"msg\": \"ok\", \"other\": 1}", "params.other", "no parameter named"},
      {"typed", "{\"e\": \"libx265\"}", "params.e", "must be one of: libx264, libvpx-vp9"},
      {"typed", "{\"e\": \"libx264\", \"i\": 11}", "params.i", "from -10 to 10"},
      {"typed", "{\"e\": \"libx264\", \"i\": \"5\"}", "params.i", "integer"},
      {"typed", "{\"e\": \"libx264\", \"x\": \"0.5\"}", "params.x", "number"},
      {"typed", "{\"e\": \"libx264\", \"b\": 1}", "params.b", "true or false"},
      {"half", "{\"x\": -0.5}", "params.x", "must be a number of at least 0."},
      {"half", "{\"x\": -1e308, \"y\": 1}", "params.x", "must be a number of at least 0."},
      {"half", "{\"x\": 1, \"y\": 2}", "params.y", "must be a number of at most 1."},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    param_error_t err;
    char **argv = render(f, bad[i].task, bad[i].params, &err);
    if (argv)
      fail_msg("%s %s passed", bad[i].task, bad[i].params);
    assert_string_equal(err.param, bad[i].param);
    if (!strstr(err.message, bad[i].words))
      fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].params, err.message, bad[i].words);
  }
  /* 1 MB, over the default maxLength of 1024. */
  static char big[1 << 20];
  memset(big, 'a', sizeof big - 1);
  json_t *p = json_pack("{s:s}", "msg", big);
  param_error_t err;
  assert_false(tasks_validate(&commands_find(&f->c, "safe")->def, p, &err));
  assert_string_equal(err.param, "params.msg");
  assert_non_null(strstr(err.message, "at most 1024 bytes"));
  json_decref(p);
}

static void test_types_defaults_paths(void **state) {
  fx_t *f = *state;
  param_error_t err;
  char **argv = render(f, "typed", "{\"e\": \"libvpx-vp9\"}", &err);
  assert_non_null(argv);
  /* Defaults fill in; the optional param without one is left out. */
  const char *want[] = {"printf", "-5", "0.1", "false", "libvpx-vp9", "/jobs/j1/.input", "/jobs/j1/out.webm", "end"};
  assert_int_equal(count(argv), 8);
  for (size_t i = 0; i < 8; i++)
    assert_string_equal(argv[i], want[i]);
  free(argv);

  argv = render(f, "typed", "{\"e\": \"libx264\", \"i\": 10, \"x\": 2.5, \"b\": true, \"opt\": \"\"}", &err);
  assert_non_null(argv);
  assert_int_equal(count(argv), 9);
  assert_string_equal(argv[1], "10");
  assert_string_equal(argv[2], "2.5");
  assert_string_equal(argv[3], "true");
  assert_string_equal(argv[5], ""); /* given, though empty: an argument */
  free(argv);

  static const struct {
    const char *x, *text;
  } reals[] = {{"1", "1"},
               {"-0.0", "-0"},
               {"1e21", "1e+21"},
               {"0.3333333333333333", "0.3333333333333333"},
               {"123456789.125", "123456789.125"},
               {"5e-324", "5e-324"},
               {"0.1", "0.1"},
               {"10000", "10000"},
               {"86400.0", "86400"},
               {"1e-5", "0.00001"},
               {"-2.5e-7", "-2.5e-07"},
               {"9007199254740993.0", "9007199254740992"},
               {"1.5e16", "1.5e+16"}};
  for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
    char params[128];
    snprintf(params, sizeof params, "{\"e\": \"libx264\", \"x\": %s}", reals[i].x);
    argv = render(f, "typed", params, &err);
    assert_non_null(argv);
    assert_string_equal(argv[2], reals[i].text);
    free(argv);
  }
}

/* Unvalidated params, or a missing path: refused, never guessed. */
static void test_render_refuses(void **state) {
  fx_t *f = *state;
  const commands_task_t *t = commands_find(&f->c, "typed");
  char **argv = (char **)1;
  json_t *ok = json_pack("{s:s}", "e", "libx264");
  assert_int_equal(commands_render_argv(t, ok, NULL, "/d", &argv), OFF_EINVAL);
  assert_null(argv);
  assert_int_equal(commands_render_argv(t, ok, "/in", NULL, &argv), OFF_EINVAL);
  json_t *p = json_object();
  assert_int_equal(commands_render_argv(t, p, "/in", "/d", &argv), OFF_EINVAL); /* e is required */
  json_object_set_new(p, "e", json_integer(1));
  assert_int_equal(commands_render_argv(t, p, "/in", "/d", &argv), OFF_EINVAL);
  json_object_set_new(p, "e", json_string("libx264"));
  json_object_set_new(p, "i", json_string("5"));
  assert_int_equal(commands_render_argv(t, p, "/in", "/d", &argv), OFF_EINVAL);
  json_decref(p);
  /* A NUL byte would cut the argument short. */
  p = json_object();
  json_object_set_new(p, "msg", json_stringn("ok\0; rm -rf /", 13));
  assert_int_equal(commands_render_argv(commands_find(&f->c, "echo"), p, NULL, NULL, &argv), OFF_EINVAL);
  json_decref(p);
  /* Every allocation failing in turn. */
  for (int n = 1; n <= 2; n++) {
    fault_arm(FAULT_ALLOC, n);
    assert_int_equal(commands_render_argv(t, ok, "/in", "/d", &argv), OFF_ENOMEM);
    fault_arm(FAULT_ALLOC, 0);
  }
  json_decref(ok);
}

static void test_env_allow_list(void **state) {
  fx_t *f = *state;
  char *env_in[] = {"HOME=/root",
                    "PATH=/usr/bin:/bin",
                    "OFFLOAD_TEST_PASSX=no",
                    "SECRET_TOKEN=abc",
                    "OFFLOAD_TEST_PASS=a=b c",
                    "LD_PRELOAD=/evil.so",
                    NULL};
  char **envp;
  assert_int_equal(commands_render_env(&f->c, env_in, &envp), 0);
  assert_int_equal(count(envp), 2);
  assert_string_equal(envp[0], "PATH=/usr/bin:/bin");
  assert_string_equal(envp[1], "OFFLOAD_TEST_PASS=a=b c");
  free(envp);
  assert_int_equal(commands_render_env(&f->c, NULL, &envp), 0);
  assert_null(envp[0]);
  free(envp);
  fault_arm(FAULT_ALLOC, 1);
  assert_int_equal(commands_render_env(&f->c, env_in, &envp), OFF_ENOMEM);
  fault_arm(FAULT_ALLOC, 0);
}

static void test_content_types(void **state) {
  (void)state;
  static const char *const pairs[][2] = {
      {"a.mp4", "video/mp4"},
      {"a.webm", "video/webm"},
      {"a.JPG", "image/jpeg"},
      {"a.jpeg", "image/jpeg"},
      {"a.png", "image/png"},
      {"a.webp", "image/webp"},
      {"a.gif", "image/gif"},
      {"a.txt", "text/plain"},
      {"a.json", "application/json"},
      {"a.pdf", "application/pdf"},
      {"a.csv", "text/csv"},
      {"a.mkv", "video/x-matroska"},
      {"a.mp3", "audio/mpeg"},
      {"a.wav", "audio/wav"},
      {"a.ogg", "audio/ogg"},
      {"a.tar.gz", "application/octet-stream"},
      {"README", "application/octet-stream"},
      {"mp4", "application/octet-stream"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    assert_string_equal(commands_content_type(pairs[i][0]), pairs[i][1]);
}

/* ---- the shipped example, run for real ---- */

static int run(char *const argv[], const char *program) {
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawn(&pid, program, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return -1;
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_example_runs_with_ffmpeg(void **state) {
  fx_t *f = *state;
  commands_t c;
  /* make test installs ffmpeg (scripts/install-deps.sh test): without it
   * this fails, never skips. */
  if (commands_load(OFFLOAD_SOURCE_DIR "/examples/commands.json", &c, f->e.err, sizeof f->e.err) != 0)
    fail_msg("%s", f->e.err);
  const commands_task_t *t = commands_find(&c, "video.transcode");
  char clip[160], thumb[160];
  snprintf(clip, sizeof clip, "%s/clip.mp4", f->e.dir);
  char *make[] = {"ffmpeg", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x180:rate=25",
                  "-c:v",   "libx264",  clip, NULL};
  assert_int_equal(run(make, t->program), 0);
  param_error_t err;
  json_t *p = json_pack("{s:s, s:i, s:s}", "codec", "libvpx-vp9", "crf", 40, "scale", "scale=160:-2");
  assert_true(tasks_validate(&t->def, p, &err));
  char **argv;
  assert_int_equal(commands_render_argv(t, p, clip, f->e.dir, &argv), 0);
  assert_int_equal(run(argv, t->program), 0);
  free(argv);
  json_decref(p);
  struct stat st;
  snprintf(thumb, sizeof thumb, "%s/video.mp4", f->e.dir);
  assert_int_equal(stat(thumb, &st), 0);
  assert_true(st.st_size > 1000);

  t = commands_find(&c, "video.thumbnail");
  p = json_pack("{s:f}", "second", 1.5);
  assert_true(tasks_validate(&t->def, p, &err));
  assert_int_equal(commands_render_argv(t, p, clip, f->e.dir, &argv), 0);
  assert_int_equal(run(argv, t->program), 0);
  free(argv);
  json_decref(p);
  snprintf(thumb, sizeof thumb, "%s/thumb.jpg", f->e.dir);
  FILE *jpg = fopen(thumb, "rb");
  assert_non_null(jpg);
  unsigned char magic[3] = {0};
  assert_int_equal(fread(magic, 1, 3, jpg), 3);
  fclose(jpg);
  assert_true(magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff);
  commands_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_hostile_strings_stay_one_argument, setup, teardown),
      cmocka_unit_test_setup_teardown(test_validation_refuses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_types_defaults_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_render_refuses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_env_allow_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_content_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_example_runs_with_ffmpeg, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tasks_patterns_fini();
  return rc;
}
