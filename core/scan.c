/* SPDX-License-Identifier: MIT */
/* scan.c -- streaming listing of tokens: SCAN + MGET (+ PTTL), batch by batch.
 *
 * Never KEYS: SCAN walks the keyspace in steps without blocking the server.
 * Each step's keys are read with one pipelined MGET (and PTTL per key when
 * asked), so memory holds one batch at a time, whatever the token count.
 * The key prefix is matched literally (its glob characters escaped); the
 * caller's pattern applies to the collection part only.
 * In a cluster every master is scanned in turn, and values are read with
 * one MGET per key (pipelined, routed by slot) since MGET cannot span slots.
 *
 * A key whose value is not a string (a hash, a list... written by
 * something else) is not a token: MGET reads it as nil, never as an error
 * (GET would fail the walk with WRONGTYPE), so a nil value is either such
 * a key or one deleted since the SCAN. EXISTS on those few tells them
 * apart (TYPE is not in Rust Rigatoni's ACL); the walk skips both and
 * counts the first (rs_scan_not_strings).
 *
 * A walk is complete or it fails; it never ends short with success:
 *  - A SCAN cursor means something only to the process that gave it. Each
 *    connection learns its server's run_id once (INFO server, pipelined
 *    with its first SCAN), and each step checks that it ran on the process
 *    the node's walk began on. When not (a restart, a failover), the walk
 *    of that node starts over from cursor 0 (the names met again are
 *    dropped, below) and says so at warn; after MAX_RESTARTS
 *    it fails with a connection error instead. A user that may not run INFO
 *    cannot be told apart that way: then a step on a connection opened
 *    after the node's walk began counts as a new process.
 *  - A step (its SCAN, or the read of its values) that failed after the
 *    retry policy leaves the walk failed: every further call fails the
 *    same way, nothing is skipped.
 *  - Cluster: the slot map is read when a round over the masters begins
 *    and when it ends. A master that gained slots meanwhile (a reshard, a
 *    failover, a node added), or any slot migrating or importing at either
 *    end, makes another round over the masters concerned; after
 *    MAX_ROUNDS of that the walk fails. A master that stops answering
 *    mid-walk may have been replaced by its replica: between retries the
 *    map is read again and the walk of its slots moves to the new node.
 *
 * A walk lists each name once. Starting over (above), and SCAN itself
 * while Redis rehashes, would list names again; a tool acting on every
 * name it is given would then act twice (a second delete finding the key
 * gone, a metric written twice, a count too high). So each SCAN step's
 * names are checked against every name the walk listed before, and only
 * new ones go on (to the read of values and to the caller). The set of
 * names met (seen_set.c) keeps 16-byte fingerprints: 21 to 43 bytes a
 * name, 32 MiB at 1,000,000 names, freed with the walk.
 *
 * Read-ahead: once the first entry is asked for, the walk runs on the two
 * threads of a read-ahead stage (readahead.c, which knows nothing of
 * Redis): its producer takes the SCAN steps (cursor, nodes, restarts,
 * rounds and the names met are that thread's alone), its completer reads
 * each step's values (MGET/PTTL/EXISTS; the TTL and EXISTS state is that
 * thread's alone), while the caller handles the batch in hand. So the
 * server always has the next step to run and a bulk tool's own work
 * overlaps it; without them the server idled at every step. At most three
 * batches are held. A failure reaches the caller after the batches read
 * before it, as it would without the threads; when no thread can be
 * started the caller walks.
 *
 * The fields of struct rs_scan say whose they are: the producer's (the
 * walk), the completer's (values), the caller's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "clock.h"
#include "closing.h"
#include "cluster.h"
#include "cluster_nodes.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "exec.h"
#include "identity.h"
#include "log.h"
#include "readahead.h"
#include "retry.h"
#include "seen_set.h"
#include "store.h"
#include "store_state.h"

#define MAX_SCAN_NODES 1024
#define MAX_RESTARTS 5       /* a node's walk started over, at most, per walk */
#define MAX_ROUNDS 5         /* cluster: rounds after the first, at most */

/* The server process a step ran on, as far as it can be told. */
typedef struct origin {
    int known;               /* run_id valid */
    char run_id[41];
    double opened_at;        /* when the connection it ran on was opened */
} origin;

