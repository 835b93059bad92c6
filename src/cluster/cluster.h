/* cluster: this node's part in a cluster of offload nodes sharing one
 * PostgreSQL (--store postgres; docs/CLUSTER.md), on the loop thread.
 *
 * It turns what the store thread learns (store events: notifications,
 * heartbeats, the connection going and coming back) into what the node
 * does: claim queued jobs when workers are free (never more than are
 * free), cancel a running job a DELETE on another node asked for, check
 * its running jobs when its own lease lapsed, write running jobs' progress
 * twice a second, and tell the API about other nodes' jobs (waiters and
 * event streams). It keeps the last list of nodes for GET /nodes.
 *
 * Threads: loop thread only. Ownership: the cluster owns its timers and
 * the nodes list; registry and store are borrowed. */
#ifndef OFFLOAD_CLUSTER_CLUSTER_H
#define OFFLOAD_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "registry/registry.h"
#include "store/store.h"

typedef struct cluster cluster_t;

/* A job changed on some node (final: it is final now; self: this node
 * wrote it, so its registry told it already if it still holds it). */
typedef void (*cluster_job_cb)(const char *id, bool final, bool self, void *data);
/* How many event streams this node has open (the API's), for the heartbeat. */
typedef size_t (*cluster_streams_cb)(void *data);

typedef struct cluster_config {
  const char *node_id; /* borrowed: the server's */
  unsigned workers;    /* every worker of this node (threads and processes) */
  const char *lane_tasks[LANE_N]; /* borrowed: the tasks each lane runs (JSON arrays): a lane claims those */
} cluster_config_t;

typedef struct cluster_stats {
  uint64_t claims;         /* claim statements sent */
  uint64_t lease_expiries; /* nodes this node found dead */
  uint64_t requeued;       /* their processing jobs it re-queued (or failed) */
  uint64_t lost;           /* times this node learned its own lease had lapsed */
  uint64_t notifications;  /* notifications received */
} cluster_stats_t;

cluster_t *cluster_new(uv_loop_t *loop, const cluster_config_t *cfg);
/* Once the pools exist: how many workers this node has. */
void cluster_configure(cluster_t *c, const cluster_config_t *cfg);
/* Before the store thread starts. */
void cluster_attach(cluster_t *c, registry_t *r, store_t *s);
/* The store's event callback (store_config_t.on_event, data = cluster). */
void cluster_on_event(const store_event_t *ev, void *data);
/* The registry's slot_free callback (data = cluster): claim more. */
void cluster_slot_free(void *data);
void cluster_set_listener(cluster_t *c, cluster_job_cb cb, cluster_streams_cb streams, void *data);
/* This node's event streams changed (the API): the heartbeat tells the
 * others at once when the first one opens. */
void cluster_load_changed(cluster_t *c);
/* The nodes as of the last heartbeat (empty before the first). */
const store_node_t *cluster_nodes(const cluster_t *c, size_t *n);
const cluster_stats_t *cluster_stats(const cluster_t *c);
/* Shutdown begins: no more claims or checks (a claim still in flight
 * gives its jobs back to the shared queue). */
void cluster_stop(cluster_t *c);
/* After store_close (the last callbacks ran): closes its timers; the
 * memory goes once they closed (run the loop). */
void cluster_free(cluster_t *c);

#endif
