/* SPDX-License-Identifier: MIT */
/* internal.h -- transitional: every core header (to be removed). */
#ifndef RS_INTERNAL_H
#define RS_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include "error.h"
#include "log.h"
#include "clock.h"
#include "config.h"
#include "nosigpipe.h"
#include "tls.h"
#include "conn.h"
#include "identity.h"
#include "sentinel.h"
#include "pool.h"
#include "failover.h"
#include "retry.h"
#include "op.h"
#include "resp.h"
#include "call.h"
#include "exec.h"
#include "checked.h"
#include "script.h"
#include "cluster.h"
#include "cluster_nodes.h"
#include "metrics.h"
#include "store.h"
#include "ttl.h"
#include "token_key.h"
#endif
