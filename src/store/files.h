/* store/files: where a job's output files live, and their removal.
 *
 * The rule: a job's files are <data-dir>/files/<job id>/<name>, one
 * directory per job named by its id, one row per file in `job_files`
 * (job_id, name, bytes, content_type). The row goes with the job's row (ON
 * DELETE CASCADE) and the store thread removes the directory once that
 * delete committed, so files live and expire with their job. A name is
 * 1..FILES_NAME_MAX characters of [A-Za-z0-9._-], not starting with a dot
 * (it can never leave its directory).
 *
 * Threads: pure functions, except files_remove_job (disk I/O: the store
 * thread, or a worker; never the event loop). */
#ifndef OFFLOAD_STORE_FILES_H
#define OFFLOAD_STORE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FILES_NAME_MAX 128

/* True if `name` may name a job's file. */
bool files_name_ok(const char *name);

/* The files root is <data-dir>/files (or, with the memory store, a temp
 * dir). <root>/<id> (name NULL) or <root>/<id>/<name> into buf. Returns
 * 0, or -1 when a name is not valid or buf is too small. */
int files_path(const char *root, const char *id, const char *name, char *buf, size_t size);

/* A job's stored input: <root>/<id>/.input (a dotfile: never an output). */
#define FILES_INPUT_NAME ".input"

/* Removes the job's outputs: every file but its dotfiles (the stored input,
 * a command's .log). 0 or -1. */
int files_remove_outputs(const char *root, const char *id);

/* Removes <root>/<id> and the files in it. 0 when it is gone (or never
 * existed), else -1 with errno. */
int files_remove_job(const char *root, const char *id);

/* Copies `bytes` of the input in `fd` (a memfd) to <root>/<id>/.input,
 * fsync'd when `sync`, before its row commits. 0 or -1 (a full disk, an
 * I/O error: the insert fails). Store thread. */
int files_keep_input(const char *root, const char *id, int fd, int64_t bytes, bool sync);
/* Opens a job's kept input read-only, checking it is `bytes` long: the
 * descriptor, or -1 (missing, another size). Disk I/O: never on the loop. */
int files_open_input(const char *root, const char *id, int64_t bytes);

#endif
