/* SPDX-License-Identifier: MIT */
/* test_lease.c -- the C lease keepalive thread: keeps a lock past its TTL,
 * reports loss once through the callback (also when the server is frozen:
 * the lease knows its validity from its own clock), releases on stop, and
 * may be stopped from inside its on_lost. rs_lock_refresh_by: a refresh
 * that never outlives its deadline, also when it must ask Sentinel and no
 * sentinel answers (the whole discovery cut to the deadline). */
#include <stdatomic.h>
#include <time.h>

#include "test_sentinel.h"

static atomic_int lost_calls;
static _Atomic double lost_at;

static void on_lost(const char *key, void *userdata)
{
    (void)userdata;
    if (strcmp(key, "rigatoni:lock:db:c") == 0) {
        atomic_store(&lost_at, t_now());
        atomic_fetch_add(&lost_calls, 1);
    }
}

/* on_lost that stops its own lease (userdata: where the lease pointer is). */
static atomic_int stop_result = -1;
static void stop_from_on_lost(const char *key, void *userdata)
{
    (void)key;
    rs_lease *lease;
    while (!(lease = atomic_load((_Atomic(rs_lease *) *)userdata))) usleep(1000);
    atomic_store(&stop_result, rs_lease_stop(lease, 1));
}

static void wait_for(atomic_int *what, int value, double seconds)
{
    for (double end = t_now() + seconds; atomic_load(what) != value && t_now() < end;) usleep(5000);
}

static atomic_int sent_lost_calls;
static _Atomic double sent_lost_at;

static void on_sent_lost(const char *key, void *userdata)
{
    (void)key, (void)userdata;
    atomic_store(&sent_lost_at, t_now());
    atomic_fetch_add(&sent_lost_calls, 1);
}

/* Five sentinels that accept and never answer (three frozen, two silent
 * listeners): a refresh that needs a new connection asks each of them, and
 * each costs its timeouts; the whole must end by the validity. Last: the
 * sentinels watch the master, which the earlier tests freeze. */
/* Three sentinels watching the master, started without the replica and
 * the settling of t_sentinel_setup (seconds): each only has to name it. */
static void start_sentinels(int master)
{
    atexit(t_sentinel_stop_all);
    for (int i = 0; i < 3; i++) {
        char conf[300], port[16];
        t_sentinel_port[i] = t_free_port();
        snprintf(port, sizeof port, "%d", t_sentinel_port[i]);
        snprintf(conf, sizeof conf, "%s/sentinel%d.conf", t_server_dir, i);
        FILE *f = fopen(conf, "w");
        if (!f) {
            perror(conf);
            exit(2);
        }
        fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                   "sentinel resolve-hostnames no\n"
                   "sentinel monitor mymaster 127.0.0.1 %d 2\n", t_sentinel_port[i],
                t_server_dir, master);
        fclose(f);
        const char *argv[] = {"redis-sentinel", conf, NULL};
        t_sentinel_pid[i] = t_spawn(argv);
    }
    char want[16], out[256];
    snprintf(want, sizeof want, "%d", master);
    for (int i = 0; i < 3; i++)
        for (double end = t_now() + 20;;) {
            t_cli(t_sentinel_port[i], "SENTINEL get-master-addr-by-name mymaster", out, sizeof out);
            if (strstr(out, want)) break;
            if (t_now() > end) {
                fprintf(stderr, "sentinel %d did not start (logs in %s)\n", i, t_server_dir);
                exit(2);
            }
            usleep(20000);
        }
}

