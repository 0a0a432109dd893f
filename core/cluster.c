/* SPDX-License-Identifier: MIT */
/* cluster.c -- Redis Cluster: slot map, routing, redirections.
 *
 * The slot map (16384 slots -> master node) is read with CLUSTER SLOTS from
 * any reachable node (the URL's hosts are seeds). Each master has its own
 * connection pool; nodes are only ever added, so a pool pointer stays valid
 * for the store's life.
 *
 * This is the cluster side of call.c's routing seam: one attempt of a call
 * (call.c decides on retries, exec.c runs each node's pipeline). A call's
 * commands are routed by the slot of their key and sent as one pipeline
 * per node. Replies are kept per command, so only the commands
 * that were redirected or failed are sent again: a SET NX that succeeded
 * is never repeated (repeating it would report "exists"). Redirections:
 *  - MOVED: the slot is re-pointed at once and the whole map is marked
 *    stale; the next call (not every key) refreshes it once. An empty
 *    host ("MOVED 3999 :6381", Redis 7's unknown endpoint) is the host of
 *    the node that answered, as "?" is in CLUSTER SLOTS;
 *  - ASK: the command goes to the target with ASKING, the map is kept;
 *  - a keyless command (SCRIPT LOAD) goes with the keyed one before it,
 *    redirections included: it runs again where that one is sent;
 *  - TRYAGAIN, CLUSTERDOWN, lost nodes: the retry policy applies, and a
 *    lost node or a CLUSTERDOWN makes the map stale so that the retry
 *    finds the new master.
 * A refresh sweeps the known nodes and the seeds, one sweep at a time;
 * callers that waited for a sweep take its outcome, success or error,
 * instead of sweeping again: with dead nodes, each sweep costs their
 * connect timeouts, and every waiting thread repeating it multiplied that.
 * Multi-key commands must stay within one slot; the store's batch calls use
 * single-key commands in cluster mode for that reason.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster.h"
#include "call_types.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "exec.h"
#include "log.h"
#include "pool.h"
#include "retry.h"
#include "store_state.h"

#define NSLOTS RS_CLUSTER_SLOTS
#define MAX_NODES 1024
#define MAX_REDIRECTS 16

typedef struct node {
    char host[256];
    int port;
    rs_pool *pool;
} node;

struct rs_cluster {
    rs_store *store;
    pthread_rwlock_t map_lock;      /* slots and the node table */
    int16_t slots[NSLOTS];          /* node index, -1 when not served */
    node *nodes[MAX_NODES];
    int nnodes;
    pthread_mutex_t refresh_lock;   /* one sweep at a time */
    atomic_int stale;
    atomic_ulong sweeps;            /* sweeps finished */
    int sweep_rc;                   /* the last sweep's outcome (refresh_lock) */
    rs_error sweep_err;
};

/* ---------------------------------------------------------------------
 * Slots
 * ------------------------------------------------------------------ */

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis
 * Cluster specifies for key slots. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned rs_key_slot(const char *key, size_t len)
{
    /* Only the part inside the first non-empty {...} counts, if any. */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - open - 1);
        }
    }
    return crc16(key, len) & (NSLOTS - 1);
}

/* The slot a command is about, or -1 for commands without a key. */
static int command_slot(const rs_cmd *cmd)
{
    const char *name = cmd->argv[0];
    int index = 1;
    if (cmd->argc < 2) return -1;
    if (!strcasecmp(name, "EVAL") || !strcasecmp(name, "EVALSHA")) {
        if (cmd->argc < 4 || atoi(cmd->argv[2]) < 1) return -1;
        index = 3;
    } else if (!strcasecmp(name, "MEMORY")) {
        if (cmd->argc < 3) return -1;
        index = 2;
    } else if (!strcasecmp(name, "WAIT") || !strcasecmp(name, "SCAN") ||
               !strcasecmp(name, "PING") || !strcasecmp(name, "INFO") ||
               !strcasecmp(name, "ASKING") || !strcasecmp(name, "CLUSTER") ||
               !strcasecmp(name, "DBSIZE") || !strcasecmp(name, "SCRIPT")) {
        return -1;
    }
    return (int)rs_key_slot(cmd->argv[index], cmd->argvlen[index]);
}

