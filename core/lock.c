/* SPDX-License-Identifier: MIT */
/* lock.c -- distributed locks compatible with Rigatoni 0.2, fenced saves,
 * a refresh bounded by a deadline (rs_lock_refresh_by: a lease's), and a C
 * lease kept alive by a background thread.
 *
 * Acquire is the plain `SET key owner NX EX ttl` Rigatoni sends, so both
 * implementations exclude each other. When SET NX finds the key taken we
 * read the owner: if it is us (an earlier attempt whose reply was lost, or a
 * re-acquire), the lock is ours and its TTL is renewed through the
 * owner-checked refresh. Refresh, release and the fenced save compare the
 * owner on the server inside one script, so a paused instance whose lock
 * expired and was taken over cannot overwrite the new owner's token.
 */
#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "call.h"
#include "checked.h"
#include "clock.h"
#include "closing.h"
#include "cluster.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "retry.h"
#include "script.h"
#include "store_state.h"
#include "token_key.h"
#include "ttl.h"

/* ARGV: owner, amount, unit ("s": EXPIRE, the command Rust Rigatoni's
 * refresh uses, so a user limited to its ACL can refresh; else PEXPIRE). */
static rs_script lock_refresh = RS_SCRIPT(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if ARGV[3] == 's' then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2])");
static rs_script lock_release = RS_SCRIPT(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0");
/* KEYS: lock, token. ARGV: owner, bytes, then optionally EX|PX and amount. */
static rs_script save_fenced = RS_SCRIPT(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if ARGV[3] then redis.call('SET', KEYS[2], ARGV[2], ARGV[3], ARGV[4]) "
    "else redis.call('SET', KEYS[2], ARGV[2]) end return 1");

static int check_lock_args(const char *key, const char *owner, double ttl, int need_ttl,
                           rs_error *err)
{
    if (!key || !*key) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "lock key must not be empty");
        return -1;
    }
    if (owner && !*owner) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "lock owner must not be empty");
        return -1;
    }
    rs_error why;
    if (need_ttl && rs_ttl_check(ttl, &why) < 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "lock %s", why.message);
        return -1;
    }
    return 0;
}

/* An owner-checked script on one key, with up to two more arguments. */
typedef struct owner_call {
    const char *what;
    rs_script *script;
    const char *key, *owner, *arg, *arg2;
} owner_call;

/* `cause` (may be NULL) gets an RS_ERR_UNKNOWN's cause. */
static int run_owner_script(rs_store *store, owner_call *c, rs_retry_rule rule,
                            redisReply **reply, rs_error *err, rs_error *cause)
{
    const char *keys[1] = {c->key}, *args[3] = {c->owner, c->arg, c->arg2};
    size_t key_lens[1] = {strlen(c->key)},
           arg_lens[3] = {strlen(c->owner), c->arg ? strlen(c->arg) : 0,
                          c->arg2 ? strlen(c->arg2) : 0};
    rs_script_args a = {1, keys, key_lens, c->arg2 ? 3 : c->arg ? 2 : 1, args, arg_lens};
    rs_call call = RS_CALL(RS_OP_LOCK, c->what, 0, NULL, NULL, err);
    call.rule = rule;
    int rc = rs_script_run(store, &call, c->script, &a, reply);
    if (cause) *cause = call.cause;
    return rc;
}

/* The refresh script's amount and unit: whole seconds when the ttl is one
 * (EXPIRE), else milliseconds (PEXPIRE), rounded up: a lease is valid
 * until its start + ttl, so the key must live at least that long (a ttl
 * rounded down would let the local validity outlive the key). The 1 ns
 * slack keeps a ttl like 1.1, whose double is a hair above, at 1100 ms. */
static const char *refresh_amount(double ttl, char *amount, size_t size)
{
    if (ttl >= 1 && ttl == floor(ttl)) {
        snprintf(amount, size, "%.0f", ttl);
        return "s";
    }
    snprintf(amount, size, "%.0f", fmax(1, ceil(ttl * 1000 - 1e-6)));
    return "ms";
}

/* Scripts answer 1 or 0; anything else (a negative integer from a broken
 * server would read as our -1 = error) counts as 0. */
static int script_said_yes(redisReply *reply)
{
    int yes = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return yes;
}

