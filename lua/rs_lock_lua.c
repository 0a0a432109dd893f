/* SPDX-License-Identifier: MIT */
/* rs_lock_lua.c -- Rigatoni 0.2 locks and leases for Lua.
 *
 * Store methods mirror the Rust API (try_acquire_lock, refresh_lock,
 * release_lock, is_locked). A lease bundles key, owner and ttl:
 *
 *   local lease <close> = store:lease(key, owner, { ttl = 30 })
 *   if lease then lease:save_resume_token(c, t) end   -- fenced
 *
 * store:lease returns nil when another owner holds the lock. Closing the
 * lease releases the lock; a failure to release on close is ignored (the
 * TTL frees the lock anyway) so that unwinding an error is not replaced by
 * a second one. Leases keep their store alive through a user value.
 *
 * Like the C lease, a Lua lease knows its validity from its own monotonic
 * clock: valid until the start of the last successful acquire or refresh
 * + ttl. Once that has passed the lease is lost for good: held() is false,
 * refresh() false and save_resume_token raises not_owner, all without
 * asking the server (the key may have expired and been taken meanwhile).
 * One exception: once the store saw its Sentinel master change, the next
 * remaining() or save asks the new master whether the lock is still ours
 * (replication is asynchronous: the new master may lack it).
 * The loss is counted in the store's lock metrics once, when the lease
 * first notices it (lease_lose), as the C lease counts its own.
 * Refreshing is manual (lease:refresh() within the ttl): a Lua state is not
 * thread safe, so no background thread may run Lua code or touch the lease
 * while the script runs, and a C keep-alive thread could only ever refresh
 * behind the script's back, not tell it that the lock was lost. A refresh
 * never outlives the validity (rs_lock_refresh_by). For event loops the
 * lease's calls are jobs too (store:start("lease"), lease:start_refresh,
 * lease:start_release: "Lease jobs" below), which the adapters'
 * self-refreshing lease uses (lua/rigatoni_store/loop_lease.lua).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_lua.h"

#define LEASE_MT "rigatoni_store.lease"

static const char *check_key(lua_State *L, int idx)
{
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (len == 0 || strlen(key) != len)
        rs_lua_raisef(L, RS_ERR_CONFIG, "lock key must be a non-empty string without NUL");
    return key;
}

static const char *check_owner(lua_State *L, int idx)
{
    size_t len;
    const char *owner = luaL_checklstring(L, idx, &len);
    if (len == 0 || strlen(owner) != len)
        rs_lua_raisef(L, RS_ERR_CONFIG, "lock owner must be a non-empty string without NUL");
    return owner;
}

static double check_ttl(lua_State *L, int idx)
{
    double ttl = luaL_checknumber(L, idx);
    if (!(ttl > 0)) rs_lua_raisef(L, RS_ERR_CONFIG, "lock ttl must be a positive number of seconds");
    return ttl;
}

/* Pushes a boolean result or raises. */
static int push_result(lua_State *L, int rc, const rs_error *err)
{
    if (rc < 0) return rs_lua_raise(L, err);
    lua_pushboolean(L, rc);
    return 1;
}

/* ---------------------------------------------------------------------
 * Store methods: operations (rs_op_lua.c), key and owner copied
 * ------------------------------------------------------------------ */

typedef struct lock_op {
    const char *key, *owner;
    double ttl;
    double deadline;           /* a lease's refresh: the end of its validity */
    int counted_lost;          /* a lease's release: its loss already counted */
    char *held_by;             /* lock_owner: the core's malloc'd bytes */
    size_t held_len;
} lock_op;

static void parse_key(lua_State *L, void *arg)
{
    lock_op *op = arg;
    const char *key = check_key(L, 2);
    op->key = rs_lua_op_copy(L, op, key, strlen(key));
}

static void parse_key_owner(lua_State *L, void *arg)
{
    lock_op *op = arg;
    parse_key(L, op);
    const char *owner = check_owner(L, 3);
    op->owner = rs_lua_op_copy(L, op, owner, strlen(owner));
}

