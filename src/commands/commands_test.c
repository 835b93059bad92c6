/* commands_test: loading a --commands file (commands/commands.h): a valid
 * file read into tasks, defs and specs field by field; the shipped files
 * (examples/commands.json, tests/e2e/commands_test.json); every mistake a
 * file can hold refused with a message that names the file, the task and
 * the fix; allocation failures at every step. Rendering is
 * commands_render_test.c's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "commands/commands_test_env.h"
#include "util/fault.h"

static int setup(void **state) {
  cmd_env_t *e = calloc(1, sizeof *e);
  cmd_env_init(e);
  *state = e;
  return 0;
}

static int teardown(void **state) {
  cmd_env_fini(*state);
  free(*state);
  return 0;
}

static const char valid[] =
    "{'env': ['PATH', 'LANG'], 'tasks': ["
    " {'name': 'video.transcode', 'description': 'Transcodes.',"
    "  'argv': ['printf', '-i', '{input}', '-crf', '{crf}', '{codec}', '{fast}', '{ratio}', '{label}', '{note}',"
    "           '-progress', 'pipe:1', '{output:video.mp4}', '{output:poster.JPG}', '{}', '{ x }'],"
    "  'params': {"
    "   'crf': {'type': 'int', 'min': 0, 'max': 51, 'default': 23, 'description': 'quality'},"
    "   'codec': {'type': 'enum', 'values': ['libx264', 'libvpx-vp9'], 'default': 'libx264'},"
    "   'fast': {'type': 'bool', 'default': true},"
    "   'ratio': {'type': 'number', 'min': 0.5},"
    "   'label': {'type': 'string', 'maxLength': 16, 'pattern': '[a-z]+'},"
    "   'note': {'type': 'string', 'required': false}},"
    "  'input': true, 'inputTypes': ['video/mp4', 'video/webm'], 'timeoutMs': 60000,"
    "  'progress': {'type': 'ffmpeg'}, 'memoryMB': 512, 'cpuSeconds': 30},"
    " {'name': 'count', 'argv': ['/usr/bin/printf', '%s', '{n}'], 'params': {'n': {'type': 'int'}},"
    "  'progress': {'type': 'regex', 'pattern': '([0-9]+)%'}}"
    "]}";

static void test_valid_file(void **state) {
  cmd_env_t *e = *state;
  commands_t c;
  assert_int_equal(cmd_env_load(e, valid, &c), 0);
  assert_string_equal(c.path, e->path);
  assert_int_equal(c.nenv, 2);
  assert_string_equal(c.env[0], "PATH");
  assert_null(c.env[2]);
  assert_int_equal(c.n, 2);

  const commands_task_t *t = commands_find(&c, "video.transcode");
  assert_ptr_equal(t, &c.tasks[0]);
  assert_string_equal(t->def.name, "video.transcode");
  assert_string_equal(t->def.description, "Transcodes.");
  assert_null(t->def.run);
  assert_true(t->program[0] == '/' && strcmp(t->program + strlen(t->program) - 7, "/printf") == 0);
  assert_int_equal(t->nargs, 16);
  assert_int_equal(t->args[0].kind, COMMANDS_ARG_LITERAL);
  assert_string_equal(t->args[0].text, "printf"); /* as written: the runner execs t->program */
  assert_int_equal(t->args[2].kind, COMMANDS_ARG_INPUT);
  assert_int_equal(t->args[4].kind, COMMANDS_ARG_PARAM);
  assert_string_equal(t->args[4].text, "crf");
  assert_int_equal(t->args[4].param, 0);
  assert_int_equal(t->args[5].param, 1);
  assert_int_equal(t->args[12].kind, COMMANDS_ARG_OUTPUT);
  assert_string_equal(t->args[12].text, "video.mp4");
  assert_int_equal(t->args[14].kind, COMMANDS_ARG_LITERAL); /* braces that are no placeholder */
  assert_string_equal(t->args[14].text, "{}");
  assert_string_equal(t->args[15].text, "{ x }");
  assert_int_equal(t->noutputs, 2);
  assert_string_equal(t->outputs[0].content_type, "video/mp4");
  assert_string_equal(t->outputs[1].name, "poster.JPG");
  assert_string_equal(t->outputs[1].content_type, "image/jpeg");
  assert_true(t->input && t->def.input == OFFLOAD_INPUT_REQUIRED && t->def.files);
  assert_string_equal(t->def.input_types[1], "video/webm");
  assert_null(t->def.input_types[2]);
  assert_int_equal(t->timeout_ms, 60000);
  assert_int_equal(t->progress, COMMANDS_PROGRESS_FFMPEG);
  assert_int_equal(t->memory_mb, 512);
  assert_int_equal(t->cpu_seconds, 30);

  assert_int_equal(t->def.nparams, 6);
  const offload_param_spec_t *p = t->def.params;
  assert_string_equal(p[0].name, "crf");
  assert_int_equal(p[0].type, OFFLOAD_PARAM_INTEGER);
  assert_true(p[0].min == 0 && p[0].max == 51 && !p[0].required);
  assert_string_equal(p[0].dflt, "23");
  assert_string_equal(p[0].description, "quality");
  assert_int_equal(p[1].type, OFFLOAD_PARAM_STRING);
  assert_string_equal(p[1].choices[1], "libvpx-vp9");
  assert_null(p[1].choices[2]);
  assert_string_equal(p[1].dflt, "\"libx264\"");
  assert_int_equal(p[2].type, OFFLOAD_PARAM_BOOLEAN);
  assert_string_equal(p[2].dflt, "true");
  assert_int_equal(p[3].type, OFFLOAD_PARAM_NUMBER);
  assert_true(p[3].required && p[3].min_real == 0.5 && isinf(p[3].max_real) && !p[3].dflt);
  assert_true(p[4].required && p[4].max_len == 16);
  assert_string_equal(p[4].pattern, "[a-z]+");
  assert_null(p[4].choices);
  assert_true(!p[5].required && p[5].max_len == COMMANDS_STRING_DEFAULT);
  assert_string_equal(p[5].pattern, COMMANDS_DEFAULT_PATTERN);

  t = commands_find(&c, "count");
  assert_string_equal(t->program, "/usr/bin/printf");
  assert_string_equal(t->def.description, "Runs /usr/bin/printf (a command task).");
  assert_true(!t->input && t->def.input == OFFLOAD_INPUT_NONE && !t->def.files && !t->def.input_types);
  assert_true(t->def.params[0].min == -COMMANDS_INT_LIMIT && t->def.params[0].max == COMMANDS_INT_LIMIT);
  assert_int_equal(t->progress, COMMANDS_PROGRESS_REGEX);
  assert_string_equal(t->progress_pattern, "([0-9]+)%");
  assert_int_equal(t->progress_re.re_nsub, 1);
  regmatch_t m[2];
  assert_int_equal(regexec(&t->progress_re, "frame 3: 42%", 2, m, 0), 0);
  assert_int_equal(m[1].rm_so, 9);
  assert_int_equal(t->timeout_ms, 0);
  assert_null(commands_find(&c, "nope"));

  commands_free(&c);
  assert_int_equal(c.n, 0);
  commands_free(&c); /* twice is harmless */
  commands_free(NULL);
}

