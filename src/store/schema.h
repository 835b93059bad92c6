/* store/schema: the SQLite schema and its numbered forward migrations
 * (PRAGMA user_version holds the version reached). Store thread, or the
 * main thread before the store thread starts. */
#ifndef OFFLOAD_STORE_SCHEMA_H
#define OFFLOAD_STORE_SCHEMA_H

#include <sqlite3.h>
#include <stddef.h>

/* The version this build writes and reads. */
#define SCHEMA_VERSION 3

/* Brings `db` up to SCHEMA_VERSION, one transaction per step. Returns 0, or
 * -1 with a sentence in err (a newer version than this build knows, or an
 * SQLite error). Never downgrades or drops anything. `path` is for messages. */
int schema_migrate(sqlite3 *db, const char *path, char *err, size_t errsz);

/* Runs only the first `upto` migrations (tests: build an older database). */
int schema_migrate_to(sqlite3 *db, int upto, char *err, size_t errsz);

#endif