static void parse_key_owner_ttl(lua_State *L, void *arg)
{
    lock_op *op = arg;
    parse_key_owner(L, op);
    op->ttl = check_ttl(L, 4);
}

static int run_acquire(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    return rs_lock_acquire(store, op->key, op->owner, op->ttl, err);
}

static int run_refresh(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    return rs_lock_refresh(store, op->key, op->owner, op->ttl, err);
}

static int run_refresh_by(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    return rs_lock_refresh_by(store, op->key, op->owner, op->ttl, op->deadline, err);
}

static int run_release(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    if (op->counted_lost) return rs_lock_release_lost(store, op->key, op->owner, err);
    return rs_lock_release(store, op->key, op->owner, err);
}

static int run_is_locked(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    return rs_lock_is_locked(store, op->key, err);
}

static int push_boolean(lua_State *L, rs_store *store, void *arg, int rc)
{
    (void)store, (void)arg;
    lua_pushboolean(L, rc);
    return 1;
}

/* store:lock_owner(key) -> owner id (its bytes whole), or nil when free */
static int run_lock_owner(rs_store *store, void *arg, rs_error *err)
{
    lock_op *op = arg;
    return rs_lock_owner_bytes(store, op->key, &op->held_by, &op->held_len, err);
}

static int push_lock_owner(lua_State *L, rs_store *store, void *arg, int rc)
{
    lock_op *op = arg;
    (void)store;
    if (rc == 0) lua_pushnil(L);
    else lua_pushlstring(L, op->held_by, op->held_len);
    return 1;
}

static void free_lock_owner(void *arg)
{
    lock_op *op = arg;
    rs_free(op->held_by);
    op->held_by = NULL;
}

static const rs_lua_op acquire_op = {
    "try_acquire_lock", sizeof(lock_op), 3, parse_key_owner_ttl, run_acquire, push_boolean,
    NULL, NULL,
};
static const rs_lua_op refresh_op = {
    "refresh_lock", sizeof(lock_op), 3, parse_key_owner_ttl, run_refresh, push_boolean, NULL, NULL,
};
static const rs_lua_op release_op = {
    "release_lock", sizeof(lock_op), 2, parse_key_owner, run_release, push_boolean, NULL, NULL,
};
static const rs_lua_op is_locked_op = {
    "is_locked", sizeof(lock_op), 1, parse_key, run_is_locked, push_boolean, NULL, NULL,
};
static const rs_lua_op lock_owner_op = {
    "lock_owner", sizeof(lock_op), 1, parse_key, run_lock_owner, push_lock_owner, NULL,
    free_lock_owner,
};

/* A lease's refresh as a job (lease:start_refresh); not a store method. */
static const rs_lua_op refresh_by_op = {
    "refresh_lock", sizeof(lock_op), 0, NULL, run_refresh_by, push_boolean, NULL, NULL,
};

static const rs_lua_op *const lock_ops[] = {
    &acquire_op, &refresh_op, &release_op, &is_locked_op, &lock_owner_op, NULL,
};

/* store:lock_key(db [, collection]) and store:lock_key() for the three
 * Rigatoni forms: collection, database (__database__), deployment. */
static int store_lock_key(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    const char *db = luaL_optstring(L, 2, NULL);
    const char *collection = luaL_optstring(L, 3, NULL);
    char buf[1024];
    size_t n = rs_lock_key(store, db, collection, buf, sizeof buf);
    if (n >= sizeof buf) rs_lua_raisef(L, RS_ERR_CONFIG, "lock key too long");
    lua_pushlstring(L, buf, n);
    return 1;
}

/* ---------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------ */