/* The owner-checked refresh, not counted (acquire and leases count it
 * their way). 1 refreshed, 0 not ours, -1 error. */
static int refresh_owned(rs_store *store, const char *key, const char *owner, double ttl,
                         rs_error *err)
{
    char amount[24];
    const char *unit = refresh_amount(ttl, amount, sizeof amount);
    /* Idempotent: a second EXPIRE by the owner gives the same TTL. */
    owner_call c = {"refresh_lock", &lock_refresh, key, owner, amount, unit};
    redisReply *reply;
    if (run_owner_script(store, &c, RS_RETRY_IDEMPOTENT, &reply, err, NULL) < 0) return -1;
    return script_said_yes(reply);
}

/* A refresh that finds the lock gone is a lost lock, as Rigatoni counts it. */
static void count_refresh(rs_store *store, int rc)
{
    if (rc == 1) {
        rs_metrics_count(&store->metrics, RS_METRIC_LOCK_REFRESHED);
    } else if (rc == 0) {
        rs_metrics_count(&store->metrics, RS_METRIC_LOCK_LOST);
        rs_metrics_locks_held(&store->metrics, -1);
    }
}

int rs_lock_refresh(rs_store *store, const char *key, const char *owner, double ttl,
                    rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(key, owner, ttl, 1, err) < 0) return -1;
    int rc = refresh_owned(store, key, owner, ttl, err);
    count_refresh(store, rc);
    return rc;
}

static int run_release(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                       rs_error *cause)
{
    return run_owner_script(store, ctx, RS_RETRY_UNSENT, reply, err, cause);
}

/* After a release whose reply was lost: still ours = it did not run; gone
 * = released (by it, or expired: either way not held, as asked); another
 * owner = it may have run and the lock been taken since, or the lock was
 * lost before it: that is `unknown`, never "was not ours". */
static rs_outcome check_released(const redisReply *value, void *ctx, const char **why)
{
    const owner_call *c = ctx;
    if (value->type == REDIS_REPLY_NIL) return RS_OUTCOME_RAN;
    if (value->type == REDIS_REPLY_STRING && value->len == strlen(c->owner) &&
        memcmp(value->str, c->owner, value->len) == 0)
        return RS_OUTCOME_NOT_RUN;
    *why = "the lock is held by another owner now: released by this call and taken since, or "
           "lost before it";
    return RS_OUTCOME_UNKNOWN;
}

/* `held`: the lock is counted in the held gauge (not already counted lost). */
static int release(rs_store *store, const char *key, const char *owner, int held, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(key, owner, 0, 0, err) < 0) return -1;
    owner_call c = {"release_lock", &lock_release, key, owner, NULL, NULL};
    redisReply *reply;
    rs_checked op = {"release_lock", run_release, "GET", key, strlen(key), check_released, &c, 0};
    int rc = rs_exec_checked(store, &op, &reply, err);
    if (rc == 1 || (rc == 0 && script_said_yes(reply))) {
        rs_metrics_count(&store->metrics, RS_METRIC_LOCK_RELEASED);
        if (held) rs_metrics_locks_held(&store->metrics, -1);
        return 1;
    }
    return rc < 0 ? -1 : 0;
}

int rs_lock_release(rs_store *store, const char *key, const char *owner, rs_error *err)
{
    return release(store, key, owner, 1, err);
}

int rs_lock_release_lost(rs_store *store, const char *key, const char *owner, rs_error *err)
{
    return release(store, key, owner, 0, err);
}

void rs_lock_note_lost(rs_store *store)
{
    rs_metrics_count(&store->metrics, RS_METRIC_LOCK_LOST);
    rs_metrics_locks_held(&store->metrics, -1);
}

/* After an acquire whose reply was lost and whose resend failed (err:
 * OOM, NOPERM, ... say nothing of the lost attempt, which may have taken
 * the lock): the owner-checked refresh tells, as after a resend that
 * finds the key taken, and renews the TTL whoever set it (a lock held
 * since before this call must not be reported acquired with its old TTL).
 * 1 ours; -1 with the resend's failure when not ours; RS_ERR_UNKNOWN when
 * the refresh fails too. */
