/* sentinel.c -- finding the master through Redis Sentinel.
 *
 * Several hosts in the URL are Sentinel nodes. Discovery asks them in the
 * order given (`SENTINEL get-master-addr-by-name <master>`); the first that
 * answers wins, so a sentinel that is down only costs its connect timeout.
 * A new data connection then confirms with ROLE that it reached a master:
 * right after a failover a sentinel may still name the old one, and writing
 * to a demoted master would fail with READONLY anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int rs_sentinel_discover(const rs_config *cfg, rs_tls *tls, char *host, size_t host_size,
                         int *port, rs_error *err)
{
    const rs_url *url = &cfg->parsed;
    rs_error last = {0}, refused = {0};   /* refused: an auth failure, if any */
    int unknown = 0;
    for (size_t i = 0; i < url->nhosts; i++) {
        const rs_host *s = &url->hosts[i];
        redisContext *ctx = rs_connect(cfg, tls, s->host, s->port, cfg->sentinel_username,
                                       cfg->sentinel_password, &last);
        if (!ctx) {
            rs_log(RS_LOG_INFO, "sentinel %s:%d unreachable: %s", s->host, s->port, last.message);
            if (last.kind == RS_ERR_AUTH) refused = last;
            continue;
        }
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", cfg->sentinel_master};
        redisReply *reply;
        int rc = rs_conn_command(ctx, 3, argv, &reply, &last);
        redisFree(ctx);
        if (rc < 0) continue;
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_STRING &&
            reply->element[1]->type == REDIS_REPLY_STRING &&
            reply->element[0]->len < host_size) {
            memcpy(host, reply->element[0]->str, reply->element[0]->len + 1);
            *port = atoi(reply->element[1]->str);
            freeReplyObject(reply);
            rs_log(RS_LOG_INFO, "sentinel %s:%d: master '%s' is at %s:%d", s->host, s->port,
                   cfg->sentinel_master, host, *port);
            return 0;
        }
        unknown++;
        freeReplyObject(reply);
    }
    /* Wrong sentinel credentials say more than the sentinels that were down. */
    if (!unknown && refused.kind == RS_ERR_AUTH) {
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