typedef struct lease_box {
    char *key, *owner;       /* NULL once closed */
    double ttl;
    double valid_until;      /* monotonic seconds; 0 once lost */
    uint64_t master_changes; /* rs_store_master_changes when the lock was last known ours */
    int counted_lost;        /* the loss is in the store's lock metrics (once) */
} lease_box;

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The lease (at idx) is lost for good: counted in its store's lock
 * metrics the first time (as the C lease counts it; a refresh that found
 * the lock not held was counted by the core, which sets counted_lost). */
static void lease_lose(lua_State *L, int idx, lease_box *lease)
{
    lease->valid_until = 0;
    if (lease->counted_lost || !lease->key) return;
    lease->counted_lost = 1;
    lua_getiuservalue(L, idx, 1);
    rs_store *store = rs_lua_test_store(L, -1);   /* NULL once the store is closed */
    lua_pop(L, 1);
    if (store) rs_lock_note_lost(store);
}

/* Seconds of validity left; 0 once the validity passed (then for good). */
static double lease_left(lua_State *L, int idx, lease_box *lease)
{
    double left = lease->valid_until - monotonic_now();
    if (left > 0) return left;
    lease_lose(L, idx, lease);
    return 0;
}

/* The lease at 1 and its store (pushed). */
static lease_box *check_lease(lua_State *L, rs_store **store)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    if (!lease->key) luaL_error(L, "attempt to use a released lease");
    lua_getiuservalue(L, 1, 1);
    *store = rs_lua_check_store(L, lua_gettop(L));
    return lease;
}

static void lease_free(lease_box *lease)
{
    free(lease->key);
    free(lease->owner);
    lease->key = lease->owner = NULL;
}

static int lease_gc(lua_State *L)
{
    lease_free(luaL_checkudata(L, 1, LEASE_MT));
    return 0;
}

/* store:lease's arguments at 2, 3, 4: raises on bad input. */
static void check_lease_args(lua_State *L, const char **key, const char **owner, double *ttl)
{
    *key = check_key(L, 2);
    *owner = check_owner(L, 3);
    *ttl = 30;
    static const char *const known[] = {"ttl", NULL};
    if (rs_lua_check_options(L, 4, known)) {
        if (rs_lua_opt_field(L, 4, "ttl", LUA_TNUMBER)) *ttl = check_ttl(L, -1);
        lua_pop(L, 1);
    }
}

/* Pushes the lease an acquire that started at `start` (monotonic) gave
 * (rc 1), or nil (0: taken). The store at store_idx. */
static int push_lease(lua_State *L, int store_idx, const char *key, const char *owner, double ttl,
                      double start, uint64_t changes, int rc)
{
    store_idx = lua_absindex(L, store_idx);
    if (rc == 0) {
        lua_pushnil(L);
        return 1;
    }
    lease_box *lease = lua_newuserdatauv(L, sizeof *lease, 1);
    lease->key = lease->owner = NULL;
    lease->ttl = ttl;
    lease->valid_until = start + ttl;
    lease->master_changes = changes;
    lease->counted_lost = 0;
    luaL_setmetatable(L, LEASE_MT);
    lua_pushvalue(L, store_idx);
    lua_setiuservalue(L, -2, 1);
    if (!(lease->key = strdup(key)) || !(lease->owner = strdup(owner)))
        return luaL_error(L, "out of memory");
    return 1;
}