static int lost_attempt_took(rs_store *store, const char *key, const char *owner, double ttl,
                             rs_error *err)
{
    rs_error resend = *err;
    int rc = refresh_owned(store, key, owner, ttl, err);
    if (rc == 1) return 1;
    if (rc < 0) {
        char why[600];
        snprintf(why, sizeof why, "a reply was lost, sending it again failed (%.250s) and the "
                 "owner-checked refresh failed (%.250s)", resend.message, err->message);
        rs_exec_unknown_because(err, "try_acquire_lock", resend.attempts + 1, why);
        return -1;
    }
    *err = resend;
    return -1;
}

int rs_lock_acquire(rs_store *store, const char *key, const char *owner, double ttl,
                    rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(key, owner, ttl, 1, err) < 0) return -1;
    char amount[24];
    /* The same rounding as a refresh: the key lives at least ttl. */
    const char *unit = strcmp(refresh_amount(ttl, amount, sizeof amount), "s") == 0 ? "EX" : "PX";
    const char *argv[6] = {"SET", key, owner, "NX", unit, amount};
    size_t argvlen[6] = {3, strlen(key), strlen(owner), 2, 2, strlen(amount)};
    rs_cmd cmd = {6, argv, argvlen};
    redisReply *reply;
    /* An attempt whose reply is lost may have taken the lock: the SET is
     * sent again (it finds our own id when it had) and remembered. */
    rs_call call = RS_CALL(RS_OP_LOCK, "try_acquire_lock", 1, &cmd, &reply, err);
    call.rule = RS_RETRY_UNSENT;
    int lost = rs_call_run(store, &call) < 0;
    if (lost && err->kind != RS_ERR_UNKNOWN) {
        rs_metrics_count(&store->metrics, RS_METRIC_LOCK_ERROR);
        return -1;
    }
    call.rule = RS_RETRY_IDEMPOTENT;
    if (lost && rs_call_run(store, &call) < 0) {
        int rc = lost_attempt_took(store, key, owner, ttl, err);
        rs_metrics_count(&store->metrics, rc == 1 ? RS_METRIC_LOCK_ACQUIRED : RS_METRIC_LOCK_ERROR);
        if (rc == 1) rs_metrics_locks_held(&store->metrics, +1);
        return rc == 1 ? 1 : -1;
    }
    int acquired = reply->type == REDIS_REPLY_STATUS;
    freeReplyObject(reply);
    /* Taken: by us? Then renew it, owner-checked (counted as a refresh),
     * unless a lost attempt of this call took it: an acquisition, held
     * (a re-acquire whose reply is lost counts as one too: nothing tells
     * the two apart). */
    int rc = acquired ? 1 : refresh_owned(store, key, owner, ttl, err);
    if (acquired || (rc == 1 && lost)) {
        rs_metrics_count(&store->metrics, RS_METRIC_LOCK_ACQUIRED);
        rs_metrics_locks_held(&store->metrics, +1);
        return 1;
    }
    rs_metrics_count(&store->metrics, rc == 1 ? RS_METRIC_LOCK_REFRESHED
                            : rc == 0 ? RS_METRIC_LOCK_ALREADY_HELD : RS_METRIC_LOCK_ERROR);
    return rc;
}

static int key_command(rs_store *store, const char *what, const char *cmdname, const char *key,
                       redisReply **reply, rs_error *err)
{
    rs_error_clear(err);
    if (check_lock_args(key, NULL, 0, 0, err) < 0) return -1;
    const char *argv[2] = {cmdname, key};
    size_t argvlen[2] = {strlen(cmdname), strlen(key)};
    rs_cmd cmd = {2, argv, argvlen};
    rs_call call = RS_CALL(RS_OP_LOCK, what, 1, &cmd, reply, err);
    return rs_call_run(store, &call);
}

int rs_lock_is_locked(rs_store *store, const char *key, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    redisReply *reply;
    if (key_command(store, "is_locked", "EXISTS", key, &reply, err) < 0) return -1;
    int locked = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
    freeReplyObject(reply);
    return locked;
}

