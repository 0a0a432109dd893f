/* scan.c -- streaming listing of tokens: SCAN + MGET (+ PTTL), batch by batch.
 *
 * Never KEYS: SCAN walks the keyspace in steps without blocking the server.
 * Each step's keys are read with one pipelined MGET (and PTTL per key when
 * asked), so memory holds one batch at a time, whatever the token count.
 * The key prefix is matched literally (its glob characters escaped); the
 * caller's pattern applies to the collection part only.
 * In a cluster every master is scanned in turn, and values are read with
 * one GET per key (pipelined, routed by slot) since MGET cannot span slots.
 * A master that stops answering mid-walk may have been replaced by its
 * replica: between retries the map is read again, and when another node
 * now serves that master's slots the walk of those keys starts over there
 * (SCAN cursors mean nothing to another node), so some collections may be
 * listed twice, as SCAN itself allows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_SCAN_NODES 1024

struct rs_scan {
    rs_store *store;
    char *pattern;
    size_t prefix_len;       /* "<key_prefix>:" */
    char cursor[32];
    char count[16];
    int done, with_ttl;
    rs_pool *nodes[MAX_SCAN_NODES];  /* the standalone pool, or every master */
    int slots[MAX_SCAN_NODES];       /* cluster: a slot each master serves */
    size_t nnodes, node;     /* node = the one being scanned */
    int per_key;             /* GET per key (cluster) instead of one MGET */
    redisReply *keys;        /* current SCAN reply */
    redisReply **values;     /* MGET or GETs, then PTTLs */
    size_t nvalues;
    size_t next;             /* next index in keys */
};

static redisReply *value_at(const rs_scan *scan, size_t i)
{
    return scan->per_key ? scan->values[i] : scan->values[0]->element[i];
}

static redisReply *ttl_at(const rs_scan *scan, size_t i, size_t n)
{
    return scan->values[(scan->per_key ? n : 1) + i];
}

static void free_batch(rs_scan *scan)
{
    if (scan->keys) freeReplyObject(scan->keys);
    for (size_t i = 0; i < scan->nvalues; i++)
        if (scan->values[i]) freeReplyObject(scan->values[i]);
    free(scan->values);
    scan->keys = NULL;
    scan->values = NULL;
    scan->nvalues = 0;
    scan->next = 0;
}

/* `pattern` is the full MATCH pattern (owned by the scan from now on);
 * `strip` bytes are cut from the front of each key to give the collection. */