/* One step's replies: the SCAN reply, then MGET or GETs, then PTTLs. */
typedef struct step_batch {
    redisReply *keys;
    redisReply **values;
    size_t nvalues;
    int with_ttl;            /* PTTLs follow the values */
    int ttl_refused;         /* the server refused PTTL: TTLs are unknown (NAN) */
    unsigned char *not_string;   /* per key: there, and not a string (NULL: none) */
} step_batch;

struct rs_scan {
    rs_store *store;         /* set at open, then read only */
    size_t prefix_len;       /* "<key_prefix>:" */
    int per_key;             /* GET per key (cluster) instead of one MGET */
    /* the walk: the producer's (the caller's before the threads start) */
    char *pattern;
    char cursor[32];
    char count[16];
    int done;
    rs_pool *nodes[MAX_SCAN_NODES];  /* the standalone pool, or this round's masters */
    int slots[MAX_SCAN_NODES];       /* cluster: a slot each master serves */
    size_t nnodes, node;     /* node = the one being scanned (nnodes: round over) */
    origin began;            /* where the current node's walk began */
    double began_at;         /* rs_now() right after that first step */
    int restarts;
    rs_pool **owners;        /* cluster: slot owners when this round began */
    int unsettled;           /* cluster: slots were open when this round began */
    int blind;               /* cluster: CLUSTER NODES refused (warned once) */
    int rounds;
    rs_seen_set *listed;     /* every name the walk listed */
    /* the values: the completer's */
    int with_ttl;
    int ttl_refused;         /* the server refused PTTL: TTLs are unknown (NAN) */
    int exists_refused;      /* the server refused EXISTS: non-strings are not counted */
    /* the caller's */
    size_t not_strings;      /* keys taken that were not strings */
    step_batch cur;          /* the batch in hand */
    size_t next;             /* next index in cur.keys */
    rs_error failed;         /* kind set once a call failed: the walk is over */
    int reported;            /* that failure was returned once */
    rs_readahead *ahead;     /* the threads, once started */
    int inline_walk;         /* no threads (none could start, or run_id unknown) */
    int cur_read_once;       /* the first batch was read by the caller */
};

static redisReply *value_at(const rs_scan *scan, const step_batch *b, size_t i)
{
    return scan->per_key ? b->values[i]->element[0] : b->values[0]->element[i];
}

static redisReply *ttl_at(const rs_scan *scan, const step_batch *b, size_t i, size_t n)
{
    return b->values[(scan->per_key ? n : 1) + i];
}

static void free_replies(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (replies[i]) freeReplyObject(replies[i]);
    free(replies);
}

