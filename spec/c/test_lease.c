/* test_lease.c -- the C lease keepalive thread: keeps a lock past its TTL,
 * reports loss once through the callback, releases on stop. */
#include <stdatomic.h>

#include "test_support.h"

static atomic_int lost_calls;

static void on_lost(const char *key, void *userdata)
{
    (void)userdata;
    if (strcmp(key, "rigatoni:lock:db:c") == 0) atomic_fetch_add(&lost_calls, 1);
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
    return t_report("test_lease");
}
