/* cli/params: `name=value` words into a job's params. A JSON body's values
 * are typed by the task's param specs from GET /tasks: integer -> JSON
 * integer, number -> number, boolean (true/false/1/0) -> true/false,
 * integer[] and number[] ("1,2,3") -> arrays, string as is. A value that
 * does not read as its type, or a name the task does not have, is sent as a
 * string: the server then names the problem (invalid_param, unknown_param).
 * `name:=JSON` sends raw JSON. For an upload the words become a query string
 * instead (the server types query values itself). Also: percent-encoding,
 * and the media type of a file from its extension.
 *
 * Threads: any; no state. */
#ifndef OFFLOAD_CLI_PARAMS_H
#define OFFLOAD_CLI_PARAMS_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

/* Builds the params object from words[0..n). `task` is the task's object
 * from GET /tasks, or NULL (then every value is a string). Returns the new
 * object (the caller decrefs), or NULL with a sentence in `err` (a word
 * without "=", an empty or repeated name, bad JSON after ":="). */
json_t *params_build(const json_t *task, char *const *words, int n, char *err, size_t errlen);
/* Types one value by its spec type ("integer", "number", "boolean",
 * "integer[]", "number[]", "string" or NULL); a new reference. */
json_t *params_typed(const char *type, const char *text);
/* Appends `name=value&...` (percent-encoded) for an upload's query. Returns
 * 0, -1 with a sentence in `err`, or OFF_ENOMEM. */
int params_query(buf_t *out, char *const *words, int n, char *err, size_t errlen);
/* Appends `s` percent-encoded (everything but A-Z a-z 0-9 - . _ ~). */
int params_escape(buf_t *out, const char *s);
/* The media type for a file name's extension; application/octet-stream when
 * unknown. */
const char *params_media_type(const char *path);

#endif