/* ---------------------------------------------------------------------
 * Nodes and the map
 * ------------------------------------------------------------------ */

/* Index of host:port, adding it when new; -1 when the table is full.
 * Caller holds map_lock for writing. */
static int node_index(rs_cluster *cl, const char *host, int port)
{
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0) return i;
    if (cl->nnodes == MAX_NODES) return -1;
    node *n = calloc(1, sizeof *n);
    if (!n) return -1;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    if (!(n->pool = rs_pool_new(cl->store->cfg, cl->store->tls, n->host, port))) {
        free(n);
        return -1;
    }
    rs_pool_watch_closing(n->pool, cl->store->closing);
    cl->nodes[cl->nnodes] = n;
    return cl->nnodes++;
}

/* Reads CLUSTER SLOTS from one address into `slots` (node indexes added
 * under the write lock). 0 or -1 + err. */
static int read_slots(rs_cluster *cl, const char *host, int port, rs_error *err)
{
    const rs_config *cfg = cl->store->cfg;
    redisContext *ctx = rs_connect(cfg, cl->store->tls, host, port, cfg->parsed.username,
                                   rs_config_password(cfg), err);
    if (!ctx) return -1;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    redisReply *reply;
    int rc = rs_conn_command(ctx, 2, argv, &reply, err);
    redisFree(ctx);
    /* A final (non-transient) server error to CLUSTER SLOTS: a standalone
     * server. Deterministic, so it is a config error, not retried. */
    if (rc < 0 && err && err->kind == RS_ERR_SERVER && !err->retryable) {
        char why[sizeof err->message];
        snprintf(why, sizeof why, "%s", err->message);
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "%s:%d is not a Redis Cluster node (%s): the server has cluster support "
                     "disabled; set cluster_mode = false", host, port, why);
    }
    if (rc < 0) return -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_SERVER, 1, "%s:%d: CLUSTER SLOTS gave no slots", host, port);
        return -1;
    }
    int16_t *map = malloc(sizeof cl->slots);
    if (!map) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    for (int i = 0; i < NSLOTS; i++) map[i] = -1;
    pthread_rwlock_wrlock(&cl->map_lock);
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        redisReply *addr = e->element[2];
        /* An empty or "?" address means "the node you asked". */
        const char *h = addr->element[0]->type == REDIS_REPLY_STRING && addr->element[0]->len &&
                                strcmp(addr->element[0]->str, "?")
                            ? addr->element[0]->str
                            : host;
        int idx = node_index(cl, h, (int)addr->element[1]->integer);
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        for (long long s = from; idx >= 0 && s <= to && s < NSLOTS; s++)
            if (s >= 0) map[s] = (int16_t)idx;
    }
    memcpy(cl->slots, map, sizeof cl->slots);
    pthread_rwlock_unlock(&cl->map_lock);
    free(map);
    freeReplyObject(reply);
    return 0;
}

/* Reloads the map from any node that answers: known nodes first, then the
 * URL's seeds. One sweep at a time; a caller that waited while a sweep
 * ran takes that sweep's outcome. */
static int refresh(rs_cluster *cl, rs_error *err)
{
    unsigned long seen = atomic_load(&cl->sweeps);
    pthread_mutex_lock(&cl->refresh_lock);
    int rc = 0;
    if (atomic_load(&cl->sweeps) != seen) {
        rc = cl->sweep_rc;
        if (rc < 0 && err) *err = cl->sweep_err;
    } else if (atomic_load(&cl->stale)) {
        rs_error last = {0};
        rc = -1;
        pthread_rwlock_rdlock(&cl->map_lock);
        int n = cl->nnodes;
        pthread_rwlock_unlock(&cl->map_lock);
        for (int i = 0; i < n && rc < 0 && last.kind != RS_ERR_CONFIG; i++) {
            node *nd = cl->nodes[i];   /* never removed, never moved */
            rc = read_slots(cl, nd->host, nd->port, &last);
        }
        const rs_url *url = &cl->store->cfg->parsed;
        for (size_t i = 0; i < url->nhosts && rc < 0 && last.kind != RS_ERR_CONFIG; i++)
            rc = read_slots(cl, url->hosts[i].host, url->hosts[i].port, &last);
        if (rc == 0) {
            atomic_store(&cl->stale, 0);
            rs_metrics_count(&cl->store->metrics, RS_METRIC_REFRESH);
            rs_log(cl->store->cfg, RS_LOG_INFO, "cluster slot map refreshed (%d nodes known)", cl->nnodes);
        } else if (last.kind == RS_ERR_CONFIG) {
            *err = last;
        } else {
            rs_error_set(&cl->sweep_err, last.kind ? last.kind : RS_ERR_CONNECTION, 1,
                         "cannot read the cluster slot map from any node: %s", last.message);
            *err = cl->sweep_err;
        }
        cl->sweep_rc = rc;
        atomic_fetch_add(&cl->sweeps, 1);
    }
    pthread_mutex_unlock(&cl->refresh_lock);
    return rc;
}