/* The shipped example, with a stand-in ffmpeg on PATH (this test needs no
 * real one; commands_render_test.c runs the real one where there is one). */
static void test_example_file(void **state) {
  cmd_env_t *e = *state;
  cmd_env_write(e, "ffmpeg", "#!/bin/false\n", true);
  char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
  setenv("PATH", e->dir, 1);
  commands_t c;
  int rc = commands_load(OFFLOAD_SOURCE_DIR "/examples/commands.json", &c, e->err, sizeof e->err);
  if (old)
    setenv("PATH", old, 1);
  free(old);
  if (rc != 0)
    fail_msg("%s", e->err);
  assert_int_equal(c.n, 2);
  const commands_task_t *t = commands_find(&c, "video.transcode");
  char want[256];
  snprintf(want, sizeof want, "%s/ffmpeg", e->dir);
  assert_string_equal(t->program, want);
  assert_int_equal(t->progress, COMMANDS_PROGRESS_FFMPEG);
  assert_true(t->input && t->noutputs == 1);
  assert_string_equal(t->outputs[0].content_type, "video/mp4");
  t = commands_find(&c, "video.thumbnail");
  assert_string_equal(t->outputs[0].content_type, "image/jpeg");
  assert_int_equal(t->progress, COMMANDS_PROGRESS_NONE);
  commands_free(&c);

  /* The e2e tests' file uses coreutils only. */
  rc = commands_load(OFFLOAD_SOURCE_DIR "/tests/e2e/commands_test.json", &c, e->err, sizeof e->err);
  if (rc != 0)
    fail_msg("%s", e->err);
  assert_non_null(commands_find(&c, "test.echo"));
  commands_free(&c);
}

