/* pool/child: the worker side of a process pool: `offload worker`, which
 * the server starts with uv_spawn (never a bare fork of the threaded
 * server). It finds its socket on fd 3 and its shared page on fd 4 (see
 * pool/page.h), applies its limits, says READY, then runs one job per JOB
 * frame and answers each with a RESULT frame, until the server closes the
 * socket. It dies with its parent (PR_SET_PDEATHSIG). Its command line is
 * `offload worker [--plugin FILE]...`: it runs the built-in kinds and those
 * of the plug-ins named (tasks/plugin.h), loaded before it says READY. */
#ifndef OFFLOAD_POOL_CHILD_H
#define OFFLOAD_POOL_CHILD_H

/* The main of `offload worker`; returns the process exit code. Single-threaded. */
int pool_child_main(int argc, char **argv);

#endif
