/* cli: the command-line client inside the offload binary (`offload submit`,
 * `status`, `wait`, `cancel`, `jobs`, `tasks`, `workers`, `download`, `top`).
 * It speaks only the HTTP API of docs/API.md, through util/httpc; the
 * contract it keeps (commands, flags, exit statuses) is docs/CLI.md.
 *
 * Threads: the main thread only; each request runs on a private libuv loop.
 * The client shares nothing with the server's code but util/. */
#ifndef OFFLOAD_CLI_H
#define OFFLOAD_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* True when argv names a client command (after any of the client's global
 * flags: --url, --token, --json). Other words (serve, an unknown one) and
 * flags stay main's. */
bool cli_handles(int argc, char **argv);
/* Runs the command; returns the process's exit status (docs/CLI.md). */
int cli_main(int argc, char **argv);
/* The client's part of `offload --help`: one line per command. */
void cli_usage_commands(FILE *out);

#endif