static void free_batch(step_batch *b)
{
    if (b->keys) freeReplyObject(b->keys);
    free_replies(b->values, b->nvalues);
    free(b->not_string);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------------
 * Cluster rounds: which masters a round walks
 * ------------------------------------------------------------------ */

/* The distinct masters of a slot map, each with a slot it serves. */
static size_t masters_of(rs_pool *const *owners, rs_pool **pools, int *slots)
{
    size_t n = 0;
    for (int s = 0; s < RS_CLUSTER_SLOTS; s++) {
        if (!owners[s] || (s > 0 && owners[s] == owners[s - 1])) continue;
        size_t i = 0;
        while (i < n && pools[i] != owners[s]) i++;
        if (i < n || n == MAX_SCAN_NODES) continue;
        pools[n] = owners[s];
        slots[n++] = s;
    }
    return n;
}

/* Adds a master to the round (once), with a slot it serves. */
static void add_node(rs_scan *scan, rs_pool *pool, int slot)
{
    for (size_t i = 0; i < scan->nnodes; i++)
        if (scan->nodes[i] == pool) return;
    if (scan->nnodes == MAX_SCAN_NODES) return;
    scan->nodes[scan->nnodes] = pool;
    scan->slots[scan->nnodes++] = slot;
}

typedef struct map_read {
    rs_store *store;
    rs_pool **owners;
} map_read;

static int map_step(void *ctx, rs_error *last)
{
    map_read *m = ctx;
    return rs_cluster_snapshot(m->store, m->owners, last);
}

/* The slot map as it is now, under the retry policy. */
static int read_map(rs_scan *scan, rs_pool **owners, rs_error *err)
{
    map_read m = {scan->store, owners};
    return rs_retry_step(scan->store, "list (slot map)", map_step, &m, err);
}

/* Whether a master has slots migrating or importing. A user that may not
 * run CLUSTER NODES cannot tell: the walk then relies on the slot map. */
static int node_open(rs_scan *scan, rs_pool *pool, rs_error *err)
{
    rs_error why;
    rs_error_clear(&why);
    int open = rs_cluster_open_slots(scan->store, pool, &why);
    if (open >= 0) return open;
    if (why.retryable || (why.kind != RS_ERR_AUTH && why.kind != RS_ERR_SERVER)) {
        if (err) *err = why;
        return -1;
    }
    if (!scan->blind++)
        rs_log(scan->store->cfg, RS_LOG_WARN, "list: cannot see the cluster's open slots (%s); a walk during a "
               "migration is checked by the slot map only", why.message);
    return 0;
}

/* Starts a round over the masters listed in scan->nodes, whose map is
 * `owners` (owned by the scan from now on); `open`: slots were open. */
static void begin_round(rs_scan *scan, rs_pool **owners, int open)
{
    free(scan->owners);
    scan->owners = owners;
    scan->unsettled = open;
    scan->node = 0;
    strcpy(scan->cursor, "0");
}

/* The first round walks every master. */
static int first_round(rs_scan *scan, rs_error *err)
{
    rs_pool **owners = malloc(RS_CLUSTER_SLOTS * sizeof *owners);
    if (!owners) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    if (read_map(scan, owners, err) < 0) {
        free(owners);
        return -1;
    }
    int open = 0;
    scan->nnodes = masters_of(owners, scan->nodes, scan->slots);
    for (size_t i = 0; i < scan->nnodes && !open; i++) {
        open = node_open(scan, scan->nodes[i], err);
        if (open < 0) {
            free(owners);
            return -1;
        }
    }
    begin_round(scan, owners, open);
    return 0;
}

/* After the last master of a round: the map is read again. A master that
 * gained a slot meanwhile, or has open slots now, is walked again in a
 * next round (every master when slots were open as the round began);
 * without any, the walk is done. */
static int end_round(rs_scan *scan, rs_error *err)
{
    if (!scan->store->cluster) {
        scan->done = 1;
        return 0;
    }
    rs_pool **now = malloc(RS_CLUSTER_SLOTS * sizeof *now);
    if (!now) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    if (read_map(scan, now, err) < 0) {
        free(now);
        return -1;
    }
    rs_pool *masters[MAX_SCAN_NODES];
    int slots[MAX_SCAN_NODES];
    size_t nmasters = masters_of(now, masters, slots);
    scan->nnodes = 0;
    int open = 0;
    for (size_t i = 0; i < nmasters; i++) {
        int o = node_open(scan, masters[i], err);
        if (o < 0) {
            free(now);
            return -1;
        }
        if (o) add_node(scan, masters[i], slots[i]);
        open |= o;
    }
    for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
        if (now[s] && (scan->unsettled || now[s] != scan->owners[s])) add_node(scan, now[s], s);
    if (scan->nnodes == 0) {
        free(now);
        scan->done = 1;
        return 0;
    }
    if (++scan->rounds > MAX_ROUNDS) {
        free(now);
        rs_error_set(err, RS_ERR_CONNECTION, 0,
                     "listing interrupted: the cluster's slots kept moving during the walk "
                     "(%d rounds over the masters); the listing is incomplete", MAX_ROUNDS + 1);
        return -1;
    }
    rs_log(scan->store->cfg, RS_LOG_WARN, "list: cluster slots moved or are migrating; walking %zu master%s again "
           "from the start (names listed before are not listed again)", scan->nnodes,
           scan->nnodes == 1 ? "" : "s");
    /* An open migration may end soon: give it the time of a retry. */
    if (open && rs_closing_sleep(scan->store->closing,
                                 rs_retry_delay(scan->store->cfg, scan->rounds)) < 0) {
        free(now);
        rs_closing_error(err, "list");
        return -1;
    }
    begin_round(scan, now, open);
    return 0;
}

/* ---------------------------------------------------------------------
 * Opening
 * ------------------------------------------------------------------ */

/* `pattern` is the full MATCH pattern (owned by the scan from now on);
 * `strip` bytes are cut from the front of each key to give the collection. */
static rs_scan *scan_new(rs_store *store, char *pattern, size_t strip, size_t batch,
                         int with_ttl, rs_error *err)
{
    rs_scan *scan = pattern ? calloc(1, sizeof *scan) : NULL;
    rs_seen_set *listed = scan ? rs_seen_new() : NULL;
    if (!listed) {
        free(scan);
        free(pattern);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory (or no random bytes for the walk)");
        return NULL;
    }
    if (batch == 0) batch = (size_t)store->cfg->scan_count;
    scan->store = store;
    scan->listed = listed;
    scan->pattern = pattern;
    scan->prefix_len = strip;
    scan->with_ttl = with_ttl;
    strcpy(scan->cursor, "0");
    snprintf(scan->count, sizeof scan->count, "%zu", batch);
    if (store->cluster) {
        scan->per_key = 1;
        if (first_round(scan, err) < 0) {
            rs_scan_close(scan);
            return NULL;
        }
    } else {
        scan->nodes[0] = store->pool;
        scan->nnodes = 1;
    }
    return scan;
}

rs_scan *rs_scan_open(rs_store *store, const char *match, size_t batch, int with_ttl,
                      rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    const char *prefix = store->cfg->key_prefix;
    if (!match || !*match) match = "*";
    size_t plen = strlen(prefix), mlen = strlen(match);
    char *pattern = malloc(2 * plen + 1 + mlen + 1);
    if (pattern) {
        char *p = pattern;
        for (const char *s = prefix; *s; s++) {
            if (strchr("*?[]\\", *s)) *p++ = '\\';
            *p++ = *s;
        }
        *p++ = ':';
        memcpy(p, match, mlen + 1);
    }
    return scan_new(store, pattern, plen + 1, batch, with_ttl, err);
}

rs_scan *rs_scan_keys_open(rs_store *store, const char *pattern, size_t batch, int with_ttl,
                           rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    return scan_new(store, strdup(pattern && *pattern ? pattern : "*"), 0, batch, with_ttl, err);
}

/* ---------------------------------------------------------------------
 * SCAN steps, each checked against the process the node's walk began on
 * ------------------------------------------------------------------ */

/* One SCAN step as a call: its commands, and what the hooks learn. */
typedef struct step_call {
    rs_scan *scan;
    size_t len[8];
    origin where;            /* which process answered */
} step_call;

/* Before sending: INFO server rides in the same pipeline on a connection
 * whose process is not known yet (no extra round trip, once per
 * connection); else only the SCAN is sent. */
static int ask_identity(rs_call *call, rs_conn *conn, rs_error *err)
{
    call->skip = conn->scan.identity == 0 ? 0 : 1;
    return 0;
}

/* Every reply read: the connection learns its process from INFO, and the
 * step records which process answered. */
static int note_identity(rs_call *call, rs_conn *conn, rs_error *err)
{
    step_call *st = call->ctx;
    redisReply *info = call->replies[0], *scan = call->replies[1];
    if (info) {
        int text = info->type == REDIS_REPLY_STRING || info->type == REDIS_REPLY_VERB;
        if (text && rs_info_field(info->str, info->len, "run_id", conn->scan.run_id,
                                  sizeof conn->scan.run_id)) {
            conn->scan.identity = 1;
        } else if (info->type == REDIS_REPLY_ERROR) {
            rs_error why;
            rs_error_from_reply(&why, info->str, info->len);
            if (why.retryable) {            /* LOADING and the like: try again */
                *err = why;
                return -1;
            }
            conn->scan.identity = -1;            /* NOPERM: the connection's age must do */
        } else {
            conn->scan.identity = -1;
        }
    }
    st->where.known = conn->scan.identity == 1;
    memcpy(st->where.run_id, conn->scan.run_id, sizeof st->where.run_id);
    st->where.opened_at = conn->opened_at;
    if (scan->type == REDIS_REPLY_ERROR) {
        rs_error_from_reply(err, scan->str, scan->len);
        return -1;
    }
    return 0;
}

/* Between retries, in a cluster, after the current master failed to
 * answer: by then a replica has had time to take over, so the walk moves
 * to the node now serving its slots, if that is another node. */
static void follow_takeover(rs_call *call, const rs_error *last)
{
    step_call *st = call->ctx;
    rs_scan *scan = st->scan;
    if (!scan->store->cluster || (last->kind != RS_ERR_CONNECTION && last->kind != RS_ERR_TIMEOUT))
        return;
    rs_pool *now = rs_cluster_slot_owner(scan->store, scan->slots[scan->node]);
    if (!now || now == scan->nodes[scan->node]) return;
    rs_log(scan->store->cfg, RS_LOG_WARN, "list: a master stopped answering; its slots are served by another "
           "node now, whose keys are walked from the start (names listed before are not "
           "listed again)");
    scan->nodes[scan->node] = now;
    call->pool = now;
    strcpy(scan->cursor, "0");
    st->len[3] = 1;
}

/* One SCAN on the current node, through the engine (its retry policy):
 * 0 with *reply and st->where, or -1 + err. */
static int scan_call(rs_scan *scan, step_call *st, redisReply **reply, rs_error *err)
{
    static const rs_call_hooks hooks = {ask_identity, note_identity, follow_takeover};
    const char *argv[8] = {"INFO", "server", "SCAN", scan->cursor, "MATCH", scan->pattern,
                           "COUNT", scan->count};
    size_t len[8] = {4, 6, 4, strlen(scan->cursor), 5, strlen(scan->pattern), 5,
                     strlen(scan->count)};
    memcpy(st->len, len, sizeof len);
    rs_cmd cmds[2] = {{2, argv, st->len}, {6, argv + 2, st->len + 2}};
    redisReply *got[2] = {NULL, NULL};
    rs_call call = RS_CALL(RS_OP_LIST, "list (SCAN)", 2, cmds, got, err);
    call.pool = scan->nodes[scan->node];
    call.flags = RS_CALL_ERROR_REPLIES | RS_CALL_UNCOUNTED;
    call.hooks = &hooks;
    call.ctx = st;
    if (rs_call_run(scan->store, &call) < 0) return -1;
    if (got[0]) freeReplyObject(got[0]);
    *reply = got[1];
    return 0;
}

/* Did a step run on the process the node's walk began on? By run_id when
 * both are known; else only a connection older than the walk's first step
 * is trusted (a TCP connection never outlives its server process). */
static int same_process(const rs_scan *scan, const origin *where)
{
    if (where->known && scan->began.known) return strcmp(where->run_id, scan->began.run_id) == 0;
    return where->opened_at <= scan->began_at;
}

/* One SCAN step on the current node, under the retry policy; a step
 * that met another process starts the node's walk over. */
static int scan_step(rs_scan *scan, redisReply **reply, rs_error *err)
{
    for (;;) {
        step_call st = {scan, {0}, {0}};
        if (scan_call(scan, &st, reply, err) < 0) return -1;
        if (strcmp(scan->cursor, "0") == 0) {       /* the node's walk begins here */
            scan->began = st.where;
            scan->began_at = rs_now();
            return 0;
        }
        if (same_process(scan, &st.where)) return 0;
        freeReplyObject(*reply);
        if (++scan->restarts > MAX_RESTARTS) {
            rs_error_set(err, RS_ERR_CONNECTION, 0,
                         "listing interrupted: the walk met another server process %d "
                         "times (restarts or failovers); the listing is incomplete",
                         scan->restarts);
            return -1;
        }
        rs_log(scan->store->cfg, RS_LOG_WARN, "list: the walk went on on another server process (%s); its "
               "keys are walked again from the start (names listed before are not "
               "listed again)",
               st.where.known && scan->began.known ? "run_id changed"
                                                   : "new connection, run_id not readable");
        strcpy(scan->cursor, "0");
    }
}

/* ---------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------ */

/* The values of one step's keys: standalone MGET k1..kn, cluster MGET ki
 * each; then PTTL ki each. *out gets the replies, *count their number. */
static int read_values(rs_scan *scan, const redisReply *keys, redisReply ***out, size_t *count,
                       rs_error *err)
{
    size_t n = keys->elements;
    size_t nget = scan->per_key ? n : 1;
    size_t ncmds = nget + (scan->with_ttl ? n : 0);
    rs_cmd *cmds = calloc(ncmds, sizeof *cmds);
    const char **argv = calloc(4 * n + 1, sizeof *argv);
    size_t *len = calloc(4 * n + 1, sizeof *len);
    redisReply **values = calloc(ncmds, sizeof *values);
    int rc = -1;
    if (!cmds || !argv || !len || !values) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    const char **a = argv;
    size_t *l = len;
    if (!scan->per_key) {
        cmds[0] = (rs_cmd){(int)(n + 1), a, l};
        *a++ = "MGET", *l++ = 4;
        for (size_t i = 0; i < n; i++) *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    for (size_t i = 0; scan->per_key && i < n; i++) {
        cmds[i] = (rs_cmd){2, a, l};
        *a++ = "MGET", *l++ = 4;
        *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    for (size_t i = 0; scan->with_ttl && i < n; i++) {
        cmds[nget + i] = (rs_cmd){2, a, l};
        *a++ = "PTTL", *l++ = 4;
        *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    rs_call call = RS_CALL(RS_OP_LIST, "list (values)", ncmds, cmds, values, err);
    if (rs_call_run(scan->store, &call) < 0) {
        free(values);                     /* the engine freed the replies */
        values = NULL;
        if (scan->with_ttl && err->reply == RS_REPLY_NOPERM) {
            /* A user limited to Rust Rigatoni's commands has no PTTL: the
             * listing goes on with TTLs unknown, never fails for it. */
            rs_log(scan->store->cfg, RS_LOG_WARN, "list: the server refused PTTL (%s); TTLs are shown as "
                   "unknown", err->message);
            scan->with_ttl = 0;
            scan->ttl_refused = 1;
            rs_error_clear(err);
            rc = read_values(scan, keys, out, count, err);
        }
        goto out;
    }
    for (size_t i = 0; i < nget; i++) {
        size_t want = scan->per_key ? 1 : n;
        if (values[i]->type != REDIS_REPLY_ARRAY || values[i]->elements != want) {
            rs_error_set(err, RS_ERR_SERVER, 0, "list (MGET): unexpected reply");
            goto out;
        }
    }
    *out = values;
    *count = ncmds;
    values = NULL;
    rc = 0;
out:
    if (values) free_replies(values, ncmds);
    free(cmds);
    free(argv);
    free(len);
    return rc;
}

/* Drops from a SCAN step's keys (an array reply) every name the walk
 * listed before. 0, or -1 when memory ran out (the walk fails). */
static int drop_listed(rs_scan *scan, redisReply *keys, rs_error *err)
{
    enum { CHUNK = 64 };                  /* names checked in one call */
    const void *names[CHUNK];
    size_t lens[CHUNK], kept = 0, i = 0;
    unsigned char fresh[CHUNK];
    while (i < keys->elements) {
        size_t m = keys->elements - i < CHUNK ? keys->elements - i : CHUNK;
        for (size_t j = 0; j < m; j++) {
            names[j] = keys->element[i + j]->str;
            lens[j] = keys->element[i + j]->len;
        }
        if (rs_seen_add_many(scan->listed, m, names, lens, fresh) < 0) {
            /* Nothing dropped from here on: the walk fails anyway. */
            rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory (the names the walk listed)");
            while (i < keys->elements) keys->element[kept++] = keys->element[i++];
            keys->elements = kept;
            return -1;
        }
        for (size_t j = 0; j < m; j++, i++) {
            if (fresh[j]) keys->element[kept++] = keys->element[i];
            else freeReplyObject(keys->element[i]);
        }
    }
    keys->elements = kept;
    return 0;
}

/* The scanner's part: the next SCAN step with keys in it, committed
 * (cursor, node): 1 with *keys (the whole SCAN reply), 0 at the end, -1. */
static int next_keys(rs_scan *scan, redisReply **keys, rs_error *err)
{
    for (;;) {
        if (scan->done) return 0;
        if (scan->node == scan->nnodes) {
            if (end_round(scan, err) < 0) return -1;
            continue;
        }
        redisReply *reply;
        /* A SCAN step (one node) is not counted by itself: count it as a list. */
        rs_metrics_call call = rs_metrics_begin();
        int rc = scan_step(scan, &reply, err);
        rs_metrics_end(&scan->store->metrics, RS_OP_LIST, call, rc == 0 ? RS_OK : err->kind);
        if (rc < 0) return -1;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[0]->len >= sizeof scan->cursor ||
            reply->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(reply);
            rs_error_set(err, RS_ERR_SERVER, 0, "list (SCAN): unexpected reply");
            return -1;
        }
        memcpy(scan->cursor, reply->element[0]->str, reply->element[0]->len + 1);
        if (strcmp(scan->cursor, "0") == 0) scan->node++;
        if (drop_listed(scan, reply->element[1], err) < 0) {
            freeReplyObject(reply);
            return -1;
        }
        if (reply->element[1]->elements > 0) {
            *keys = reply;
            return 1;
        }
        freeReplyObject(reply);               /* an empty step: nothing to read */
    }
}

/* The keys of a batch whose value read as nil and that EXISTS finds:
 * not strings (b->not_string). Those PTTL saw gone are not asked. */
static int find_not_strings(rs_scan *scan, step_batch *b, rs_error *err)
{
    size_t n = b->keys->element[1]->elements, nil = 0;
    size_t *which = calloc(n, sizeof *which);
    if (!which) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n && !scan->exists_refused; i++) {
        if (value_at(scan, b, i)->type == REDIS_REPLY_STRING) continue;
        const redisReply *ttl = b->with_ttl ? ttl_at(scan, b, i, n) : NULL;
        if (ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer == -2) continue;
        which[nil++] = i;
    }
    int rc = 0;
    if (nil) {
        rs_cmd *cmds = calloc(nil, sizeof *cmds);
        const char **argv = calloc(2 * nil, sizeof *argv);
        size_t *len = calloc(2 * nil, sizeof *len);
        redisReply **got = calloc(nil, sizeof *got);
        b->not_string = calloc(n, 1);
        rc = -1;
        if (!cmds || !argv || !len || !got || !b->not_string) {
            rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        } else {
            for (size_t k = 0; k < nil; k++) {
                const redisReply *key = b->keys->element[1]->element[which[k]];
                argv[2 * k] = "EXISTS", len[2 * k] = 6;
                argv[2 * k + 1] = key->str, len[2 * k + 1] = key->len;
                cmds[k] = (rs_cmd){2, argv + 2 * k, len + 2 * k};
            }
            rs_call call = RS_CALL(RS_OP_LIST, "list (EXISTS)", nil, cmds, got, err);
            if (rs_call_run(scan->store, &call) == 0) {
                for (size_t k = 0; k < nil; k++)
                    b->not_string[which[k]] =
                        got[k]->type == REDIS_REPLY_INTEGER && got[k]->integer == 1;
                rs_replies_free(got, nil);
                rc = 0;
            } else if (err->reply == RS_REPLY_NOPERM) {
                /* A user without EXISTS: such keys are still skipped,
                 * never fatal, only not counted. */
                rs_log(scan->store->cfg, RS_LOG_WARN, "list: the server refused EXISTS (%s); keys that are not "
                       "strings are skipped without being counted", err->message);
                scan->exists_refused = 1;
                rs_error_clear(err);
                rc = 0;
            }
        }
        free(cmds);
        free(argv);
        free(len);
        free(got);
    }
    free(which);
    return rc;
}

/* The reader's part: the values of a SCAN step's keys, into *out (which
 * takes the keys; they are freed on failure). 0 or -1. */
static int read_batch(rs_scan *scan, redisReply *keys, step_batch *out, rs_error *err)
{
    redisReply **values = NULL;
    size_t nvalues = 0;
    if (read_values(scan, keys->element[1], &values, &nvalues, err) < 0) {
        freeReplyObject(keys);
        return -1;
    }
    *out = (step_batch){keys, values, nvalues, scan->with_ttl, scan->ttl_refused, NULL};
    if (find_not_strings(scan, out, err) < 0) {
        free_batch(out);
        return -1;
    }
    return 0;
}

/* The next entry of the batch in hand: 1 with *entry filled, 0 when the
 * batch is used up (nothing is fetched here). */
static int take_buffered(rs_scan *scan, rs_scan_entry *entry)
{
    const step_batch *b = &scan->cur;
    size_t n = b->keys && b->nvalues ? b->keys->element[1]->elements : 0;
    while (scan->next < n) {
        size_t i = scan->next++;
        redisReply *key = b->keys->element[1]->element[i];
        redisReply *value = value_at(scan, b, i);
        if (value->type != REDIS_REPLY_STRING) {   /* deleted meanwhile, or not a string */
            if (b->not_string && b->not_string[i]) scan->not_strings++;
            continue;
        }
        if (key->len < scan->prefix_len) continue;
        entry->collection = key->str + scan->prefix_len;
        entry->collection_len = key->len - scan->prefix_len;
        entry->value = value->str;
        entry->value_len = value->len;
        entry->ttl = b->ttl_refused ? NAN : -1;
        if (b->with_ttl) {
            redisReply *ttl = ttl_at(scan, b, i, n);
            if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer == -2) continue;
            if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0)
                entry->ttl = (double)ttl->integer / 1000.0;
        }
        return 1;
    }
    return 0;
}