/* store:lease(key, owner [, {ttl = 30}]) -> lease, or nil when taken */
static int store_lease(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    const char *key, *owner;
    double ttl;
    check_lease_args(L, &key, &owner, &ttl);
    rs_error err = {0};
    double start = monotonic_now();
    uint64_t changes = rs_store_master_changes(store);
    int rc = rs_lock_acquire(store, key, owner, ttl, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    return push_lease(L, 1, key, owner, ttl, start, changes, rc);
}

/* What a refresh that started at `start` says of the lease: rc 1 renews
 * the validity from that start, unless it passed meanwhile (a refresh
 * that returns after it is too late: the lease is lost for good); 0
 * (taken or expired) loses it. Pushes whether the lease is still valid. */
static int push_refreshed(lua_State *L, int idx, lease_box *lease, double start, uint64_t changes,
                          int rc)
{
    if (rc == 1) lease->master_changes = changes;
    if (rc == 0) lease->counted_lost = 1;          /* by the refresh (count_refresh) */
    if (rc == 1 && lease_left(L, idx, lease) > 0)
        lease->valid_until = fmax(lease->valid_until, start + lease->ttl);
    else lease_lose(L, idx, lease);
    lua_pushboolean(L, lease->valid_until > 0);
    return 1;
}

/* lease:refresh() -> true when refreshed in time; false once lost (the
 * lock taken or expired, or the validity passed: then without a call).
 * It never outlives the validity (rs_lock_refresh_by). */
static int lease_refresh(lua_State *L)
{
    rs_store *store;
    lease_box *lease = check_lease(L, &store);
    if (lease_left(L, 1, lease) == 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    rs_error err = {0};
    double start = monotonic_now();
    uint64_t changes = rs_store_master_changes(store);
    int rc = rs_lock_refresh_by(store, lease->key, lease->owner, lease->ttl, lease->valid_until,
                                &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    return push_refreshed(L, 1, lease, start, changes, rc);
}

/* lease:held() -> true while the validity lasts and the lock still names
 * this owner (asked only while the validity lasts) */
static int lease_held(lua_State *L)
{
    rs_store *store;
    lease_box *lease = check_lease(L, &store);
    if (lease_left(L, 1, lease) == 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    rs_error err = {0};
    char *owner;
    size_t len;
    int rc = rs_lock_owner_bytes(store, lease->key, &owner, &len, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    /* Whole bytes: "hostA\0-evil" is not "hostA". */
    int held = rc == 1 && len == strlen(lease->owner) && memcmp(owner, lease->owner, len) == 0;
    rs_free(owner);
    if (!held) lease_lose(L, 1, lease);
    lua_pushboolean(L, held && lease_left(L, 1, lease) > 0);
    return 1;
}

/* After a failover the new master may lack the lock (replication is
 * asynchronous) or name another owner: the first look at the lease after
 * the store saw its master change asks the new master, once. */
static void check_after_failover(lua_State *L, rs_store *store, lease_box *lease)
{
    uint64_t changes = rs_store_master_changes(store);
    if (changes == lease->master_changes || lease_left(L, 1, lease) == 0) return;
    rs_error err = {0};
    char *owner;
    size_t len;
    int rc = rs_lock_owner_bytes(store, lease->key, &owner, &len, &err);
    if (rc < 0) rs_lua_raise(L, &err);
    int ours = rc == 1 && len == strlen(lease->owner) && memcmp(owner, lease->owner, len) == 0;
    rs_free(owner);
    if (!ours) lease_lose(L, 1, lease);
    lease->master_changes = changes;
}

/* lease:remaining() -> seconds of validity left, 0 once lost (asks the
 * server only once after a failover) */
static int lease_remaining(lua_State *L)
{
    rs_store *store;
    lease_box *lease = check_lease(L, &store);
    check_after_failover(L, store, lease);
    lua_pushnumber(L, lease_left(L, 1, lease));
    return 1;
}

/* Fenced on the server; refused locally once the validity passed. */
static int lease_save_resume_token(lua_State *L)
{
    rs_store *store;
    lease_box *lease = check_lease(L, &store);
    check_after_failover(L, store, lease);
    if (lease_left(L, 1, lease) == 0)
        return rs_lua_raisef(L, RS_ERR_NOT_OWNER,
                             "lease on '%s' lost: not refreshed within its ttl of %gs (or "
                             "taken), nothing saved", lease->key, lease->ttl);
    return rs_lua_save_token(L, store, 2, 3, lease->key, lease->owner);
}

/* lease:release() -> true when this owner still held it. Idempotent. */
static int lease_release(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    if (!lease->key) {
        lua_pushboolean(L, 0);
        return 1;
    }
    rs_store *store;
    check_lease(L, &store);
    rs_error err = {0};
    /* After a loss already counted, the gauge is not taken down again. */
    int rc = lease->counted_lost ? rs_lock_release_lost(store, lease->key, lease->owner, &err)
                                 : rs_lock_release(store, lease->key, lease->owner, &err);
    if (rc >= 0) lease_free(lease);
    return push_result(L, rc, &err);
}

/* __close: release, but never raise while unwinding. */
static int lease_close(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    if (lease->key) {
        lua_pushcfunction(L, lease_release);
        lua_pushvalue(L, 1);
        lua_pcall(L, 1, 0, 0);
        lease_free(lease);
    }
    return 0;
}

static int lease_index(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    const char *name = luaL_checkstring(L, 2);
    if (strcmp(name, "key") == 0) lua_pushstring(L, lease->key);
    else if (strcmp(name, "owner") == 0) lua_pushstring(L, lease->owner);
    else if (strcmp(name, "ttl") == 0) lua_pushnumber(L, lease->ttl);
    else {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, name);
    }
    return 1;
}

static int lease_tostring(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    if (lease->key) lua_pushfstring(L, "rigatoni_store.lease (%s by %s)", lease->key, lease->owner);
    else lua_pushliteral(L, "rigatoni_store.lease (released)");
    return 1;
}

/* lease:valid_for() -> seconds of validity left by the lease's own
 * clock, never asking the server (not even after a failover): for a loop
 * timer at the validity's end. */
static int lease_valid_for(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    lua_pushnumber(L, lease->key ? lease_left(L, 1, lease) : 0);
    return 1;
}

/* ---------------------------------------------------------------------
 * Lease jobs: store:start("lease", ...), lease:start_refresh(),
 * lease:start_release()
 *
 * The worker runs the lock's op (a job of rs_op_lua.c) on copies of key,
 * owner and ttl; it never sees the lease. A lease job wraps that job: its
 * pollfd, events, timeout and ready are the inner job's, and its wait()
 * takes the inner job's result (or raises its error object) and applies
 * it here, on the Lua side, as the blocking call does (push_lease,
 * push_refreshed, lease_free), with the start time and master changes
 * noted when the job started. User values: 1 the inner job (nil once
 * waited for), 2 the store (acquire) or the lease, 3 and 4 key and owner
 * (acquire).
 * ------------------------------------------------------------------ */

#define LEASE_JOB_MT "rigatoni_store.lease_job"

enum { LJ_ACQUIRE, LJ_REFRESH, LJ_RELEASE };

typedef struct lease_job {
    int kind;
    int lost;              /* the lease was lost or released before: false, no call */
    double ttl, start;     /* start: monotonic, before the inner job started */
    uint64_t changes;      /* rs_store_master_changes then */
} lease_job;

/* Starts `desc` on copies of key and owner (the inner job, pushed). */
static lock_op *new_lock_op(lua_State *L, const rs_lua_op *desc, const char *key,
                            const char *owner, double ttl)
{
    lock_op *op = rs_lua_op_new(L, desc);
    op->key = rs_lua_op_copy(L, op, key, strlen(key));
    op->owner = rs_lua_op_copy(L, op, owner, strlen(owner));
    op->ttl = ttl;
    return op;
}

/* Wraps the inner job at the top (replaced by the lease job); `target`
 * is user value 2. */
static lease_job *push_lease_job(lua_State *L, int kind, int target, double ttl, double start,
                                 uint64_t changes)
{
    target = lua_absindex(L, target);
    lease_job *j = lua_newuserdatauv(L, sizeof *j, 4);
    j->kind = kind;
    j->lost = 0;
    j->ttl = ttl;
    j->start = start;
    j->changes = changes;
    luaL_setmetatable(L, LEASE_JOB_MT);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, target);
    lua_setiuservalue(L, -2, 2);
    return j;
}

/* store:start("lease", key, owner [, {ttl}]) -> job; its wait() gives
 * what store:lease gives (the lease, or nil when taken). Bad input is
 * raised here, as store:lease raises it. */
static int start_lease(lua_State *L)
{
    rs_store *store = rs_lua_check_store(L, 1);
    const char *key, *owner;
    double ttl;
    check_lease_args(L, &key, &owner, &ttl);
    lua_settop(L, 3);
    double start = monotonic_now();
    uint64_t changes = rs_store_master_changes(store);
    new_lock_op(L, &acquire_op, key, owner, ttl);
    rs_lua_op_start(L, 1, 0);
    push_lease_job(L, LJ_ACQUIRE, 1, ttl, start, changes);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 3);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, 4);
    return 1;
}

/* A lease job with nothing to send (the lease lost or released): the
 * inner job is a refresh past its deadline, which fails at once without
 * a call; wait() gives false. */
static void start_lease_call(lua_State *L, int kind, const rs_lua_op *desc)
{
    lua_settop(L, 1);
    rs_store *store;
    lease_box *lease = check_lease(L, &store);
    int lost = lease_left(L, 1, lease) == 0;
    double start = monotonic_now();
    uint64_t changes = rs_store_master_changes(store);
    lock_op *op = new_lock_op(L, lost ? &refresh_by_op : desc, lease->key, lease->owner,
                              lease->ttl);
    op->deadline = lost ? 0 : lease->valid_until;
    rs_lua_op_start(L, 2, 0);
    push_lease_job(L, kind, 1, lease->ttl, start, changes)->lost = lost;
}

/* lease:start_refresh() -> job; wait() gives what lease:refresh() gives. */
static int lease_start_refresh(lua_State *L)
{
    start_lease_call(L, LJ_REFRESH, &refresh_by_op);
    return 1;
}

/* lease:start_release() -> job; wait() gives what lease:release() gives
 * (false without a call once released). */
static int lease_start_release(lua_State *L)
{
    lease_box *lease = luaL_checkudata(L, 1, LEASE_MT);
    lua_settop(L, 1);
    if (!lease->key) {
        /* Released: no key to copy, and nothing to send. */
        lua_getiuservalue(L, 1, 1);
        rs_lua_check_store(L, -1);
        lock_op *op = new_lock_op(L, &refresh_by_op, "-", "-", 1);
        op->deadline = 0;
        rs_lua_op_start(L, 2, 0);
        push_lease_job(L, LJ_RELEASE, 1, 0, 0, 0)->lost = 1;
        return 1;
    }
    /* Released even once the validity passed: the lock may still be ours. */
    rs_store *store;
    check_lease(L, &store);
    new_lock_op(L, &release_op, lease->key, lease->owner, lease->ttl)->counted_lost =
        lease->counted_lost;
    rs_lua_op_start(L, 2, 0);
    push_lease_job(L, LJ_RELEASE, 1, lease->ttl, 0, 0);
    return 1;
}

static lease_job *check_lease_job(lua_State *L)
{
    return luaL_checkudata(L, 1, LEASE_JOB_MT);
}

/* pollfd, events, timeout, ready: the inner job's (upvalue 1: the name). */
static int lease_job_delegate(lua_State *L)
{
    check_lease_job(L);
    lua_settop(L, 1);
    if (lua_getiuservalue(L, 1, 1) == LUA_TNIL)
        return luaL_error(L, "this job was already waited for");
    lua_getfield(L, 2, lua_tostring(L, lua_upvalueindex(1)));
    lua_insert(L, 2);
    lua_call(L, 1, 1);
    return 1;
}

/* job:wait() -> what the blocking call gives, or raises its error. Once. */
static int lease_job_wait(lua_State *L)
{
    lease_job *j = check_lease_job(L);
    lua_settop(L, 1);
    if (lua_getiuservalue(L, 1, 1) == LUA_TNIL)            /* 2: the inner job */
        return luaL_error(L, "this job was already waited for");
    lua_getiuservalue(L, 1, 2);                            /* 3: the store or the lease */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    lua_getfield(L, 2, "wait");
    lua_pushvalue(L, 2);
    if (j->lost) {
        lua_pcall(L, 1, 0, 0);       /* the no-call refresh's "no time left": nobody's */
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_call(L, 1, 1);                                     /* 4: its boolean, or raises */
    int rc = lua_toboolean(L, 4);
    if (j->kind == LJ_ACQUIRE) {
        lua_getiuservalue(L, 1, 3);
        lua_getiuservalue(L, 1, 4);
        return push_lease(L, 3, lua_tostring(L, 5), lua_tostring(L, 6), j->ttl, j->start,
                          j->changes, rc);
    }
    lease_box *lease = luaL_checkudata(L, 3, LEASE_MT);
    if (!lease->key) {               /* released meanwhile */
        lua_pushboolean(L, 0);
        return 1;
    }
    if (j->kind == LJ_RELEASE) {
        lease_free(lease);
        lua_pushboolean(L, rc);
        return 1;
    }
    return push_refreshed(L, 3, lease, j->start, j->changes, rc);
}

/* __close: the inner job is abandoned now (else by its own __gc). */
static int lease_job_close(lua_State *L)
{
    check_lease_job(L);
    if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, 1);
        luaL_callmeta(L, -1, "__close");
    }
    return 0;
}

