/* SPDX-License-Identifier: MIT */
/* sentinel.c -- finding the master through Redis Sentinel.
 *
 * Several hosts in the URL are Sentinel nodes. Discovery asks every one of
 * them, starting at a sentinel that moves on with every discovery, for the
 * master's address (`SENTINEL get-master-addr-by-name <master>`) and, in
 * the same round trip, its config epoch (`SENTINEL MASTER <master>`,
 * field config-epoch). The address of the newest config epoch wins, and
 * among answers of one epoch the address named most often (a tie goes to
 * the one heard first). A vote alone is not enough: right after a
 * failover the leader names the new master at a new epoch while the other
 * sentinels still name the demoted master, which answers ROLE as master,
 * at the old epoch until the leader's hello reaches them (seconds). The
 * two commands arrive in one packet and a sentinel runs them one after the
 * other, so address and epoch come from one state: the leader names the
 * promoted replica from the moment it raised the epoch.
 * A sentinel that refuses SENTINEL MASTER (an ACL) still votes, at epoch
 * 0. Every sentinel is asked, so one that is frozen costs its timeouts; one
 * that is down costs its connect. A deadline in the config (a lease
 * refresh's, lock.c) cuts every step to the time left (conn.c) and stops
 * the discovery when it passes. A TLS failure that is final
 * (certificate, name, protocol) ends the discovery at once, unretried.
 * A new data connection then confirms with ROLE that it reached a master:
 * writing to a replica would fail with READONLY anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sentinel.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "retry.h"

typedef struct answer {
    char host[256];
    int port;
    size_t votes;
    uint64_t epoch;           /* the newest config epoch it was named at */
} answer;

/* The port of a reply, 1..65535 in decimal; 0 when it is anything else. */
static int parse_port(const redisReply *r)
{
    if (r->len == 0 || r->len > 5) return 0;
    int port = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9') return 0;
        port = port * 10 + (r->str[i] - '0');
    }
    return port <= 65535 ? port : 0;
}

/* Counts one sentinel's answer; returns its tally entry. */
static answer *vote(answer *answers, size_t *nanswers, const char *host, int port,
                    uint64_t epoch)
{
    for (size_t i = 0; i < *nanswers; i++) {
        if (answers[i].port == port && strcmp(answers[i].host, host) == 0) {
            answers[i].votes++;
            if (epoch > answers[i].epoch) answers[i].epoch = epoch;
            return &answers[i];
        }
    }
    answer *a = &answers[(*nanswers)++];
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = port;
    a->votes = 1;
    a->epoch = epoch;
    return a;
}

/* Newer epoch first, then more votes; a tie keeps the one heard first. */
static int better(const answer *a, const answer *than)
{
    return !than || a->epoch > than->epoch || (a->epoch == than->epoch && a->votes > than->votes);
}

/* The config-epoch field of a SENTINEL MASTER reply (a flat list of
 * name, value; a map in RESP3); 0 when it is not there. */
static uint64_t config_epoch(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_MAP) return 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || k->len != 12 || memcmp(k->str, "config-epoch", 12))
            continue;
        if (v->type == REDIS_REPLY_INTEGER) return v->integer > 0 ? (uint64_t)v->integer : 0;
        if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 19) return 0;
        uint64_t n = 0;
        for (size_t j = 0; j < v->len; j++) {
            if (v->str[j] < '0' || v->str[j] > '9') return 0;
            n = n * 10 + (uint64_t)(v->str[j] - '0');
        }
        return n;
    }
    return 0;
}

/* Both questions in one round trip: the address reply (the caller frees
 * it) and the epoch. -1 with err when the address could not be asked. */
static int ask(redisContext *ctx, const char *master, redisReply **addr, uint64_t *epoch,
               rs_error *err)
{
    const char *by_name[3] = {"SENTINEL", "get-master-addr-by-name", master};
    const char *info[3] = {"SENTINEL", "MASTER", master};
    redisReply *about = NULL;
    *addr = NULL;
    *epoch = 0;
    if (redisAppendCommandArgv(ctx, 3, by_name, NULL) != REDIS_OK ||
        redisAppendCommandArgv(ctx, 3, info, NULL) != REDIS_OK ||
        redisGetReply(ctx, (void **)addr) != REDIS_OK ||
        redisGetReply(ctx, (void **)&about) != REDIS_OK) {
        if (*addr) freeReplyObject(*addr);
        *addr = NULL;
        rs_error_from_context(err, ctx);
        return -1;
    }
    *epoch = config_epoch(about);
    freeReplyObject(about);
    if ((*addr)->type == REDIS_REPLY_ERROR) {
        rs_error_from_reply(err, (*addr)->str, (*addr)->len);
        freeReplyObject(*addr);
        *addr = NULL;
        return -1;
    }
    return 0;
}

