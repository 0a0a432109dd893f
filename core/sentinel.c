/* SPDX-License-Identifier: MIT */
/* sentinel.c -- finding the master through Redis Sentinel.
 *
 * Several hosts in the URL are Sentinel nodes. Discovery asks them
 * (`SENTINEL get-master-addr-by-name <master>`) starting at a sentinel that
 * moves on with every discovery, and stops once a majority of the URL's
 * sentinels named the same address; short of that, the address named most
 * often wins (a tie goes to the one heard first). Right after a failover a
 * lagging sentinel may still name the old master: asked first every time,
 * it would send every retry to the demoted server; outvoted or asked later,
 * it cannot. A sentinel that is down costs its connect timeout; a TLS
 * failure that is final (certificate, name, protocol) ends the discovery
 * at once, unretried.
 * A new data connection then confirms with ROLE that it reached a master:
 * writing to a demoted master would fail with READONLY anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct answer {
    char host[256];
    int port;
    size_t votes;
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
static answer *vote(answer *answers, size_t *nanswers, const char *host, int port)
{
    for (size_t i = 0; i < *nanswers; i++) {
        if (answers[i].port == port && strcmp(answers[i].host, host) == 0) {
            answers[i].votes++;
            return &answers[i];
        }
    }
    answer *a = &answers[(*nanswers)++];
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = port;
    a->votes = 1;
    return a;
}

int rs_sentinel_discover(const rs_config *cfg, rs_tls *tls, uint64_t start, char *host,
                         size_t host_size, int *port, rs_error *err)
{
    const rs_url *url = &cfg->parsed;
    rs_error last = {0}, refused = {0};   /* refused: an auth failure, if any */
    rs_error bad = {0};                   /* an answer that is not an address */
    size_t unknown = 0, nanswers = 0, majority = url->nhosts / 2 + 1;
    answer *answers = calloc(url->nhosts, sizeof *answers), *best = NULL;
    if (!answers) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory asking the sentinels");
        return -1;
    }
    for (size_t n = 0; n < url->nhosts && !(best && best->votes >= majority); n++) {
        const rs_host *s = &url->hosts[(start + n) % url->nhosts];
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
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", cfg->sentinel_master};
        redisReply *reply;
        int rc = rs_conn_command(ctx, 3, argv, &reply, &last);
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
        answer *a = vote(answers, &nanswers, h->str, master_port);
        freeReplyObject(reply);
        if (!best || a->votes > best->votes) best = a;
        rs_log(cfg, RS_LOG_DEBUG, "sentinel %s:%d: master '%s' is at %s:%d", s->host, s->port,
               cfg->sentinel_master, a->host, a->port);
    }
    if (best) {
        memcpy(host, best->host, strlen(best->host) + 1);
        *port = best->port;
        rs_log(cfg, RS_LOG_INFO, "sentinels: master '%s' is at %s:%d (%zu of %zu agree)",
               cfg->sentinel_master, host, *port, best->votes, url->nhosts);
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
                     "no sentinel answered (%zu tried); last: %s", url->nhosts, last.message);
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
