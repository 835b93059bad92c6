/* store/sqlite: the SQLite side of the store: the data dir and its lock,
 * the connection (WAL), prepared statements, one transaction per batch.
 * Every call is made by one thread at a time: the main thread at open and
 * load, then only the store thread (STYLE habit 9). */
#ifndef OFFLOAD_STORE_SQLITE_H
#define OFFLOAD_STORE_SQLITE_H

#include "store/store.h"

typedef struct sq sq_t;

/* Creates the dir and the database as needed, locks the dir, migrates.
 * NULL with a sentence naming the path and the fix in err. */
sq_t *sq_open(const char *dir, bool strict, char *err, size_t errsz);
int sq_load(sq_t *q, void (*row)(const store_job_t *j, void *data), void *data);
/* Applies every write of the list in one transaction; sets each w->_rc.
 * Returns 0 or OFF_ESTORE (the transaction was rolled back). */
int sq_apply(sq_t *q, store_write_t *list);
void sq_close(sq_t *q);
/* Deletes up to `batch` finished jobs older than `cutoff_ms` (wall) or
 * beyond the newest `max_finished` (0 = no cap), oldest first, in one
 * transaction. Returns how many, or -1 on error. */
int sq_expire(sq_t *q, int64_t cutoff_ms, uint64_t max_finished, int batch);

#endif
