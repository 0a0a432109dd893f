/* SPDX-License-Identifier: MIT */
/* op.h -- what a call is, for metrics: one kind per store operation
 * family (read by call_types.h and metrics.h).
 */
#ifndef RS_OP_H
#define RS_OP_H

typedef enum rs_op {
    RS_OP_SAVE, RS_OP_GET, RS_OP_DELETE, RS_OP_LIST, RS_OP_LOCK, RS_OP_OTHER, RS_OP_COUNT
} rs_op;

#endif /* RS_OP_H */