int rs_lock_owner_bytes(rs_store *store, const char *key, char **owner, size_t *owner_len,
                        rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    redisReply *reply;
    *owner = NULL;
    *owner_len = 0;
    if (key_command(store, "lock_owner", "GET", key, &reply, err) < 0) return -1;
    int found = reply->type == REDIS_REPLY_STRING;
    /* Whole, NUL bytes included: strndup would cut "hostA\0-evil" to "hostA". */
    if (found && !(*owner = malloc(reply->len + 1))) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        found = -1;
    } else if (found) {
        memcpy(*owner, reply->str, reply->len);
        (*owner)[reply->len] = '\0';
        *owner_len = reply->len;
    }
    freeReplyObject(reply);
    return found;
}

int rs_lock_owner(rs_store *store, const char *key, char **owner, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    size_t len;
    int rc = rs_lock_owner_bytes(store, key, owner, &len, err);
    if (rc == 1 && strlen(*owner) != len) {
        free(*owner);
        *owner = NULL;
        rs_error_set(err, RS_ERR_SERIALIZATION, 0,
                     "lock '%.200s' is held by an owner with a NUL byte (not one of ours; "
                     "rs_lock_owner_bytes reads it)", key);
        return -1;
    }
    return rc;
}

/* The fenced save's script call and what the check of the token saw. */
typedef struct fenced {
    const char *keys[2];          /* lock, token */
    size_t key_lens[2];
    const char *args[4];          /* owner, bytes, [EX|PX, amount] */
    size_t arg_lens[4];
    int nargs;
    char amount[24];
    int checked;                  /* an attempt's outcome was looked up */
} fenced;

static int run_fenced(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                      rs_error *cause)
{
    fenced *f = ctx;
    rs_script_args a = {2, f->keys, f->key_lens, f->nargs, f->args, f->arg_lens};
    rs_call call = RS_CALL(RS_OP_SAVE, "fenced save", 0, NULL, NULL, err);
    call.rule = RS_RETRY_UNSENT;
    call.flags = RS_CALL_DURABLE;
    int rc = rs_script_run(store, &call, &save_fenced, &a, reply);
    *cause = call.cause;
    return rc;
}

/* Our bytes stored = written (by that attempt, or already before: the
 * token is what the caller wanted either way); else run it again, under
 * the owner check. */
static rs_outcome check_fenced(const redisReply *value, void *ctx, const char **why)
{
    fenced *f = ctx;
    (void)why;
    f->checked = 1;
    if (value->type == REDIS_REPLY_STRING && value->len == f->arg_lens[1] &&
        (value->len == 0 || memcmp(value->str, f->args[1], value->len) == 0))
        return RS_OUTCOME_RAN;
    return RS_OUTCOME_NOT_RUN;
}

int rs_save_fenced(rs_store *store, const char *collection, size_t coll_len, const void *bytes,
                   size_t len, const char *lock_key, const char *owner, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(lock_key, owner, 0, 0, err) < 0) return -1;
    if (!owner) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "fenced save needs an owner");
        return -1;
    }
    size_t key_len;
    char *key = rs_token_key_to_save(store, collection, coll_len, len, &key_len, err);
    if (!key) return -1;
    /* The owner check and the write must be one script on one node. */
    if (store->cluster && rs_key_slot(key, key_len) != rs_key_slot(lock_key, strlen(lock_key))) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "fenced save in cluster mode needs the lock '%.100s' and the token key in "
                     "one hash slot: give key_prefix and lock_prefix the same {hash tag}",
                     lock_key);
        free(key);
        return -1;
    }
    fenced f = {.keys = {lock_key, key},
                .key_lens = {strlen(lock_key), key_len},
                .args = {owner, bytes ? bytes : ""},
                .arg_lens = {strlen(owner), len}};
    f.nargs = rs_ttl_args(store->cfg->ttl, &f.args[2], f.amount, sizeof f.amount) ? 4 : 2;
    f.args[3] = f.amount;
    f.arg_lens[2] = strlen(f.args[2]);
    f.arg_lens[3] = strlen(f.amount);
    redisReply *reply;
    rs_checked op = {"fenced save", run_fenced, "GET", key, key_len, check_fenced, &f, 0};
    int rc = rs_exec_checked(store, &op, &reply, err);
    int attempts = op.attempts;
    free(key);
    if (rc < 0) return -1;
    if (rc == 1 || script_said_yes(reply)) return 0;
    if (f.checked) {
        /* Refused now, after an attempt that may have run while the lock
         * was still ours and whose token has been replaced since. */
        rs_exec_unknown_because(err, "fenced save", attempts,
                                "the lock is not held by this owner now and the token holds "
                                "other bytes");
        return -1;
    }
    rs_error_set(err, RS_ERR_NOT_OWNER, 0,
                 "fenced save refused: lock '%.200s' is not held by this owner", lock_key);
    return -1;
}

