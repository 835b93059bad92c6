/* commands/exec: `offload exec-command MEMORY_MB CPU_S PROGRAM ARGV0 ARGS...`,
 * the few instructions between the runner's uv_spawn and the program: it
 * dies with the worker thread that started it (PR_SET_PDEATHSIG, checked
 * against a race), applies the task's rlimits and replaces itself with the
 * program (execv: same pid, same process group, the environment and the
 * working directory the runner gave). uv_spawn has no pre-exec hook, and
 * limits set from outside after the start (prlimit) would leave a window
 * where the program runs unlimited; this leaves none. Never a shell.
 *
 * Exit status 127 with a line on stderr when the program cannot start (the
 * runner reports it as the command's failure). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "commands/run.h"

static bool number(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno)
    return false;
  *out = v;
  return true;
}

int commands_exec_main(int argc, char **argv) {
  unsigned long long mem_mb, cpu_s;
  if (argc < 6 || !number(argv[2], &mem_mb) || !number(argv[3], &cpu_s)) {
    fprintf(stderr, "offload exec-command: started by the server only (MEMORY_MB CPU_S PROGRAM ARGV0 ARGS...)\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) /* the server went before the line above */
    return 127;
  /* The server ignores SIGPIPE; a program expects the default. */
  signal(SIGPIPE, SIG_DFL);
  if (mem_mb) {
    struct rlimit rl = {.rlim_cur = (rlim_t)mem_mb << 20, .rlim_max = (rlim_t)mem_mb << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
      fprintf(stderr, "offload: cannot limit the command's memory: %s\n", strerror(errno));
      return 127;
    }
  }
  if (cpu_s) {
    struct rlimit rl = {.rlim_cur = (rlim_t)cpu_s, .rlim_max = (rlim_t)cpu_s + 1};
    if (setrlimit(RLIMIT_CPU, &rl) != 0) {
      fprintf(stderr, "offload: cannot limit the command's CPU time: %s\n", strerror(errno));
      return 127;
    }
  }
  execv(argv[4], argv + 5);
  fprintf(stderr, "offload: cannot start %s: %s\n", argv[4], strerror(errno));
  return 127;
}