static void scan_free(rs_scan *scan);

/* Records the walk's first failure (the caller's side). */
static void fail_walk(rs_scan *scan, const rs_error *err)
{
    if (scan->failed.kind != RS_OK) return;
    scan->failed = *err;
    if (scan->failed.kind == RS_OK) rs_error_set(&scan->failed, RS_ERR_SERVER, 0, "list failed");
}

/* The read-ahead stage's side of the walk. */
static int produce_keys(void *ctx, void **item, rs_error *err)
{
    redisReply *keys = NULL;
    int rc = next_keys(ctx, &keys, err);
    *item = keys;
    return rc;
}

static int complete_batch(void *ctx, void *item, void **out, rs_error *err)
{
    step_batch *b = calloc(1, sizeof *b);
    if (!b) {
        freeReplyObject(item);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    if (read_batch(ctx, item, b, err) < 0) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

static void free_keys(void *item)
{
    freeReplyObject(item);
}

static void free_result(void *out)
{
    free_batch(out);
    free(out);
}

/* The last thread of a walk closed while they ran frees it; the store
 * (the owner: the walk may be gone) waits for every thread to be counted
 * out. */
static void thread_ended(void *owner, void *ctx, int last)
{
    if (last) scan_free(ctx);
    rs_store_threads(owner, -1);
}

static const rs_readahead_ops read_ahead = {produce_keys, complete_batch, free_keys, free_result,
                                            thread_ended};

/* Starts the read-ahead; without it the caller walks inline. */
static void start_threads(rs_scan *scan)
{
    rs_readahead *ra = rs_readahead_new(&read_ahead, scan, scan->store);
    if (!ra) {
        scan->inline_walk = 1;
        return;
    }
    rs_store_threads(scan->store, 2);     /* each ends through thread_ended */
    if (rs_readahead_start(ra) < 0) {
        rs_readahead_free(ra);
        scan->inline_walk = 1;
        return;
    }
    scan->ahead = ra;
}

/* The next batch without threads: 1, 0 at the end, -1 (scan->failed). */
static int inline_batch(rs_scan *scan)
{
    rs_error err;
    rs_error_clear(&err);
    redisReply *keys = NULL;
    int rc = next_keys(scan, &keys, &err);
    if (rc == 1 && read_batch(scan, keys, &scan->cur, &err) < 0) rc = -1;
    if (rc < 0) fail_walk(scan, &err);
    return rc;
}

/* Replaces the batch in hand by the next one: 1, or 0 at the end, -1 when
 * the walk failed (scan->failed). */
static int next_batch(rs_scan *scan)
{
    free_batch(&scan->cur);
    scan->next = 0;
    /* The first batch is read here. The threads take over once the
     * server's run_id is known: without it a connection opened after the
     * walk began reads as another process, and the pool opens more of
     * them when walks and their caller use it at once. */
    if (!scan->ahead && !scan->inline_walk) {
        if (!scan->cur_read_once) {
            scan->cur_read_once = 1;
            return scan->failed.kind != RS_OK ? -1 : inline_batch(scan);
        }
        if (scan->began.known && !scan->failed.kind) start_threads(scan);
        else scan->inline_walk = 1;
    }
    if (scan->inline_walk) return scan->failed.kind != RS_OK ? -1 : inline_batch(scan);
    void *out;
    rs_error err;
    int rc = rs_readahead_next(scan->ahead, &out, &err);
    if (rc == 1) {
        scan->cur = *(step_batch *)out;
        free(out);
    } else if (rc < 0) {
        fail_walk(scan, &err);
    }
    return rc;
}

int rs_scan_next(rs_scan *scan, rs_scan_entry *entry, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    for (;;) {
        if (scan->reported) {
            rs_error_set(err, scan->failed.kind, 0,
                         "the listing failed earlier and cannot go on (open a new one): %s",
                         scan->failed.message);
            return -1;
        }
        if (take_buffered(scan, entry)) return 1;
        int rc = next_batch(scan);
        if (rc == 0) return 0;
        if (rc < 0) {
            *err = scan->failed;          /* the failure itself, the first time */
            scan->reported = 1;
            return -1;
        }
    }
}

size_t rs_scan_not_strings(const rs_scan *scan)
{
    return scan->not_strings;
}

int rs_scan_next_buffered(rs_scan *scan, rs_scan_entry *entry)
{
    return !scan->reported && take_buffered(scan, entry);
}

void rs_scan_close(rs_scan *scan)
{
    if (!scan) return;
    /* A step on the wire (a frozen server: the whole retry policy) is not
     * waited for: the last thread frees the scan, and rs_store_close
     * waits for it. */
    if (scan->ahead && rs_readahead_close(scan->ahead)) return;
    scan_free(scan);
}

static void scan_free(rs_scan *scan)
{
    rs_readahead_free(scan->ahead);
    free_batch(&scan->cur);
    free(scan->owners);
    free(scan->pattern);
    rs_seen_free(scan->listed);
    free(scan);
}