size_t rs_lock_key(const rs_store *store, const char *db, const char *collection, char *buf,
                   size_t bufsize)
{
    const char *prefix = store->cfg->lock_prefix;
    if (!db) return (size_t)snprintf(buf, bufsize, "%s:__deployment__", prefix);
    if (!collection) return (size_t)snprintf(buf, bufsize, "%s:%s:__database__", prefix, db);
    return (size_t)snprintf(buf, bufsize, "%s:%s:%s", prefix, db, collection);
}

int rs_owner_id(char *buf, size_t bufsize)
{
    char host[256] = "unknown";
    unsigned char u[16];
    if (gethostname(host, sizeof host - 1) < 0) strcpy(host, "unknown");
    host[sizeof host - 1] = '\0';
    if (RAND_bytes(u, sizeof u) != 1) return -1;
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);   /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    int n = snprintf(buf, bufsize,
                     "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                     host, u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
                     u[11], u[12], u[13], u[14], u[15]);
    return n > 0 && (size_t)n < bufsize ? 0 : -1;
}

/* ---------------------------------------------------------------------
 * Lease keepalive thread
 *
 * The lease knows its validity from its own monotonic clock: valid until
 * the start of the last successful refresh + ttl. The key cannot expire on
 * the server before that (the refresh ran after it started), and it may
 * expire any time after, so the owner must stop acting then, whatever
 * Redis is doing: a frozen or unreachable server costs the lease its lock
 * when the validity passes, reported once through on_lost.
 * So that no refresh outlives the validity, the lease refreshes on a
 * private one-connection pool whose timeouts are cut, per attempt, to the
 * time left, a Sentinel discovery's included (the config's deadline,
 * honoured by conn.c and sentinel.c; the store's pool keeps the configured
 * timeouts): the
 * refresher, which rs_lock_refresh_by (the Lua lease's refresh, blocking
 * or as a job) uses too, with the store's retry rule instead of the
 * lease thread's "any failure again while valid". In cluster
 * mode the refresh goes through the store (its redirections and retries),
 * and loss is reported when it returns. With Sentinel, a change of master
 * seen by the store (failover.c, pool.c) makes the lease refresh at once
 * on the new master: a key it lacks (asynchronous replication) or that
 * names another owner is a loss, reported then, not at the next refresh.
 * ------------------------------------------------------------------ */

/* One refresh's connection: a private one-connection pool whose
 * timeouts are cut, per attempt, to the time left before a deadline (the
 * store's pool keeps the configured timeouts). */
typedef struct refresher {
    rs_store *store;
    const char *key, *owner;
    double ttl;
    rs_config cfg;           /* the store's, timeouts cut per attempt */
    rs_pool *pool;           /* private, one connection; NULL in cluster mode */
    double deadline;         /* the current attempt's end */
} refresher;

struct rs_lease {
    rs_store *store;
    char *key, *owner;
    double ttl;
    rs_lease_lost_fn on_lost;
    void *userdata;
    refresher ref;           /* lease thread only */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    double valid_until;      /* rs_now() seconds */
    int watch_master;        /* Sentinel: check the key at once when the master changes */
    uint64_t master_changes; /* rs_store_master_changes at the last check */
    int stopping, lost;
    int self_stopped;        /* rs_lease_stop called from on_lost: the thread frees */
};

static struct timeval seconds_tv(double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - floor(s)) * 1e6)};
    return tv;
}

/* Below a few ms the cut timeouts would round to 0, which is no timeout
 * at all for a socket: no attempt starts with less left. */
#define MIN_LEFT 0.004

static void no_time_left(rs_error *err)
{
    rs_error_set(err, RS_ERR_TIMEOUT, 1, "no time left in the lease's validity");
}

/* The engine's hook on a refresh: the lent connection's timeout cut to
 * the time left. */
