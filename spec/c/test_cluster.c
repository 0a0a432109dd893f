/* SPDX-License-Identifier: MIT */
/* test_cluster.c -- the slot map refresh seen from many threads, on a
 * one-node cluster (one redis-server serving all 16384 slots).
 *
 * With the node frozen (SIGSTOP), each sweep over the known nodes and the
 * seed costs their command timeouts; the threads that wait for a sweep must
 * take its outcome rather than sweep again, so all of them fail in about
 * one sweep, not one sweep each. Run plain and under ThreadSanitizer.
 */
#include <pthread.h>

#include "clock.h"
#include "test_support.h"

#define THREADS 8

static rs_store *store;
static rs_error errors[THREADS];

static void *reader(void *arg)
{
    int id = (int)(long)arg;
    char *out = NULL;
    size_t len;
    if (rs_get_raw(store, "c", 1, &out, &len, &errors[id]) >= 0) rs_free(out);
    return NULL;
}

static int cluster_ok(int port)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d CLUSTER INFO 2>/dev/null | grep -q cluster_state:ok",
             port);
    return system(cmd) == 0;
}

int main(void)
{
    char conf[300];
    const char *root = getenv("RS_TEST_ROOT");
    snprintf(conf, sizeof conf, "%s/nodes-%d.conf", root ? root : "/tmp", (int)getpid());
    const char *extra[] = {"--cluster-enabled", "yes", "--cluster-config-file", conf, NULL};
    int port = t_start_server(extra);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null", port);
    CHECK(system(cmd) == 0);
    for (int i = 0; i < 300 && !cluster_ok(port); i++) usleep(100000);
    CHECK(cluster_ok(port));

    rs_config *cfg = t_config(port, NULL);
    rs_config_set(cfg, "cluster_mode", "true", NULL);
    rs_config_set(cfg, "connection_timeout", "300ms", NULL);
    rs_config_set(cfg, "command_timeout", "300ms", NULL);
    rs_config_set(cfg, "max_retries", "1", NULL);
    rs_config_set(cfg, "retry_base_delay", "1ms", NULL);
    rs_config_set(cfg, "retry_max_delay", "1ms", NULL);
    rs_config_set(cfg, "pool_size", "16", NULL);
    rs_error err = {0};
    store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    if (!store) return t_report("test_cluster");
    CHECK(rs_save_raw(store, "c", 1, "v", 1, RS_TTL_DEFAULT, &err) == 0);

    /* Frozen: the first attempt times out (300 ms) and marks the map stale;
     * the retry's refresh sweeps the node and the seed (2 x 300 ms). One
     * sweep for all: about 0.9 s. A sweep per thread: 8 x 0.6 s more. */
    kill(t_server_pid, SIGSTOP);
    pthread_t threads[THREADS];
    double t0 = rs_now();
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, reader, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    double took = rs_now() - t0;
    kill(t_server_pid, SIGCONT);
    printf("test_cluster: %d threads failed in %.2fs\n", THREADS, took);
    CHECK(took < 2.5);
    for (int i = 0; i < THREADS; i++) CHECK(errors[i].kind != RS_OK);

    /* Thawed: the next call refreshes and reads. */
    char *out = NULL;
    size_t len;
    CHECK(rs_get_raw(store, "c", 1, &out, &len, &err) == 1 && len == 1 && out[0] == 'v');
    rs_free(out);
    rs_store_close(store);
    rs_config_free(cfg);
    return t_report("test_cluster");
}