static void frozen_sentinels(int master)
{
    start_sentinels(master);
    int silent[2];
    for (int i = 0; i < 2; i++) t_silent_listener(&silent[i]);
    char url[300];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d,"
             "127.0.0.1:%d", t_sentinel_port[0], silent[0], t_sentinel_port[1], silent[1],
             t_sentinel_port[2]);
    rs_config *cfg = rs_config_new();
    rs_error err = {0};
    CHECK(cfg && rs_config_set(cfg, "url", url, &err) == 0);
    CHECK(rs_config_set(cfg, "command_timeout", "0.5", &err) == 0);
    CHECK(rs_config_set(cfg, "connection_timeout", "0.5", &err) == 0);
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return;
    const char *key = "rigatoni:lock:db:sent";
    CHECK(rs_lock_acquire(store, key, "me", 10, &err) == 1);
    rs_lease *lease = rs_lease_keepalive(store, key, "me", 1.2, on_sent_lost, NULL, &err);
    CHECK(lease != NULL);
    for (int i = 0; i < 3; i++) kill(t_sentinel_pid[i], SIGSTOP);

    /* rs_lock_refresh_by: a private pool, so a discovery of five steps of
     * min(0.5, 0.8 / 4) s each (1 s) before the fix. */
    double start = t_now();
    int rc = rs_lock_refresh_by(store, key, "me", 10, start + 0.8, &err);
    double took = t_now() - start;
    CHECK(rc == -1 && err.kind == RS_ERR_TIMEOUT);
    CHECK(took < 0.85);
    printf("rs_lock_refresh_by, five sentinels not answering: %.3fs for a deadline 0.8s away "
           "(%s)\n", took, err.message);

    /* The C lease: its connection closed, its next refresh needs a new one,
     * so asks the sentinels: the loss is reported at the validity's end. */
    char out[64];
    t_cli(master, "CLIENT KILL TYPE normal", out, sizeof out);
    usleep(50000);
    double valid_until = t_now() + rs_lease_remaining(lease);
    for (double end = t_now() + 3; !atomic_load(&sent_lost_calls) && t_now() < end;) usleep(5000);
    double lost = atomic_load(&sent_lost_at);
    CHECK(atomic_load(&sent_lost_calls) == 1);
    CHECK(lost <= valid_until + 0.1);
    if (atomic_load(&sent_lost_calls) == 1)
        printf("five sentinels not answering: lease loss reported %.3fs after the validity "
               "ended\n", lost - valid_until);
    for (int i = 0; i < 3; i++) kill(t_sentinel_pid[i], SIGCONT);
    rs_lease_stop(lease, 0);
    rs_store_close(store);
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_config *cfg = t_config(port, NULL);
    rs_error err = {0};
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return t_report("test_lease");

    const char *key = "rigatoni:lock:db:c";
    CHECK(rs_lock_acquire(store, key, "me", 0.3, &err) == 1);
    rs_lease *lease = rs_lease_keepalive(store, key, "me", 0.3, on_lost, NULL, &err);
    CHECK(lease != NULL);
    usleep(1000000);                          /* over three TTLs */
    CHECK(rs_lock_acquire(store, key, "other", 10, &err) == 0);
    CHECK(atomic_load(&lost_calls) == 0);
    CHECK(rs_lease_stop(lease, 1) == 1);      /* still held, now released */
    CHECK(rs_lock_is_locked(store, key, &err) == 0);

    /* Taken over while the keepalive runs: one loss report, then quiet. */
    CHECK(rs_lock_acquire(store, key, "me", 0.3, &err) == 1);
    lease = rs_lease_keepalive(store, key, "me", 0.3, on_lost, NULL, &err);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d SET %s thief >/dev/null", port, key);
    CHECK(system(cmd) == 0);
    usleep(700000);
    CHECK(atomic_load(&lost_calls) == 1);
    CHECK(rs_lease_stop(lease, 1) == 0);      /* lost: nothing released */
    char *owner = NULL;
    CHECK(rs_lock_owner(store, key, &owner, &err) == 1 && owner && strcmp(owner, "thief") == 0);
    rs_free(owner);

    /* A lock that is not ours gives no lease. */
    lease = rs_lease_keepalive(store, key, "me", 1, on_lost, NULL, &err);
    CHECK(lease == NULL && err.kind == RS_ERR_NOT_OWNER);

    /* Frozen server (SIGSTOP): no refresh can succeed, so the lease is lost
     * when its validity (last good refresh + ttl) passes, not later. The
     * store's own policy (5 s command timeout, 3 retries) would take 20 s. */
    atomic_store(&lost_calls, 0);
    snprintf(cmd, sizeof cmd, "redis-cli -p %d DEL %s >/dev/null", port, key);
    CHECK(system(cmd) == 0);
    CHECK(rs_lock_acquire(store, key, "me", 3, &err) == 1);
    lease = rs_lease_keepalive(store, key, "me", 3, on_lost, NULL, &err);
    CHECK(lease != NULL);
    usleep(1500000);                          /* one refresh done (at 1 s) */
    double valid_until = t_now() + rs_lease_remaining(lease);
    CHECK(valid_until - t_now() > 1.5 && valid_until - t_now() <= 3);
    kill(t_server_pid, SIGSTOP);
    wait_for(&lost_calls, 1, 5);
    double lost = atomic_load(&lost_at);
    kill(t_server_pid, SIGCONT);
    CHECK(atomic_load(&lost_calls) == 1);
    CHECK(lost >= valid_until - 0.05 && lost <= valid_until + 0.5);
    if (atomic_load(&lost_calls) == 1)
        printf("frozen server: loss reported %.3fs after the validity ended\n", lost - valid_until);
    CHECK(rs_lease_remaining(lease) == 0);
    usleep(300000);
    CHECK(atomic_load(&lost_calls) == 1);     /* once */
    CHECK(rs_lease_stop(lease, 1) == 0);

    /* rs_lease_stop from inside on_lost: no self-join; the thread frees it. */
    _Atomic(rs_lease *) self = NULL;
    CHECK(rs_lock_acquire(store, key, "me", 0.3, &err) == 1);
    rs_lease *l2 = rs_lease_keepalive(store, key, "me", 0.3, stop_from_on_lost, &self, &err);
    CHECK(l2 != NULL);
    atomic_store(&self, l2);
    snprintf(cmd, sizeof cmd, "redis-cli -p %d SET %s thief >/dev/null", port, key);
    CHECK(system(cmd) == 0);
    wait_for(&stop_result, 0, 2);
    CHECK(atomic_load(&stop_result) == 0);
    usleep(100000);                           /* the thread frees the lease */

    /* rs_lock_refresh_by: 1 ours, 0 not; past the deadline a retryable
     * timeout without a call; on a frozen server it ends at the deadline,
     * not after the store's 5 s command timeout and 3 retries. */
    CHECK(rs_lock_acquire(store, "rigatoni:lock:db:by", "me", 10, &err) == 1);
    CHECK(rs_lock_refresh_by(store, "rigatoni:lock:db:by", "me", 10, t_now() + 1, &err) == 1);
    CHECK(rs_lock_refresh_by(store, "rigatoni:lock:db:by", "you", 10, t_now() + 1, &err) == 0);
    CHECK(rs_lock_refresh_by(store, "rigatoni:lock:db:by", "me", 10, t_now() - 1, &err) == -1 &&
          err.kind == RS_ERR_TIMEOUT && err.retryable && err.attempts == 0);
    CHECK(rs_lock_refresh_by(store, "rigatoni:lock:db:by", NULL, 10, t_now() + 1, &err) == -1 &&
          err.kind == RS_ERR_CONFIG);
    kill(t_server_pid, SIGSTOP);
    double by_start = t_now();
    int by_rc = rs_lock_refresh_by(store, "rigatoni:lock:db:by", "me", 10, by_start + 0.5, &err);
    double by_took = t_now() - by_start;
    kill(t_server_pid, SIGCONT);
    CHECK(by_rc == -1 && err.kind == RS_ERR_TIMEOUT);
    CHECK(by_took >= 0.45 && by_took < 0.6);
    printf("rs_lock_refresh_by on a frozen server: %.3fs for a deadline 0.5s away\n", by_took);
    CHECK(rs_lock_refresh_by(store, "rigatoni:lock:db:by", "me", 10, t_now() + 1, &err) == 1);

    /* Key helpers and owner ids. */
    char buf[256];
    rs_lock_key(store, "db", "coll", buf, sizeof buf);
    CHECK_STR(buf, "rigatoni:lock:db:coll");
    rs_lock_key(store, "db", NULL, buf, sizeof buf);
    CHECK_STR(buf, "rigatoni:lock:db:__database__");
    rs_lock_key(store, NULL, NULL, buf, sizeof buf);
    CHECK_STR(buf, "rigatoni:lock:__deployment__");
    CHECK(rs_owner_id(buf, sizeof buf) == 0 && strlen(buf) > 37 && buf[strlen(buf) - 37] == '-');

    rs_store_close(store);
    frozen_sentinels(port);
    return t_report("test_lease");
}
