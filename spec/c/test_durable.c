/* SPDX-License-Identifier: MIT */
/* test_durable.c -- rs_call_durable adds its WAIT wherever the call goes:
 * routed by the store, or on a pool the call names (a node, a lease's
 * own). A server without replicas acknowledges none, so with
 * wait_replicas 1 every durable write must fail the same way. Uses the
 * core's internal API: no public function runs a call on a given pool. */
#include "call.h"
#include "store_state.h"
#include "test_support.h"

/* One durable SET of `key`, on `pool` (NULL: the store's routing). */
static int durable_set(rs_store *store, rs_pool *pool, const char *key, rs_error *err)
{
    const char *argv[3] = {"SET", key, "v"};
    const size_t len[3] = {3, strlen(key), 1};
    const rs_cmd cmd = {3, argv, len};
    redisReply *reply = NULL;
    rs_call call = RS_CALL(RS_OP_SAVE, "durable set", 1, &cmd, &reply, err);
    call.pool = pool;
    int rc = rs_call_durable(store, &call);
    if (rc == 0) freeReplyObject(reply);
    return rc;
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_error err = {0};
    rs_config *cfg = t_config(port, NULL);
    CHECK(rs_config_set(cfg, "wait_replicas", "1", &err) == 0);
    CHECK(rs_config_set(cfg, "wait_timeout", "50ms", &err) == 0);
    rs_store *store = rs_store_open(cfg, &err);
    CHECK(store != NULL);

    CHECK(durable_set(store, NULL, "routed", &err) == -1);
    CHECK(strstr(err.message, "only 0 of 1 replicas acknowledged") != NULL);

    err = (rs_error){0};
    CHECK(durable_set(store, store->pool, "on-a-pool", &err) == -1);
    CHECK(strstr(err.message, "only 0 of 1 replicas acknowledged") != NULL);

    rs_store_close(store);
    rs_config_free(cfg);
    return t_report("test_durable");
}