/* ---- every mistake: file, task, fix ---- */

typedef struct bad {
  const char *text;
  const char *task; /* NULL: the message names no task */
  const char *words[3];
} bad_t;

#define T1(task) "{'tasks': [" task "]}"
#define ECHO(params, argv) "{'name': 't', 'argv': ['printf', " argv "], 'params': {" params "}}"

static const bad_t bads[] = {
    {"{'tasks': [], 'envs': []}", NULL, {"unknown key \"envs\"", "check the spelling"}},
    {"{'tasks': []}", NULL, {"\"tasks\" must be a list of 1 to", "add one"}},
    {"[1]", NULL, {"must hold a JSON object"}},
    {"{'tasks': [ {'name': 't', 'argv': ['printf'] ", NULL, {"line 1, column", "fix the JSON"}},
    {"{'tasks': [], 'tasks': []}", NULL, {"duplicate", "fix the JSON"}},
    {"{'env': ['1BAD'], "
     "'tasks': [{'name': 't', 'argv': ['printf']}]}",
     NULL,
     {"env[0]", "fix it"}},
    {"{'env': ['A-B'],"
     "'tasks': [{'name': 't', 'argv': ['printf']}]}",
     NULL,
     {"env[0]", "variable's name"}},
    {"{'env': ['PATH', 'PATH'], 'tasks': [{'name': 't', 'argv': ['printf']}]}", NULL, {"listed twice"}},
    /* the task */
    {T1("{'name': 'Video', 'argv': ['printf']}"), NULL, {"tasks[0]", "\"name\" must be", "video.transcode"}},
    {T1("{'name': 'a/b', 'argv': ['printf']}"), NULL, {"tasks[0]", "\"name\""}},
    {T1("{'name': 'a234567890123456789012345678901234567890123456789012345678901234', 'argv': ['printf']}"),
     NULL,
     {"tasks[0]", "1 to 63"}},
    {T1("{'name': '.x', 'argv': ['printf']}"), NULL, {"tasks[0]", "starting with a letter or digit"}},
    {T1("{'argv': ['printf']}"), NULL, {"tasks[0]", "\"name\""}},
    {T1("{'name': 't', 'argv': ['printf']}, {'name': 't', 'argv': ['printf']}"), "t", {"taken by tasks[0]"}},
    {T1("{'name': 'report', 'argv': ['printf']}"), "report", {"built-in task", "cmd.report"}},
    {T1("{'name': 't', 'argv': ['printf'], 'timeoutMS': 5}"),
     "t",
     {"unknown key \"timeoutMS\"; did you mean \"timeoutMs\"?"}},
    {T1("{'name': 't', 'argv': ['printf'], 'timeout': 5}"), "t", {"unknown key \"timeout\"", "timeoutMs", "spelling"}},
    {T1("{'name': 't'}"), "t", {"no \"argv\"", "add the program"}},
    {T1("{'name': 't', 'argv': []}"), "t", {"\"argv\" must be a list"}},
    {T1("{'name': 't', 'argv': ['printf', 42]}"), "t", {"argv[1] must be a string"}},
    {T1("{'name': 't', 'argv': ['{x}'], 'params': {'x': {'type': 'int'}}}"), "t", {"argv[0]", "name the program"}},
    {T1("{'name': 't', 'argv': ['no-such-program-offload']}"), "t", {"not on PATH", "install it or give its absolute"}},
    {T1("{'name': 't', 'argv': ['/nonexistent/prog']}"), "t", {"not an executable file", "fix the path"}},
    {T1("{'name': 't', 'argv': ['/etc/passwd']}"), "t", {"not an executable file"}},
    {T1("{'name': 't', 'argv': ['./printf']}"), "t", {"absolute path", "bare name found on PATH"}},
    {T1("{'name': 't', 'argv': ['printf'], 'timeoutMs': 0}"), "t", {"\"timeoutMs\" must be an integer from 1"}},
    {T1("{'name': 't', 'argv': ['printf'], 'timeoutMs': 86400001}"), "t", {"\"timeoutMs\""}},
    {T1("{'name': 't', 'argv': ['printf'], 'memoryMB': 0}"), "t", {"\"memoryMB\""}},
    {T1("{'name': 't', 'argv': ['printf'], 'cpuSeconds': '5'}"), "t", {"\"cpuSeconds\""}},
    {T1("{'name': 't', 'argv': ['printf'], 'description': 5}"), "t", {"\"description\" must be a string"}},
    /* placeholders */
    {T1(ECHO("'msg': {'type': 'string'}", "'x{msg}'")),
     "t",
     {"argv[1] \"x{msg}\" mixes text and a placeholder; a placeholder must be the whole argument, e.g. \"{msg}\""}},
    {T1(ECHO("'msg': {'type': 'string'}", "'{msg}', '--size={msg}px'")), "t", {"argv[2]", "e.g. \"{msg}\""}},
    {T1(ECHO("'msg': {'type': 'string'}", "'{mgs}'")),
     "t",
     {"argv[1] \"{mgs}\" names no declared param", "declare \"mgs\"", "{msg}"}},
    {T1(ECHO("'msg': {'type': 'string'}", "'{msg}', '${HOME}'")), "t", {"argv[2]", "mixes text"}},
    {T1(ECHO("'msg': {'type': 'string'}, 'n': {'type': 'int'}", "'{msg}'")),
     "t",
     {"param \"n\" is declared but no argument uses it", "add \"{n}\" to argv or remove it"}},
    {T1("{'name': 't', 'argv': ['cat', '{input}']}"), "t", {"argv[1] is {input}", "add \"input\": true"}},
    {T1("{'name': 't', 'argv': ['cat'], 'input': true}"), "t", {"no argument is {input}", "add \"{input}\""}},
    {T1("{'name': 't', 'argv': ['cat'], 'inputTypes': ['video/mp4']}"), "t", {"needs \"input\": true"}},
    {T1("{'name': 't', 'argv': ['cat', '{input}'], 'input': true, 'inputTypes': ['mp4']}"),
     "t",
     {"inputTypes[0]", "media type"}},
    {T1("{'name': 't', 'argv': ['cat', '{output:.hidden}']}"), "t", {"argv[1]", "not start with '.'", "rename it"}},
    {T1("{'name': 't', 'argv': ['cat', '{output:../x}']}"), "t", {"argv[1]", "an output's name"}},
    {T1("{'name': 't', 'argv': ['cat', '{output:}']}"), "t", {"argv[1]", "an output's name"}},
    {T1("{'name': 't', 'argv': ['cat', '{output:a.txt}', '{output:a.txt}']}"), "t", {"argv[2]", "appears twice"}},
    /* progress */
    {T1("{'name': 't', 'argv': ['printf'], 'progress': {'type': 'regex', 'pattern': '([0-9]+%'}}"),
     "t",
     {"progress pattern", "not a valid POSIX extended regex (Unmatched ( or \\()", "fix it"}},
    {T1("{'name': 't', 'argv': ['printf'], 'progress': {'type': 'regex', 'pattern': '[0-9]+%'}}"),
     "t",
     {"has no group", "put the percent in parentheses"}},
    {T1("{'name': 't', 'argv': ['printf'], 'progress': {'type': 'regex'}}"), "t", {"needs a \"pattern\""}},
    {T1("{'name': 't', 'argv': ['printf'], 'progress': {'type': 'percent'}}"), "t", {"{\"type\": \"ffmpeg\"}"}},
    {T1("{'name': 't', 'argv': ['printf'], 'progress': 'ffmpeg'}"), "t", {"\"progress\" must be"}},
    {T1("{'name': 't', 'argv': ['printf', '-progress', 'pipe:2'], 'progress': {'type': 'ffmpeg'}}"),
     "t",
     {"add the arguments \"-progress\", \"pipe:1\""}},
    {T1("{'name': 't', 'argv': ['printf'], 'progress': {'type': 'regex', 'pattern': '(x)', 'group': 1}}"),
     "t",
     {"unknown key \"group\""}},
    /* params */
    {T1(ECHO("'n': {'type': 'integer'}", "'{n}'")), "t", {"param \"n\"", "one of int, number, enum, bool, string"}},
    {T1(ECHO("'n': 'int'", "'{n}'")), "t", {"param \"n\" must be an object with a \"type\""}},
    {T1(ECHO("'n': {'type': 'int', 'maximum': 3}", "'{n}'")), "t", {"param \"n\" has an unknown key \"maximum\""}},
    {T1(ECHO("'n': {'type': 'int', 'min': 5, 'max': 1}", "'{n}'")), "t", {"\"min\" (5) is above \"max\" (1)", "swap"}},
    {T1(ECHO("'n': {'type': 'int', 'min': 0, 'max': 10, 'default': 11}", "'{n}'")),
     "t",
     {"param \"n\": the default must be an integer from 0 to 10", "change the default or the bounds"}},
    {T1(ECHO("'n': {'type': 'int', 'default': 1.5}", "'{n}'")), "t", {"the default must be an integer"}},
    {T1(ECHO("'n': {'type': 'int', 'max': 1e300}", "'{n}'")), "t", {"\"max\" must be an integer from"}},
    {T1(ECHO("'n': {'type': 'int', 'required': true, 'default': 1}", "'{n}'")),
     "t",
     {"is required and has a default", "remove one of them"}},
    {T1(ECHO("'n': {'type': 'int', 'required': 'no'}", "'{n}'")), "t", {"\"required\" must be true or false"}},
    {T1(ECHO("'x': {'type': 'number', 'min': 0, 'max': 0}", "'{x}'")), "t", {"both 0", "write 0 in argv"}},
    {T1(ECHO("'x': {'type': 'number', 'min': 2, 'max': 1}", "'{x}'")), "t", {"swap them"}},
    {T1(ECHO("'x': {'type': 'number', 'max': 1, 'default': 2}", "'{x}'")), "t", {"the default must be a number"}},
    {T1(ECHO("'c': {'type': 'enum'}", "'{c}'")), "t", {"param \"c\": an enum needs \"values\""}},
    {T1(ECHO("'c': {'type': 'enum', 'values': []}", "'{c}'")), "t", {"an enum needs \"values\""}},
    {T1(ECHO("'c': {'type': 'enum', 'values': ['a', '']}", "'{c}'")), "t", {"values[1] must be a non-empty string"}},
    {T1(ECHO("'c': {'type': 'enum', 'values': ['a', 'a']}", "'{c}'")), "t", {"\"a\" is listed twice"}},
    {T1(ECHO("'c': {'type': 'enum', 'values': ['a', 'b'], 'default': 'z'}", "'{c}'")),
     "t",
     {"param \"c\": the default is not one of its values", "make it one of them"}},
    {T1(ECHO("'b': {'type': 'bool', 'default': 'yes'}", "'{b}'")), "t", {"the default must be true or false"}},
    {T1(ECHO("'s': {'type': 'string', 'pattern': '[a-z'}", "'{s}'")),
     "t",
     {"param \"s\": the pattern \"[a-z\" is not a valid POSIX extended regex (Unmatched [", "fix it"}},
    {T1(ECHO("'s': {'type': 'string', 'pattern': '(a)\\\\1'}", "'{s}'")), "t", {"back-references"}},
    {T1(ECHO("'s': {'type': 'string', 'maxLength': 0}", "'{s}'")), "t", {"\"maxLength\" must be an integer from 1"}},
    {T1(ECHO("'s': {'type': 'string', 'maxLength': 65537}", "'{s}'")), "t", {"65536"}},
    {T1(ECHO("'s': {'type': 'string', 'pattern': '[a-z]+', 'default': 'A'}", "'{s}'")),
     "t",
     {"the default \"A\" does not match the pattern [a-z]+", "change one of them"}},
    {T1(ECHO("'s': {'type': 'string', 'default': '-rf'}", "'{s}'")), "t", {"does not match the pattern ([^-].*)?"}},
    {T1(ECHO("'s': {'type': 'string', 'maxLength': 2, 'default': 'abc'}", "'{s}'")), "t", {"at most 2 bytes"}},
    {T1(ECHO("'input': {'type': 'string'}", "'{input}'")), "t", {"param \"input\"", "rename it"}},
    {T1(ECHO("'timeoutMs': {'type': 'int'}", "'{timeoutMs}'")), "t", {"job field", "rename it"}},
    {T1(ECHO("'9x': {'type': 'int'}", "'{9x}'")), "t", {"param \"9x\": a param's name is a letter"}},
    {T1("{'name': 't', 'argv': ['printf'], 'params': []}"), "t", {"\"params\" must be an object"}},
};