static int lease_job_tostring(lua_State *L)
{
    static const char *const names[] = {"lease", "lease refresh", "lease release"};
    lease_job *j = check_lease_job(L);
    lua_pushfstring(L, "rigatoni_store.job (%s)", names[j->kind]);
    return 1;
}

static void add_lease_job_meta(lua_State *L)
{
    static const char *const delegated[] = {"pollfd", "events", "timeout", "ready", NULL};
    luaL_newmetatable(L, LEASE_JOB_MT);
    lua_pushcfunction(L, lease_job_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, lease_job_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 5);
    for (int i = 0; delegated[i]; i++) {
        lua_pushstring(L, delegated[i]);
        lua_pushcclosure(L, lease_job_delegate, 1);
        lua_setfield(L, -2, delegated[i]);
    }
    lua_pushcfunction(L, lease_job_wait);
    lua_setfield(L, -2, "wait");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------------
 * Registration
 * ------------------------------------------------------------------ */

static int rs_owner_id_lua(lua_State *L)
{
    char buf[512];
    if (rs_owner_id(buf, sizeof buf) < 0) return luaL_error(L, "cannot make an owner id");
    lua_pushstring(L, buf);
    return 1;
}

static const luaL_Reg lock_methods[] = {
    {"lock_key", store_lock_key},
    {"lease", store_lease},
    {NULL, NULL},
};

static const luaL_Reg lease_methods[] = {
    {"refresh", lease_refresh},
    {"release", lease_release},
    {"held", lease_held},
    {"remaining", lease_remaining},
    {"save_resume_token", lease_save_resume_token},
    {"valid_for", lease_valid_for},
    {"start_refresh", lease_start_refresh},
    {"start_release", lease_start_release},
    {NULL, NULL},
};

static const luaL_Reg lease_meta[] = {
    {"__index", lease_index},
    {"__gc", lease_gc},
    {"__close", lease_close},
    {"__tostring", lease_tostring},
    {NULL, NULL},
};

void rs_lua_add_lock_methods(lua_State *L)
{
    luaL_setfuncs(L, lock_methods, 0);
    rs_lua_add_ops(L, lock_ops);
    rs_lua_add_starter(L, "lease", start_lease);
    add_lease_job_meta(L);
    luaL_newmetatable(L, LEASE_MT);
    luaL_setfuncs(L, lease_meta, 0);
    luaL_newlib(L, lease_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
}

void rs_lua_open_lock(lua_State *L)
{
    lua_pushcfunction(L, rs_owner_id_lua);
    lua_setfield(L, -2, "owner_id");
}
