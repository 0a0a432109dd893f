/* SPDX-License-Identifier: MIT */
/* cluster_nodes.h -- asking a cluster node about its own slots
 * (cluster_nodes.c), for the walk over every master (scan.c).
 */
#ifndef RS_CLUSTER_NODES_H
#define RS_CLUSTER_NODES_H

#include "rigatoni_store.h"

typedef struct rs_pool rs_pool;

/* Whether the node behind `pool` has slots migrating or importing (CLUSTER
 * NODES, its own line): 1 or 0, or -1 + err (retried within the policy). */
int rs_cluster_open_slots(rs_store *store, rs_pool *pool, rs_error *err);

#endif /* RS_CLUSTER_NODES_H */