static int refresh_step(void *cl, rs_error *last)
{
    return refresh(cl, last);
}

rs_cluster *rs_cluster_new(rs_store *store, rs_error *err)
{
    rs_cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    cl->store = store;
    pthread_rwlock_init(&cl->map_lock, NULL);
    pthread_mutex_init(&cl->refresh_lock, NULL);
    for (int i = 0; i < NSLOTS; i++) cl->slots[i] = -1;
    atomic_store(&cl->stale, 1);
    if (rs_retry_step(store, "cluster discovery", refresh_step, cl, err) < 0) {
        rs_cluster_free(cl);
        return NULL;
    }
    return cl;
}

void rs_cluster_free(rs_cluster *cl)
{
    if (!cl) return;
    for (int i = 0; i < cl->nnodes; i++) {
        rs_pool_free(cl->nodes[i]->pool);
        free(cl->nodes[i]);
    }
    pthread_rwlock_destroy(&cl->map_lock);
    pthread_mutex_destroy(&cl->refresh_lock);
    free(cl);
}

size_t rs_cluster_masters(rs_store *store, rs_pool **pools, int *slots, size_t max)
{
    rs_cluster *cl = store->cluster;
    int first_slot[MAX_NODES];
    size_t n = 0;
    for (int i = 0; i < MAX_NODES; i++) first_slot[i] = -1;
    pthread_rwlock_rdlock(&cl->map_lock);
    for (int s = NSLOTS - 1; s >= 0; s--)
        if (cl->slots[s] >= 0) first_slot[cl->slots[s]] = s;
    for (int i = 0; i < cl->nnodes && n < max; i++) {
        if (first_slot[i] < 0) continue;
        pools[n] = cl->nodes[i]->pool;
        slots[n++] = first_slot[i];
    }
    pthread_rwlock_unlock(&cl->map_lock);
    return n;
}

size_t rs_cluster_master_addresses(rs_store *store, rs_pool **pools, char (*addresses)[300],
                                   size_t max)
{
    rs_cluster *cl = store->cluster;
    int serves[MAX_NODES] = {0};
    size_t n = 0;
    pthread_rwlock_rdlock(&cl->map_lock);
    for (int s = 0; s < NSLOTS; s++)
        if (cl->slots[s] >= 0) serves[cl->slots[s]] = 1;
    for (int i = 0; i < cl->nnodes && n < max; i++) {
        if (!serves[i]) continue;
        pools[n] = cl->nodes[i]->pool;
        snprintf(addresses[n++], 300, "%s:%d", cl->nodes[i]->host, cl->nodes[i]->port);
    }
    pthread_rwlock_unlock(&cl->map_lock);
    return n;
}

void rs_cluster_pool_stats(rs_cluster *cl, rs_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&cl->map_lock);
    for (int i = 0; i < cl->nnodes; i++) {
        rs_pool_stats s;
        rs_pool_get_stats(cl->nodes[i]->pool, &s);
        out->size += s.size;
        out->open += s.open;
        out->in_use += s.in_use;
        out->idle += s.idle;
        out->created += s.created;
        out->closed_broken += s.closed_broken;
        out->closed_idle += s.closed_idle;
        out->waits += s.waits;
        out->wait_timeouts += s.wait_timeouts;
        out->wait_seconds += s.wait_seconds;
        out->failovers += s.failovers;
    }
    pthread_rwlock_unlock(&cl->map_lock);
}

