/* SPDX-License-Identifier: MIT */
/* test_lease_failover.c -- C leases and the store across one Sentinel
 * failover (1 master, 1 replica, 3 sentinels, SENTINEL FAILOVER):
 *  - every lease checks its key on the new master at once: a key the new
 *    master lacks, or holds under another owner, is reported lost within
 *    moments, long before the lease's next scheduled refresh; a key that
 *    is there stays held and is renewed there;
 *  - a lease whose refresh keeps failing on the new master retries at the
 *    retry policy's pace, not in a busy loop, and keeps its lock;
 *  - one switch counts once (rs_store_master_changes, pool failovers);
 *  - rs_store_close returns at once while the store's subscriber waits on
 *    a frozen sentinel.
 * The new master's copy is prepared behind replication's back on the
 * replica (as asynchronous replication can leave it).
 */
#include <math.h>
#include <stdatomic.h>

#include "test_sentinel.h"

#define TTL 90               /* the scheduled refresh comes 30 s after start */

enum { GONE, TAKEN, KEPT, BUSY, NLEASES };
static const char *keys[NLEASES] = {"lease:gone", "lease:taken", "lease:kept", "busy:a"};
static _Atomic double lost_at[NLEASES];
static atomic_int busy_attempts;     /* failed refreshes of busy:a logged */

static void on_lost(const char *key, void *userdata)
{
    (void)key;
    atomic_store(&lost_at[(int)(intptr_t)userdata], t_now());
}

static void on_log(rs_log_level level, const char *message, void *userdata)
{
    (void)level;
    (void)userdata;
    if (strstr(message, "lease 'busy:a': refresh attempt")) atomic_fetch_add(&busy_attempts, 1);
}

static void replica_cli(const char *args)
{
    char out[256];
    t_cli(t_replica_port, args, out, sizeof out);
}

int main(void)
{
    int master = t_start_server(NULL);
    t_sentinel_setup(master, 3000);
    char url[200];
    t_sentinel_url(url, sizeof url);
    rs_config *cfg = rs_config_new();
    rs_error err = {0};
    CHECK(cfg && rs_config_set(cfg, "url", url, &err) == 0);
    CHECK(rs_config_set(cfg, "max_retries", "20", &err) == 0);
    CHECK(rs_config_set(cfg, "retry_max_delay", "0.2", &err) == 0);
    rs_config_set_log_handler(cfg, on_log, NULL);
    rs_log_set_level(RS_LOG_INFO);
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return t_report("test_lease_failover");

    rs_lease *leases[NLEASES];
    double started = t_now();
    for (int i = 0; i < NLEASES; i++) {
        CHECK(rs_lock_acquire(store, keys[i], "me", TTL, &err) == 1);
        leases[i] = rs_lease_keepalive(store, keys[i], "me", TTL, on_lost, (void *)(intptr_t)i,
                                       &err);
        CHECK(leases[i] != NULL);
    }
    char out[256];
    t_cli(master, "WAIT 1 5000", out, sizeof out);
    CHECK(atoi(out) == 1);
    /* The replica loses one key and has another under a thief; the new
     * master will refuse the busy lease's key to the store's user. */
    replica_cli("CONFIG SET replica-read-only no");
    replica_cli("DEL lease:gone");
    replica_cli("SET lease:taken thief");
    replica_cli("CONFIG SET replica-read-only yes");
    replica_cli("ACL SETUSER default resetkeys ~lease:*");
    CHECK(rs_lock_is_locked(store, "lease:kept", &err) == 1);   /* a pooled connection */

    /* Through the sentinel the store listens to (the second of the URL):
     * it hears the switch while the other two may still name the old. */
    int now_master = t_sentinel_failover(1);
    double switched = t_now();
    CHECK(now_master == t_replica_port);
    for (double end = switched + 5; t_now() < end;) {
        if (atomic_load(&lost_at[GONE]) > 0 && atomic_load(&lost_at[TAKEN]) > 0) break;
        usleep(20000);
    }
    /* Calls made after the switch go to the new master, and the switch
     * counts once however many parts of the store noticed it. */
    CHECK(rs_lock_acquire(store, "lease:after", "me", 30, &err) == 1);
    t_cli(t_replica_port, "GET lease:after", out, sizeof out);
    CHECK_STR(out, "me\n");
    CHECK(rs_store_master_changes(store) == 1);
    rs_pool_stats stats;
    rs_store_pool_stats(store, &stats);
    CHECK(stats.failovers == 1);

    /* Lost at once: well before the scheduled refresh at TTL / 3. */
    for (int i = GONE; i <= TAKEN; i++) {
        double at = atomic_load(&lost_at[i]);
        CHECK(at > 0 && at < started + TTL / 3.0);
        CHECK(rs_lease_remaining(leases[i]) == 0);
        if (at > 0) printf("%s: loss reported %.3fs after every sentinel agreed\n", keys[i],
                           at - switched);
    }
    CHECK(atomic_load(&lost_at[KEPT]) == 0 && rs_lease_remaining(leases[KEPT]) > TTL - 10);

    /* The busy lease fails on the new master (NOPERM): its retries are
     * paced by the retry policy (0.1 s doubling to 0.2 s), not spun. */
    int before = atomic_load(&busy_attempts);
    usleep(1500000);
    int attempts = atomic_load(&busy_attempts) - before;
    printf("busy:a: %d failed refresh attempts logged in 1.5 s (%d before)\n", attempts, before);
    CHECK(before >= 1 && attempts >= 1 && attempts < 20);
    t_cli(t_replica_port, "ACL SETUSER default allkeys", out, sizeof out);
    usleep(600000);
    CHECK(atomic_load(&lost_at[BUSY]) == 0 && rs_lease_remaining(leases[BUSY]) > TTL - 10);
    t_cli(t_replica_port, "PTTL busy:a", out, sizeof out);
    CHECK(atof(out) > (TTL - 2) * 1000.0);   /* renewed on the new master */

    CHECK(rs_lease_stop(leases[GONE], 1) == 0);
    CHECK(rs_lease_stop(leases[TAKEN], 1) == 0);
    CHECK(rs_lease_stop(leases[KEPT], 1) == 1);
    CHECK(rs_lease_stop(leases[BUSY], 1) == 1);

    /* The subscribed sentinel dies, the others freeze: the subscriber
     * waits on one of them; closing the store does not wait with it. */
    kill(t_sentinel_pid[0], SIGSTOP);
    kill(t_sentinel_pid[2], SIGSTOP);
    kill(t_sentinel_pid[1], SIGKILL);
    usleep(500000);
    double start = t_now();
    rs_store_close(store);
    double took = t_now() - start;
    printf("rs_store_close took %.3fs with the sentinels frozen\n", took);
    CHECK(took < 1.5);
    kill(t_sentinel_pid[0], SIGCONT);
    kill(t_sentinel_pid[2], SIGCONT);
    return t_report("test_lease_failover");
}