static rs_scan *scan_new(rs_store *store, char *pattern, size_t strip, size_t batch,
                         int with_ttl, rs_error *err)
{
    rs_scan *scan = pattern ? calloc(1, sizeof *scan) : NULL;
    if (!scan) {
        free(pattern);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    if (batch == 0) batch = (size_t)store->cfg->scan_count;
    if (store->cluster) {
        scan->nnodes = rs_cluster_masters(store, scan->nodes, scan->slots, MAX_SCAN_NODES);
        scan->per_key = 1;
    } else {
        scan->nodes[0] = store->pool;
        scan->nnodes = 1;
    }
    scan->store = store;
    scan->pattern = pattern;
    scan->prefix_len = strip;
    scan->with_ttl = with_ttl;
    strcpy(scan->cursor, "0");
    snprintf(scan->count, sizeof scan->count, "%zu", batch);
    return scan;
}

rs_scan *rs_scan_open(rs_store *store, const char *match, size_t batch, int with_ttl,
                      rs_error *err)
{
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
    rs_error_clear(err);
    return scan_new(store, strdup(pattern && *pattern ? pattern : "*"), 0, batch, with_ttl, err);
}

/* In a cluster, after the current master failed to answer: moves the walk
 * to the node now serving its slots, if that is another node. */
static void follow_takeover(rs_scan *scan)
{
    rs_pool *now = rs_cluster_slot_owner(scan->store, scan->slots[scan->node]);
    if (!now || now == scan->nodes[scan->node]) return;
    rs_log(RS_LOG_WARN, "list: a master stopped answering; its slots are served by another "
           "node now, whose keys are walked from the start (some may be listed twice)");
    scan->nodes[scan->node] = now;
    strcpy(scan->cursor, "0");
}

/* One SCAN step on the current node, under the retry policy. */
static int scan_step(rs_scan *scan, redisReply **reply, rs_error *err)
{
    rs_error last;
    rs_error_clear(&last);
    for (int attempt = 1;; attempt++) {
        const char *argv[6] = {"SCAN", scan->cursor, "MATCH", scan->pattern, "COUNT", scan->count};
        size_t argvlen[6] = {4, strlen(scan->cursor), 5, strlen(scan->pattern), 5,
                             strlen(scan->count)};
        rs_cmd cmd = {6, argv, argvlen};
        if (rs_exec_attempt(scan->nodes[scan->node], 1, &cmd, reply, &last) == 0) return 0;
        if (!rs_retry_wait(scan->store->cfg, "list (SCAN)", attempt, &last)) {
            rs_exec_fail(err, "list (SCAN)", attempt, &last);
            return -1;
        }
        /* After the delay: by then a replica has had time to take over. */
        if (scan->store->cluster && (last.kind == RS_ERR_CONNECTION || last.kind == RS_ERR_TIMEOUT))
            follow_takeover(scan);
    }
}

/* Fetches the next SCAN step and its values. 0 ok (maybe empty), -1 error. */
static int fetch_batch(rs_scan *scan, rs_error *err)
{
    free_batch(scan);
    redisReply *reply;
    /* A SCAN step (one node) is not counted by itself: count it as a list. */
    rs_metrics_call call = rs_metrics_begin();
    int rc0 = scan_step(scan, &reply, err);
    rs_metrics_end(scan->store, RS_OP_LIST, call, rc0 == 0 ? RS_OK : err ? err->kind : RS_ERR_SERVER);
    if (rc0 < 0) return -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[0]->len >= sizeof scan->cursor ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_SERVER, 0, "list (SCAN): unexpected reply");
        return -1;
    }
    memcpy(scan->cursor, reply->element[0]->str, reply->element[0]->len + 1);
    if (strcmp(scan->cursor, "0") == 0 && ++scan->node == scan->nnodes) scan->done = 1;
    scan->keys = reply;

    redisReply *keys = reply->element[1];
    size_t n = keys->elements;
    if (n == 0) return 0;

    /* Standalone: MGET k1..kn; cluster: GET ki each. Then PTTL ki each. */
    size_t nget = scan->per_key ? n : 1;
    size_t ncmds = nget + (scan->with_ttl ? n : 0);
    rs_cmd *cmds = calloc(ncmds, sizeof *cmds);
    const char **argv2 = calloc(4 * n + 1, sizeof *argv2);
    size_t *len2 = calloc(4 * n + 1, sizeof *len2);
    scan->values = calloc(ncmds, sizeof *scan->values);
    int rc = -1;
    if (!cmds || !argv2 || !len2 || !scan->values) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    const char **a = argv2;
    size_t *l = len2;
    if (!scan->per_key) {
        cmds[0] = (rs_cmd){(int)(n + 1), a, l};
        *a++ = "MGET", *l++ = 4;
        for (size_t i = 0; i < n; i++) *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    for (size_t i = 0; scan->per_key && i < n; i++) {
        cmds[i] = (rs_cmd){2, a, l};
        *a++ = "GET", *l++ = 3;
        *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    for (size_t i = 0; scan->with_ttl && i < n; i++) {
        cmds[nget + i] = (rs_cmd){2, a, l};
        *a++ = "PTTL", *l++ = 4;
        *a++ = keys->element[i]->str, *l++ = keys->element[i]->len;
    }
    if (rs_exec(scan->store, RS_OP_LIST, "list (values)", ncmds, cmds, scan->values, err) < 0)
        goto out;
    scan->nvalues = ncmds;
    if (!scan->per_key &&
        (scan->values[0]->type != REDIS_REPLY_ARRAY || scan->values[0]->elements != n)) {
        rs_error_set(err, RS_ERR_SERVER, 0, "list (MGET): unexpected reply");
        goto out;
    }
    rc = 0;
out:
    free(cmds);
    free(argv2);
    free(len2);
    if (rc < 0) free_batch(scan);
    return rc;
}

int rs_scan_next(rs_scan *scan, rs_scan_entry *entry, rs_error *err)
{
    rs_error_clear(err);
    for (;;) {
        size_t n = scan->keys && scan->nvalues ? scan->keys->element[1]->elements : 0;
        while (scan->next < n) {
            size_t i = scan->next++;
            redisReply *key = scan->keys->element[1]->element[i];
            redisReply *value = value_at(scan, i);
            if (value->type != REDIS_REPLY_STRING) continue;   /* deleted meanwhile */
            if (key->len < scan->prefix_len) continue;
            entry->collection = key->str + scan->prefix_len;
            entry->collection_len = key->len - scan->prefix_len;
            entry->value = value->str;
            entry->value_len = value->len;
            entry->ttl = -1;
            if (scan->with_ttl) {
                redisReply *ttl = ttl_at(scan, i, n);
                if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer == -2) continue;
                if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0)
                    entry->ttl = (double)ttl->integer / 1000.0;
            }
            return 1;
        }
        if (scan->done) {
            free_batch(scan);
            return 0;
        }
        if (fetch_batch(scan, err) < 0) return -1;
    }
}

void rs_scan_close(rs_scan *scan)
{
    if (!scan) return;
    free_batch(scan);
    free(scan->pattern);
    free(scan);
}