static void test_errors_name_file_task_fix(void **state) {
  cmd_env_t *e = *state;
  for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
    commands_t c;
    int rc = cmd_env_load(e, bads[i].text, &c);
    if (rc != OFF_EINVAL)
      fail_msg("bads[%zu] %s: rc %d, want OFF_EINVAL (%s)", i, bads[i].text, rc, e->err);
    /* Nothing is left to free. */
    assert_true(c.n == 0 && c._mem == NULL && c.tasks == NULL);
    char prefix[256];
    if (bads[i].task)
      snprintf(prefix, sizeof prefix, "%s: task \"%s\": ", e->path, bads[i].task);
    else
      snprintf(prefix, sizeof prefix, "%s: ", e->path);
    if (strncmp(e->err, prefix, strlen(prefix)) != 0)
      fail_msg("bads[%zu]: \"%s\" does not start with \"%s\"", i, e->err, prefix);
    for (size_t k = 0; k < 3 && bads[i].words[k]; k++)
      if (!strstr(e->err, bads[i].words[k]))
        fail_msg("bads[%zu]: \"%s\" lacks \"%s\"", i, e->err, bads[i].words[k]);
  }
}

static void test_missing_file(void **state) {
  cmd_env_t *e = *state;
  commands_t c;
  assert_int_equal(commands_load("/nonexistent/commands.json", &c, e->err, sizeof e->err), OFF_EINVAL);
  assert_string_equal(e->err, "/nonexistent/commands.json: cannot read the file (No such file or directory); "
                              "check the --commands path");
  assert_int_equal(commands_load(e->dir, &c, e->err, sizeof e->err), OFF_EINVAL);
  assert_non_null(strstr(e->err, ": not a regular file; check the --commands path"));
  /* A short buffer is cut, never overrun. */
  char small[16];
  assert_int_equal(commands_load("/nonexistent/commands.json", &c, small, sizeof small), OFF_EINVAL);
  assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_limits(void **state) {
  cmd_env_t *e = *state;
  /* 65 params, all used: over COMMANDS_MAX_PARAMS. */
  char text[8192] = "{'tasks': [{'name': 't', 'params': {";
  for (int i = 0; i <= COMMANDS_MAX_PARAMS; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "%s'p%d': {'type': 'int'}", i ? ", " : "", i);
  strcat(text, "}, 'argv': ['printf'");
  for (int i = 0; i <= COMMANDS_MAX_PARAMS; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), ", '{p%d}'", i);
  strcat(text, "]}]}");
  commands_t c;
  assert_int_equal(cmd_env_load(e, text, &c), OFF_EINVAL);
  assert_non_null(strstr(e->err, "over the limit of 64"));
  /* Seventeen outputs: a job keeps sixteen files. */
  strcpy(text, "{'tasks': [{'name': 't', 'argv': ['printf'");
  for (int i = 0; i <= OFFLOAD_MAX_FILES; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), ", '{output:f%d.txt}'", i);
  strcat(text, "]}]}");
  assert_int_equal(cmd_env_load(e, text, &c), OFF_EINVAL);
  assert_non_null(strstr(e->err, "more than 16 outputs"));
}

/* Every allocation of a load fails in turn: each failure is OFF_ENOMEM
 * with nothing leaked (ASan's leak check) and nothing left in c. */
static void test_alloc_failures(void **state) {
  cmd_env_t *e = *state;
  cmd_env_write(e, "commands.json", valid, false);
  int n = 1;
  for (;; n++) {
    commands_t c;
    fault_arm(FAULT_ALLOC, n);
    int rc = commands_load(e->path, &c, e->err, sizeof e->err);
    bool fired = fault_fired_count(FAULT_ALLOC) > 0;
    fault_arm(FAULT_ALLOC, 0);
    if (!fired) {
      assert_int_equal(rc, 0);
      commands_free(&c);
      break;
    }
    assert_int_equal(rc, OFF_ENOMEM);
    assert_non_null(strstr(e->err, "out of memory"));
    assert_true(c.n == 0 && c._mem == NULL);
  }
  assert_true(n > 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_name_file_task_fix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