/* ---------------------------------------------------------------------
 * Executing
 * ------------------------------------------------------------------ */

/* The arguments of a reply classified MOVED or ASK: "MOVED 3999
 * 127.0.0.1:6381" -> slot, host, port; an empty host (":6381") is
 * `asked`, the host of the node that replied. 0 when malformed. */
static int parse_redirect(const redisReply *r, const char *asked, int *slot, char *host,
                          size_t host_size, int *port)
{
    const char *p = memchr(r->str, ' ', r->len);
    if (!p) return 0;
    p++;
    *slot = atoi(p);
    const char *addr = strchr(p, ' '), *colon = addr ? strrchr(addr, ':') : NULL;
    if (!addr || !colon || (size_t)(colon - addr - 1) >= host_size) return 0;
    memcpy(host, addr + 1, (size_t)(colon - addr - 1));
    host[colon - addr - 1] = '\0';
    if (!host[0]) snprintf(host, host_size, "%s", asked);
    *port = atoi(colon + 1);
    return *slot >= 0 && *slot < NSLOTS && *port > 0;
}

/* Node for a slot (any serving node for -1), or -1. */
static int route(rs_cluster *cl, int slot, int previous)
{
    pthread_rwlock_rdlock(&cl->map_lock);
    int idx = -1;
    if (slot >= 0) {
        idx = cl->slots[slot];
    } else if (previous >= 0) {
        idx = previous;                       /* keyless: with the one before */
    } else {
        for (int s = 0; s < NSLOTS && idx < 0; s++) idx = cl->slots[s];
    }
    pthread_rwlock_unlock(&cl->map_lock);
    return idx;
}

static rs_pool *node_pool(rs_cluster *cl, int idx)
{
    pthread_rwlock_rdlock(&cl->map_lock);
    rs_pool *pool = cl->nodes[idx]->pool;
    pthread_rwlock_unlock(&cl->map_lock);
    return pool;
}

rs_pool *rs_cluster_slot_owner(rs_store *store, int slot)
{
    rs_cluster *cl = store->cluster;
    rs_error ignored;
    atomic_store(&cl->stale, 1);
    if (refresh(cl, &ignored) < 0) return NULL;
    int idx = route(cl, slot, -1);
    return idx < 0 ? NULL : node_pool(cl, idx);
}

/* ---------------------------------------------------------------------
 * What a walk over every master checks (scan.c)
 * ------------------------------------------------------------------ */

int rs_cluster_snapshot(rs_store *store, rs_pool **owners, rs_error *err)
{
    rs_cluster *cl = store->cluster;
    atomic_store(&cl->stale, 1);
    if (refresh(cl, err) < 0) return -1;
    pthread_rwlock_rdlock(&cl->map_lock);
    for (int s = 0; s < NSLOTS; s++)
        owners[s] = cl->slots[s] >= 0 ? cl->nodes[cl->slots[s]]->pool : NULL;
    pthread_rwlock_unlock(&cl->map_lock);
    return 0;
}

/* A call's state across its attempts: which commands are done (their
 * replies in the call's), where ASK sends the others. */
struct rs_cluster_call {
    size_t n;
    int *slot;          /* key slot of each command, -1 without a key */
    int *node;          /* routed node of each command */
    int *ask;           /* ASK target node, or -1 */
    char *done;
    int redirects;      /* redirections followed, all attempts together */
    int maybe_ran;      /* a pipeline was sent and not every reply read */
};

#define ASKING_REPLY SIZE_MAX
#define WAIT_REPLY (SIZE_MAX - 1)

/* Sends the pending commands of one node (ASKING before asked ones) and
 * sorts the replies. Returns 0, or -1 with err for a failure that is not a
 * redirection. *redirected is set on MOVED/ASK, the call's maybe_ran when the
 * pipeline was sent and not every reply read. */
