/* commands/run: the runner of command tasks (`--commands FILE`). Every
 * command task's def.run is commands_run: on the worker thread that holds
 * the job's pool slot it makes the job's working directory, writes the
 * input there, starts the program with uv_spawn on a private loop (no
 * shell, the allow-listed environment, its own process group, the task's
 * rlimits), copies its stdout and stderr into the job's log (commands/log.h)
 * and its progress parser, and on cancel or timeout sends SIGTERM to the
 * group, then SIGKILL after the kill grace. Command tasks always run on
 * worker threads: the program is the isolated process.
 *
 * Threads: commands_runner_init at start-up (before any worker starts);
 * commands_run on worker threads, any number at once. */
#ifndef OFFLOAD_COMMANDS_RUN_H
#define OFFLOAD_COMMANDS_RUN_H

#include <stdbool.h>

#include "commands/commands.h"
#include "offload/task.h"

/* The loaded file (borrowed: it outlives every run) and the grace between
 * SIGTERM and SIGKILL. Sets every task's def.run and isolation. */
void commands_runner_init(commands_t *c, unsigned kill_grace_ms);

void commands_run(offload_task_t *t);

/* `offload exec-command ...`: the step between uv_spawn and the program
 * (exec.c). Returns only on failure (the exit status). */
int commands_exec_main(int argc, char **argv);

/* True for a command task's def (its jobs keep a log). */
static inline bool commands_is_command(const offload_task_def_t *def) { return def && def->run == commands_run; }

#endif