static int cut_timeout(rs_call *call, rs_conn *conn, rs_error *err)
{
    const refresher *r = call->ctx;
    double left = r->deadline - rs_now();
    if (left < 0.001) {
        no_time_left(err);
        return -1;
    }
    redisSetTimeout(conn->ctx, seconds_tv(fmin(r->store->cfg->command_timeout, left)));
    return 0;
}

/* 0, or -1 + err (no memory). */
static int refresher_init(refresher *r, rs_store *store, const char *key, const char *owner,
                          double ttl, rs_error *err)
{
    memset(r, 0, sizeof *r);
    r->store = store;
    r->key = key;
    r->owner = owner;
    r->ttl = ttl;
    r->cfg = *store->cfg;
    r->cfg.pool_size = 1;
    r->cfg.spin_wait = 0;
    r->cfg.idle_check_after = 1e9;   /* no PING with a timeout we did not cut */
    if (store->cluster) return 0;
    const rs_url *url = &store->cfg->parsed;
    r->pool = rs_pool_new(&r->cfg, store->tls, url->nhosts > 1 ? NULL : url->hosts[0].host,
                          url->hosts[0].port);
    if (r->pool) return 0;
    rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
    return -1;
}

/* One refresh attempt that ends by `deadline`: 1, 0 (not ours) or -1. In
 * cluster mode the store's call (its redirections and retries), not cut. */
static int refresh_attempt(refresher *r, double deadline, rs_error *err)
{
    if (!r->pool) return refresh_owned(r->store, r->key, r->owner, r->ttl, err);
    const rs_config *base = r->store->cfg;
    /* A new connection takes up to four timed steps (connect, TLS, AUTH,
     * SELECT): each gets a quarter of the time left. */
    double left = deadline - rs_now();
    if (left < MIN_LEFT) {
        no_time_left(err);
        return -1;
    }
    r->cfg.connection_timeout = fmin(base->connection_timeout, left / 4);
    r->cfg.command_timeout = fmin(base->command_timeout, left / 4);
    /* And a new connection's steps, the Sentinel discovery's included
     * (every sentinel asked is more steps), end by the deadline too. */
    r->cfg.deadline = deadline;
    r->deadline = deadline;
    char amount[24];
    const char *unit = refresh_amount(r->ttl, amount, sizeof amount);
    const char *keys[1] = {r->key}, *args[3] = {r->owner, amount, unit};
    size_t key_lens[1] = {strlen(r->key)},
           arg_lens[3] = {strlen(r->owner), strlen(amount), strlen(unit)};
    rs_script_args a = {1, keys, key_lens, 3, args, arg_lens};
    /* One attempt on the private pool: the callers retry while time is
     * left. Not counted as a call: refreshes are counted. */
    static const rs_call_hooks hooks = {cut_timeout, NULL, NULL};
    rs_call call = RS_CALL(RS_OP_LOCK, "refresh_lock", 0, NULL, NULL, err);
    call.pool = r->pool;
    call.flags = RS_CALL_ONCE | RS_CALL_UNCOUNTED;
    call.hooks = &hooks;
    call.ctx = r;
    redisReply *reply;
    if (rs_script_run(r->store, &call, &lock_refresh, &a, &reply) < 0)
        return -1;
    return script_said_yes(reply);
}

int rs_lock_refresh_by(rs_store *store, const char *key, const char *owner, double ttl,
                       double deadline, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(key, owner, ttl, 1, err) < 0) return -1;
    if (!owner) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "lock owner must not be empty");
        return -1;
    }
    if (deadline - rs_now() < MIN_LEFT) {
        no_time_left(err);
        return -1;
    }
    refresher r;
    if (refresher_init(&r, store, key, owner, ttl, err) < 0) return -1;
    int rc, attempt;
    for (attempt = 1;; attempt++) {
        rc = refresh_attempt(&r, deadline, err);
        if (rc >= 0 || !r.pool) break;
        /* The store's retry rule, its backoff cut short by the deadline:
         * no attempt that could not end in time is made. */
        if (!err->retryable || attempt > store->cfg->max_retries ||
            rs_closing_is_set(store->closing))
            break;
        double delay = rs_retry_delay(store->cfg, attempt);
        if (deadline - (rs_now() + delay) < MIN_LEFT) break;
        rs_note_retry(store->cfg, "refresh_lock", attempt, store->cfg->max_retries + 1, err, delay);
        if (rs_closing_sleep(store->closing, delay) < 0) {
            rs_note_retry_cancelled(store->cfg, "refresh_lock");
            break;
        }
    }
    if (rc < 0 && r.pool) err->attempts = attempt;
    rs_pool_free(r.pool);
    count_refresh(store, rc);
    return rc;
}