static int send_group(rs_cluster *cl, rs_call *call, int target, int *redirected, rs_error *err)
{
    struct rs_cluster_call *c = call->route;
    const rs_cmd *cmds = call->cmds;
    static const char *asking_argv[1] = {"ASKING"};
    static const size_t asking_len[1] = {6};
    const rs_cmd asking = {1, asking_argv, asking_len};
    size_t count = 0;
    for (size_t i = 0; i < c->n; i++)
        if (!c->done[i] && (c->ask[i] >= 0 ? c->ask[i] : c->node[i]) == target)
            count += c->ask[i] >= 0 ? 2 : 1;
    if (count == 0) return 0;
    if (call->wait) count++;                  /* the WAIT closes the pipeline */

    rs_cmd *batch = calloc(count, sizeof *batch);
    size_t *index = calloc(count, sizeof *index);      /* command of each slot, or SIZE_MAX */
    redisReply **got = calloc(count, sizeof *got);
    int rc = -1;
    if (!batch || !index || !got) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->done[i] || (c->ask[i] >= 0 ? c->ask[i] : c->node[i]) != target) continue;
        if (c->ask[i] >= 0) {
            batch[k] = asking;
            index[k++] = ASKING_REPLY;
        }
        batch[k] = cmds[i];
        index[k++] = i;
    }
    if (call->wait) {
        batch[k] = *call->wait;
        index[k++] = WAIT_REPLY;
    }
    const char *asked = cl->nodes[target]->host;   /* never moved, never freed */
    rs_call group = {.op = call->op, .what = call->what, .ncmds = count, .cmds = batch,
                     .flags = RS_CALL_ERROR_REPLIES, .replies = got};
    rs_attempt at;
    if (rs_call_attempt(node_pool(cl, target), &group, &at, err) < 0) {
        if (at.sent) c->maybe_ran = 1;
        /* The node may be gone (not for a pool timeout: it is busy). */
        if (at.sent || err->kind != RS_ERR_POOL) atomic_store(&cl->stale, 1);
        goto out;
    }
    rc = 0;
    for (size_t j = 0; j < count; j++) {
        redisReply *r = got[j];
        got[j] = NULL;
        size_t i = index[j];
        if (i == ASKING_REPLY || i == WAIT_REPLY) {
            /* WAIT counts the replicas that have this node's writes so
             * far: those of this pipeline that were not redirected. */
            if (i == WAIT_REPLY) {
                long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
                if (n < call->acked) call->acked = n;
            }
            freeReplyObject(r);
            continue;
        }
        char host[256];
        int slot, port;
        rs_reply_class cls =
            r->type == REDIS_REPLY_ERROR ? rs_reply_classify(r->str, r->len) : RS_REPLY_NONE;
        if (cls == RS_REPLY_MOVED && parse_redirect(r, asked, &slot, host, sizeof host, &port)) {
            pthread_rwlock_wrlock(&cl->map_lock);
            int idx = node_index(cl, host, port);
            if (idx >= 0) cl->slots[slot] = (int16_t)idx;
            pthread_rwlock_unlock(&cl->map_lock);
            atomic_store(&cl->stale, 1);
            rs_metrics_count(&cl->store->metrics, RS_METRIC_MOVED);
            c->ask[i] = -1;
            *redirected = 1;
            freeReplyObject(r);
        } else if (cls == RS_REPLY_ASK &&
                   parse_redirect(r, asked, &slot, host, sizeof host, &port)) {
            pthread_rwlock_wrlock(&cl->map_lock);
            c->ask[i] = node_index(cl, host, port);
            pthread_rwlock_unlock(&cl->map_lock);
            rs_metrics_count(&cl->store->metrics, RS_METRIC_ASK);
            *redirected = 1;
            freeReplyObject(r);
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* A node that says the cluster is down may be the one cut
             * off: the retry asks the others for the map again. */
            if (cls == RS_REPLY_CLUSTERDOWN) atomic_store(&cl->stale, 1);
            if (rc == 0) rs_error_from_reply(err, r->str, r->len);
            rc = -1;
            c->ask[i] = -1;
            freeReplyObject(r);
        } else {
            call->replies[i] = r;
            c->done[i] = 1;
        }
    }
    /* A keyless command travels with the keyed one before it (SCRIPT LOAD
     * after EXISTS key, for the EVALSHA that follows): when that one was
     * redirected, so is the keyless one, run again where it goes. */
    for (size_t j = 0, anchor = SIZE_MAX; j < count; j++) {
        size_t i = index[j];
        if (i == ASKING_REPLY || i == WAIT_REPLY) continue;
        if (c->slot[i] >= 0) {
            anchor = c->done[i] ? SIZE_MAX : i;
        } else if (anchor != SIZE_MAX) {
            if (call->replies[i]) freeReplyObject(call->replies[i]);
            call->replies[i] = NULL;
            c->done[i] = 0;
            c->ask[i] = c->ask[anchor];
        }
    }
