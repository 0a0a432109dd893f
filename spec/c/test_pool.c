/* SPDX-License-Identifier: MIT */
/* test_pool.c -- pool bounds and waits, broken connections, and the retry
 * policy, against a real redis-server. Uses the core's internal API where
 * the public one cannot hold a connection on purpose. */
#include "clock.h"
#include "pool.h"
#include "retry.h"
#include "test_support.h"

static rs_config *config_for(int port, const char *extra_name, const char *extra_value)
{
    rs_config *cfg = t_config(port, NULL);
    if (extra_name) rs_config_set(cfg, extra_name, extra_value, NULL);
    return cfg;
}

static void kill_clients(int port)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d CLIENT KILL TYPE normal SKIPME yes >/dev/null", port);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_error err = {0};

    /* Waiting for a free connection is bounded by connection_timeout. */
    rs_config *cfg = config_for(port, "pool_size", "1");
    rs_config_set(cfg, "connection_timeout", "200ms", NULL);
    rs_pool *pool = rs_pool_new(cfg, NULL, "127.0.0.1", port);
    rs_conn *held = rs_pool_acquire(pool, &err);
    CHECK(held != NULL);
    double t0 = rs_now();
    CHECK(rs_pool_acquire(pool, &err) == NULL);
    double waited = rs_now() - t0;
    CHECK(err.kind == RS_ERR_POOL);
    CHECK(strstr(err.message, "pool_size 1") != NULL);
    CHECK(waited >= 0.19 && waited < 1.5);
    rs_pool_stats st;
    rs_pool_get_stats(pool, &st);
    CHECK(st.waits == 1 && st.wait_timeouts == 1 && st.open == 1 && st.in_use == 1);
    rs_pool_release(pool, held, 0);
    rs_conn *again = rs_pool_acquire(pool, &err);
    CHECK(again == held);                    /* reused, not reconnected */
    rs_pool_get_stats(pool, &st);
    CHECK(st.created == 1);

    /* An idle connection killed by the server is noticed by the PING check. */
    rs_pool_release(pool, again, 0);
    kill_clients(port);
    rs_config_set(cfg, "idle_check_after", "0", NULL);
    usleep(10000);
    rs_conn *fresh = rs_pool_acquire(pool, &err);
    CHECK(fresh != NULL);
    rs_pool_get_stats(pool, &st);
    CHECK(st.closed_idle == 1 && st.created == 2);
    rs_pool_release(pool, fresh, 1);        /* broken: closed, not kept */
    rs_pool_get_stats(pool, &st);
    CHECK(st.open == 0 && st.idle == 0 && st.closed_broken == 1);
    rs_pool_free(pool);
    rs_config_free(cfg);

    /* The idle checks of one acquire share its connection_timeout: with the
     * server frozen, four stale connections cost no more than that, not
     * four command_timeouts (then a timeout error, retryable). */
    cfg = config_for(port, "pool_size", "4");
    rs_config_set(cfg, "connection_timeout", "400ms", NULL);
    rs_config_set(cfg, "command_timeout", "1s", NULL);
    pool = rs_pool_new(cfg, NULL, "127.0.0.1", port);
    rs_conn *lent[4];
    for (int i = 0; i < 4; i++) CHECK((lent[i] = rs_pool_acquire(pool, &err)) != NULL);
    for (int i = 0; i < 4; i++) rs_pool_release(pool, lent[i], 0);
    rs_config_set(cfg, "idle_check_after", "0", NULL);
    kill(t_server_pid, SIGSTOP);
    t0 = rs_now();
    rs_conn *stale = rs_pool_acquire(pool, &err);
    waited = rs_now() - t0;
    kill(t_server_pid, SIGCONT);
    CHECK(stale == NULL);
    CHECK(waited < 0.4 + 0.3);
    CHECK(err.kind == RS_ERR_TIMEOUT && err.retryable == 1);
    CHECK(strstr(err.message, "0.4s") != NULL);
    rs_pool_get_stats(pool, &st);
    CHECK(st.in_use == 0);
    rs_conn *thawed = rs_pool_acquire(pool, &err);    /* the server answers again */
    CHECK(thawed != NULL);
    rs_pool_release(pool, thawed, 0);
    rs_pool_free(pool);
    rs_config_free(cfg);

    /* Through the store: connections killed under it are replaced by the
     * retry, without an error reaching the caller. */
    cfg = config_for(port, "pool_size", "4");
    rs_config_set(cfg, "retry_base_delay", "10ms", NULL);
    rs_store *store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    CHECK(rs_save_raw(store, "c", 1, "v", 1, RS_TTL_DEFAULT, &err) == 0);
    kill_clients(port);
    char *out = NULL;
    size_t len;
    CHECK(rs_get_raw(store, "c", 1, &out, &len, &err) == 1 && len == 1 && out[0] == 'v');
    rs_free(out);

    /* Transient server replies are retried max_retries times... */
    err = t_eval_error(store, "return redis.error_reply('LOADING Redis is loading the dataset')");
    CHECK(err.kind == RS_ERR_SERVER && err.retryable == 1 && err.attempts == 4);
    CHECK(strstr(err.message, "4 attempts") != NULL);
    err = t_eval_error(store, "return redis.error_reply('READONLY You can not write')");
    CHECK(err.attempts == 4);
    /* ...deterministic ones are not. */
    err = t_eval_error(store, "return redis.error_reply('WRONGTYPE Operation against a key')");
    CHECK(err.kind == RS_ERR_SERVER && err.retryable == 0 && err.attempts == 1);
    err = t_eval_error(store, "return redis.error_reply('NOAUTH Authentication required')");
    CHECK(err.kind == RS_ERR_AUTH && err.retryable == 0 && err.attempts == 1);
    err = t_eval_error(store, "return redis.error_reply('OOM command not allowed')");
    CHECK(err.retryable == 0 && err.attempts == 1);
    rs_store_close(store);
    rs_config_free(cfg);

    /* Backoff: 100, 200, 400 ms ... capped, jitter within [50%, 100%]. */
    cfg = rs_config_new();
    for (int n = 1; n <= 8; n++) {
        double base = 0.1 * (1 << (n - 1)), cap = 5.0;
        double want = base < cap ? base : cap;
        double d = rs_retry_delay(cfg, n);
        CHECK(d >= want * 0.5 - 1e-9 && d <= want + 1e-9);
    }
    rs_config_free(cfg);

    /* Connection refused after the server is gone: retried, then reported. */
    cfg = config_for(port, "max_retries", "2");
    rs_config_set(cfg, "retry_base_delay", "10ms", NULL);
    t_stop_server();
    CHECK(rs_store_open(cfg, &err) == NULL);
    CHECK(err.kind == RS_ERR_CONNECTION && err.attempts == 3 && err.retryable == 1);
    rs_config_free(cfg);
    return t_report("test_pool");
}