/* Whether the store saw its Sentinel master change since the last check. */
static int master_changed(rs_lease *lease)
{
    return lease->watch_master &&
           rs_store_master_changes(lease->store) != lease->master_changes;
}

/* How often a Sentinel lease looks at the store's count of master changes
 * while it waits: a failover is checked within this. */
#define MASTER_WATCH_STEP 0.05

/* Takes note of a change of master the store saw since the last check,
 * so that a wait is not cut short by it again: the private pool's
 * connections may reach the demoted master and are retired. 1 when there
 * was one; called with the lock held. */
static int note_master_change(rs_lease *lease)
{
    if (!master_changed(lease)) return 0;
    lease->master_changes = rs_store_master_changes(lease->store);
    rs_pool_retire(lease->ref.pool);
    rs_log(lease->store->cfg, RS_LOG_INFO, "lease '%.200s': the master changed; checking the "
           "key on the new one", lease->key);
    return 1;
}

/* Waits until `when` (rs_now seconds), a stop, or (Sentinel) a change of
 * master; called with the lock held. Returns 1 when stopping. */
static int lease_sleep_until(rs_lease *lease, double when)
{
    for (;;) {
        double left = when - rs_now();
        if (lease->stopping || left <= 0 || master_changed(lease)) break;
        if (lease->watch_master) left = fmin(left, MASTER_WATCH_STEP);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double whole = floor(left);
        ts.tv_sec += (time_t)whole;
        ts.tv_nsec += (long)((left - whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        while (!lease->stopping &&
               pthread_cond_timedwait(&lease->wake, &lease->lock, &ts) != ETIMEDOUT) {}
    }
    return lease->stopping;
}

/* Refreshes until it succeeds, finds the lock taken, the validity passes
 * or the lease is stopped; called with the lock held. Returns 1 refreshed
 * (validity extended), 0 lost (*last says why), -1 stopped. */
static int lease_refresh(rs_lease *lease, rs_error *last)
{
    for (int attempt = 1;; attempt++) {
        double start = rs_now(), deadline = lease->valid_until;
        if (start >= deadline) return 0;
        pthread_mutex_unlock(&lease->lock);
        rs_error_clear(last);
        int rc = refresh_attempt(&lease->ref, deadline, last);
        if (rc == 1) rs_metrics_count(&lease->store->metrics, RS_METRIC_LOCK_REFRESHED);
        /* A refresh that returns after the validity passed is too late:
         * the owner has already been told, by rs_lease_remaining, to stop. */
        int in_time = rs_now() < deadline;
        if (rc < 0 && in_time && rs_log_enabled(RS_LOG_INFO))
            rs_log(lease->store->cfg, RS_LOG_INFO, "lease '%.200s': refresh attempt %d failed (%s); %.3fs of "
                   "validity left", lease->key, attempt, last->message, deadline - rs_now());
        pthread_mutex_lock(&lease->lock);
        if (rc == 1 && in_time) {
            lease->valid_until = start + lease->ttl;
            return 1;
        }
        if (rc == 0)
            rs_error_set(last, RS_ERR_NOT_OWNER, 0, "the lock is held by another owner or expired");
        if (rc >= 0 || !in_time) return 0;
        /* Any failure is tried again while the validity lasts: the lock may
         * still be ours. A change of master is tried at once, once. */
        if (note_master_change(lease)) continue;
        double next = fmin(rs_now() + rs_retry_delay(lease->store->cfg, attempt), deadline);
        if (lease_sleep_until(lease, next)) return -1;
    }
}

static void lease_free(rs_lease *lease)
{
    rs_pool_free(lease->ref.pool);
    pthread_cond_destroy(&lease->wake);
    pthread_mutex_destroy(&lease->lock);
    free(lease->key);
    free(lease->owner);
    free(lease);
}

static void *lease_main(void *arg)
{
    rs_lease *lease = arg;
    pthread_mutex_lock(&lease->lock);
    for (;;) {
        /* Refresh a third of the ttl after the last good one started, or
         * at once when the master changed: the new one may lack the key
         * (asynchronous replication) or name another owner. */
        if (lease_sleep_until(lease, lease->valid_until - lease->ttl * 2 / 3)) break;
        note_master_change(lease);
        rs_error last;
        int rc = lease_refresh(lease, &last);
        if (rc < 0) break;
        if (rc == 1) continue;
        lease->lost = 1;
        rs_metrics_count(&lease->store->metrics, RS_METRIC_LOCK_LOST);
        rs_metrics_locks_held(&lease->store->metrics, -1);
        pthread_mutex_unlock(&lease->lock);
        rs_log(lease->store->cfg, RS_LOG_WARN, "lease '%.200s' lost: not refreshed within its validity of %gs "
               "(%s)", lease->key, lease->ttl, last.message);
        if (lease->on_lost) lease->on_lost(lease->key, lease->userdata);
        pthread_mutex_lock(&lease->lock);
        break;
    }
    int self_stopped = lease->self_stopped;
    pthread_mutex_unlock(&lease->lock);
    if (self_stopped) lease_free(lease);
    return NULL;
}

rs_lease *rs_lease_keepalive(rs_store *store, const char *key, const char *owner, double ttl,
                             rs_lease_lost_fn on_lost, void *userdata, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (check_lock_args(key, owner, ttl, 1, err) < 0) return NULL;
    rs_lease *lease = calloc(1, sizeof *lease);
    if (!lease || !(lease->key = strdup(key)) || !(lease->owner = strdup(owner))) {
        if (lease) {
            free(lease->key);
            free(lease);
        }
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    lease->store = store;
    lease->ttl = ttl;
    lease->on_lost = on_lost;
    lease->userdata = userdata;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&lease->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&lease->lock, NULL);
    if (refresher_init(&lease->ref, store, lease->key, lease->owner, ttl, err) < 0) {
        lease_free(lease);
        return NULL;
    }
    if (!store->cluster) {
        lease->watch_master = store->cfg->parsed.nhosts > 1;
        lease->master_changes = rs_store_master_changes(store);
    }
    /* The validity starts with a refresh of our own: when the caller
     * acquired the lock is not known here. */
    lease->valid_until = rs_now() + ttl;
    rs_error last;
    pthread_mutex_lock(&lease->lock);
    int rc = lease_refresh(lease, &last);
    pthread_mutex_unlock(&lease->lock);
    if (rc != 1) {
        lease_free(lease);
        rs_error_set(err, last.kind, 0, "lease on '%.200s' not refreshed within its ttl of %gs: %s",
                     key, ttl, last.message);
        return NULL;
    }
    if (pthread_create(&lease->thread, NULL, lease_main, lease) != 0) {
        lease_free(lease);
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start the lease thread");
        return NULL;
    }
    return lease;
}

double rs_lease_remaining(rs_lease *lease)
{
    pthread_mutex_lock(&lease->lock);
    double left = lease->lost ? 0 : fmax(0, lease->valid_until - rs_now());
    pthread_mutex_unlock(&lease->lock);
    return left;
}

int rs_lease_stop(rs_lease *lease, int release)
{
    if (!lease) return 0;
    pthread_mutex_lock(&lease->lock);
    if (pthread_equal(pthread_self(), lease->thread)) {
        /* From on_lost, on the lease thread: it cannot join itself, so it
         * frees the lease when on_lost returns. The lease is lost. */
        lease->self_stopped = 1;
        pthread_mutex_unlock(&lease->lock);
        pthread_detach(lease->thread);
        return 0;
    }
    lease->stopping = 1;
    pthread_cond_signal(&lease->wake);
    pthread_mutex_unlock(&lease->lock);
    pthread_join(lease->thread, NULL);
    int held = !lease->lost && rs_now() < lease->valid_until;
    if (release && held) held = rs_lock_release(lease->store, lease->key, lease->owner, NULL) == 1;
    lease_free(lease);
    return held;
}