int rs_sentinel_discover(const rs_config *cfg, rs_tls *tls, uint64_t start, char *host,
                         size_t host_size, int *port, uint64_t *epoch, rs_error *err)
{
    const rs_url *url = &cfg->parsed;
    rs_error last = {0}, refused = {0};   /* refused: an auth failure, if any */
    rs_error bad = {0};                   /* an answer that is not an address */
    size_t unknown = 0, nanswers = 0;
    answer *answers = calloc(url->nhosts, sizeof *answers), *best = NULL;
    if (!answers) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory asking the sentinels");
        return -1;
    }
    size_t asked = 0;
    for (size_t n = 0; n < url->nhosts; n++, asked++) {
        const rs_host *s = &url->hosts[(start + n) % url->nhosts];
        /* A lease refresh's deadline (cfg->deadline) bounds the whole
         * discovery, not each sentinel: none is asked once it passed. */
        if (cfg->deadline > 0 && cfg->deadline - rs_now() < RS_DEADLINE_MIN_LEFT) {
            rs_error_set(&last, RS_ERR_TIMEOUT, 1, "no time left before the deadline to ask "
                         "sentinel %s:%d", s->host, s->port);
            break;
        }
        redisContext *ctx = rs_connect(cfg, tls, s->host, s->port, cfg->sentinel_username,
                                       cfg->sentinel_password, &last);
        if (!ctx) {
            rs_log(cfg, RS_LOG_INFO, "sentinel %s:%d unreachable: %s", s->host, s->port, last.message);
            if (last.kind == RS_ERR_AUTH) refused = last;
            /* A final connection error (a TLS certificate, name or protocol
             * refused) is the same at every sentinel and on every retry:
             * said at once, not as "no sentinel answered". */
            if (last.kind == RS_ERR_CONNECTION && !last.retryable) {
                free(answers);
                rs_error_set(err, RS_ERR_CONNECTION, 0, "sentinel %s:%d: %s", s->host, s->port,
                             last.message);
                return -1;
            }
            continue;
        }
        redisReply *reply;
        uint64_t named_at;
        int rc = ask(ctx, cfg->sentinel_master, &reply, &named_at, &last);
        redisFree(ctx);
        if (rc < 0) continue;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_STRING) {
            unknown++;                        /* a nil: no such master */
            freeReplyObject(reply);
            continue;
        }
        const redisReply *h = reply->element[0], *p = reply->element[1];
        int master_port = parse_port(p);
        if (h->len == 0 || h->len >= host_size || h->len >= sizeof answers->host ||
            memchr(h->str, '\0', h->len) ||
            master_port == 0) {
            rs_error_set(&bad, RS_ERR_SERVER, 1,
                         "sentinel %s:%d named master '%.100s' at '%.100s' port '%.20s', "
                         "not an address (port 1..65535)", s->host, s->port,
                         cfg->sentinel_master, h->str, p->str);
            rs_log(cfg, RS_LOG_WARN, "%s", bad.message);
            freeReplyObject(reply);
            continue;
        }
        answer *a = vote(answers, &nanswers, h->str, master_port, named_at);
        freeReplyObject(reply);
        if (better(a, best)) best = a;
        rs_log(cfg, RS_LOG_DEBUG, "sentinel %s:%d: master '%s' is at %s:%d (config epoch %llu)",
               s->host, s->port, cfg->sentinel_master, a->host, a->port,
               (unsigned long long)named_at);
    }
    if (best) {
        memcpy(host, best->host, strlen(best->host) + 1);
        *port = best->port;
        *epoch = best->epoch;
        rs_log(cfg, RS_LOG_INFO, "sentinels: master '%s' is at %s:%d, config epoch %llu (%zu of "
               "%zu name it)", cfg->sentinel_master, host, *port,
               (unsigned long long)best->epoch, best->votes, url->nhosts);
        free(answers);
        return 0;
    }
    free(answers);
    /* A malformed answer or wrong sentinel credentials say more than the
     * sentinels that were down. */
    if (bad.kind) {
        *err = bad;
    } else if (!unknown && refused.kind == RS_ERR_AUTH) {
        rs_error_set(err, RS_ERR_AUTH, 0, "sentinel refused the credentials: %s", refused.message);
    } else if (unknown) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "sentinels do not know a master named '%.100s' (sentinel_master)",
                     cfg->sentinel_master);
    } else {
        rs_error_set(err, last.kind ? last.kind : RS_ERR_CONNECTION,
                     last.kind == RS_ERR_AUTH ? 0 : 1,
                     "no sentinel answered (%zu of %zu tried); last: %s", asked, url->nhosts,
                     last.message);
    }
    return -1;
}

int rs_sentinel_confirm_master(rs_conn *conn, const char *host, int port, rs_error *err)
{
    const char *argv[1] = {"ROLE"};
    redisReply *reply;
    if (rs_conn_command(conn->ctx, 1, argv, &reply, err) < 0) return -1;
    int master = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                 reply->element[0]->type == REDIS_REPLY_STRING &&
                 strcmp(reply->element[0]->str, "master") == 0;
    freeReplyObject(reply);
    if (!master) {
        rs_error_set(err, RS_ERR_CONNECTION, 1, "%s:%d is not a master (failover in progress)",
                     host, port);
        return -1;
    }
    return 0;
}
