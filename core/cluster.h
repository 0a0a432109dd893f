/* SPDX-License-Identifier: MIT */
/* cluster.h -- Redis Cluster: the slot map, routing by key slot,
 * MOVED/ASK (cluster.c): the cluster side of call.c's routing seam, and
 * what a walk over every master asks of the map.
 */
#ifndef RS_CLUSTER_H
#define RS_CLUSTER_H

#include <stddef.h>

#include "rigatoni_store.h"

typedef struct rs_call rs_call;
typedef struct rs_attempt rs_attempt;
typedef struct rs_pool rs_pool;

typedef struct rs_cluster rs_cluster;
/* Discovers the slot map from the URL's seed nodes. NULL + err. */
rs_cluster *rs_cluster_new(rs_store *store, rs_error *err);
void rs_cluster_free(rs_cluster *cluster);
/* CRC16 slot of a key, with {hash tag} rules. */
unsigned rs_key_slot(const char *key, size_t len);
/* One attempt of `call` in cluster mode, the cluster side of call.c's
 * routing seam: commands routed by key slot, grouped per node, MOVED/ASK
 * followed, the map refreshed after redirections or failures. Replies of
 * commands done stay in call->replies across attempts; only the others
 * are sent again. With call->wait, each node's pipeline ends with that
 * WAIT, and call->acked gets the fewest replicas any of them counted.
 * rs_cluster_call_end frees the state, and on failure the replies. */
int rs_cluster_attempt(rs_store *store, rs_call *call, rs_attempt *at, rs_error *last);
void rs_cluster_call_end(rs_call *call, int failed);
/* Pools of the current masters (for SCAN over every master), and one slot
 * each serves. Returns the count (at most max). Pools live as long as the
 * store. */
size_t rs_cluster_masters(rs_store *store, rs_pool **pools, int *slots, size_t max);
/* The masters of the slot map with their "host:port" (node_info.c labels
 * each node's figures with it). */
size_t rs_cluster_master_addresses(rs_store *store, rs_pool **pools, char (*addresses)[300],
                                   size_t max);
#define RS_CLUSTER_SLOTS 16384
/* Reads the slot map again, now, and copies it: owners[s] is the pool of
 * the master serving slot s (NULL when none) for each of the
 * RS_CLUSTER_SLOTS slots. Pools live as long as the store. 0 or -1 + err. */
int rs_cluster_snapshot(rs_store *store, rs_pool **owners, rs_error *err);
/* Reads the map again and returns the pool now serving `slot` (the
 * replica that took over from a lost master), or NULL. */
rs_pool *rs_cluster_slot_owner(rs_store *store, int slot);
void rs_cluster_pool_stats(rs_cluster *cluster, rs_pool_stats *out);

#endif /* RS_CLUSTER_H */