out:
    for (size_t j = 0; got && j < count; j++)
        if (got[j]) freeReplyObject(got[j]);
    free(batch);
    free(index);
    free(got);
    return rc;
}

void rs_cluster_call_end(rs_call *call, int failed)
{
    struct rs_cluster_call *c = call->route;
    if (failed) rs_replies_free(call->replies, call->ncmds);
    free(c->slot);
    free(c->node);
    free(c->ask);
    free(c->done);
    free(c);
    call->route = NULL;
}

/* The call's state, made at its first attempt. */
static struct rs_cluster_call *call_state(rs_call *call, rs_error *last)
{
    size_t n = call->ncmds;
    struct rs_cluster_call *c = calloc(1, sizeof *c);
    if (c) *c = (struct rs_cluster_call){n, calloc(n, sizeof(int)), calloc(n, sizeof(int)),
                                         calloc(n, sizeof(int)), calloc(n, 1), 0, 0};
    if (!c || !c->slot || !c->node || !c->ask || !c->done) {
        if (c) {
            call->route = c;
            rs_cluster_call_end(call, 0);
        }
        rs_error_set(last, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        c->slot[i] = command_slot(&call->cmds[i]);     /* once: CRC16 of the key */
        c->ask[i] = -1;
        call->replies[i] = NULL;
    }
    return call->route = c;
}

int rs_cluster_attempt(rs_store *store, rs_call *call, rs_attempt *at, rs_error *last)
{
    rs_cluster *cl = store->cluster;
    size_t ncmds = call->ncmds;
    *at = (rs_attempt){0, 0, 0, 0, 1};
    struct rs_cluster_call *c = call->route ? call->route : call_state(call, last);
    if (!c) return -1;
    for (;;) {
        int failed = 0, redirected = 0;
        if (atomic_load(&cl->stale) && refresh(cl, last) < 0) failed = 1;
        for (size_t i = 0, previous = 0; !failed && i < ncmds; i++) {
            if (c->done[i]) continue;
            c->node[i] = route(cl, c->slot[i], i ? c->node[previous] : -1);
            previous = i;
            if (c->node[i] < 0) {
                rs_error_set(last, RS_ERR_SERVER, 1, "CLUSTERDOWN slot not served by any node");
                atomic_store(&cl->stale, 1);
                failed = 1;
            }
        }
        /* One pipeline per node that has pending commands; a command
         * redirected to a node already sent to this round waits for the
         * next one. */
        char sent[MAX_NODES] = {0};
        for (size_t i = 0; !failed && i < ncmds; i++) {
            if (c->done[i]) continue;
            int target = c->ask[i] >= 0 ? c->ask[i] : c->node[i];
            if (sent[target]) continue;
            sent[target] = 1;
            if (send_group(cl, call, target, &redirected, last) < 0) failed = 1;
        }
        size_t pending = 0;
        for (size_t i = 0; i < ncmds; i++) pending += !c->done[i];
        if (!pending) return 0;
        if (!failed && redirected && ++c->redirects <= MAX_REDIRECTS) continue;
        if (!failed) rs_error_set(last, RS_ERR_SERVER, 1, "too many cluster redirections");
        /* Only the commands not done are sent again: repeating is safe
         * unless one of them may have run. Their replies stay here. */
        at->sent = at->lost = c->maybe_ran;
        at->repeatable = !c->maybe_ran;
        return -1;
    }
}
