/* store/pg: the PostgreSQL side of the store, shared by every node of a
 * cluster (docs/CLUSTER.md): the connection, the schema and its versions,
 * this node's row in `nodes` (heartbeat, lease, the reaper of dead nodes'
 * jobs), notifications, and one transaction per batch of writes.
 *
 * Threads: pg_open on the main thread before serving; everything else on
 * the store thread only (the one owner of the connection), except
 * pg_set_load and pg_roundtrip (any thread: atomics, a mutex held O(1)).
 * The loop never calls libpq. */
#ifndef OFFLOAD_STORE_PG_H
#define OFFLOAD_STORE_PG_H

#include "store/store.h"

typedef struct pg pg_t;

/* Tells the loop a store event (the store thread's hand-over; the event is
 * the callee's). */
typedef void (*pg_post_cb)(store_event_t *ev, void *data);

/* Connects, creates or migrates the schema (one node at a time: an
 * advisory lock), refuses a newer schema, registers this node and
 * re-queues what an earlier run of the same node id left processing.
 * NULL with a sentence for a person in err (never the password). */
pg_t *pg_open(const store_config_t *cfg, pg_post_cb post, void *post_data, char *err, size_t errsz);
void pg_close(pg_t *p);

/* Applies a batch in one transaction (each w->_rc set); reads run after
 * the commit. 0, or OFF_ESTORE when the transaction failed (every write
 * then fails; the connection is dropped if it broke). */
int pg_apply(pg_t *p, store_write_t *list);

/* The store thread's own work between batches: reconnecting (with
 * backoff), the heartbeat and the reaper when due, notifications. Then
 * waits up to the next due time, or until `wake_fd` (an eventfd) or the
 * connection's socket is readable. */
void pg_service(pg_t *p, int wake_fd);

void pg_set_load(pg_t *p, int total, int busy, int streams);
void pg_roundtrip(pg_t *p, hist_t *out);
/* Retention: deletes up to `batch` finished jobs older than cutoff_ms. */
int pg_expire(pg_t *p, int64_t cutoff_ms, int batch);

#endif
